"""Incidents people start (docs/incidents.md): declaring one, linking an Alertmanager group into
one, merging two. Each runs in the writer thread as one transaction with its timeline entries,
its outbox rows (``changes.write_change``) and the answer kept for its Idempotency-Key, as a
person's action does (``actions.py``).

Where a webhook goes afterwards is ``incident_links``: a linked group (``group:<groupKey>``) and
a merged incident's key (``key:<key>``) each name the incident that receives what would have
gone to them; ``redirect`` applies them to a batch of webhooks before ingest looks its incidents
up (``ingest.apply_webhooks``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import field, replace
from typing import Any

from bridge.core import jsontext
from bridge.core.actions import Refusal
from bridge.core.declare import (
    SOURCE_DECLARED,
    Declaration,
    declare_incident,
    link_group,
    link_lookup_group,
    link_lookup_key,
    merge,
)
from bridge.core.policy import Decision, tiers_from_json
from bridge.core.values import immutable
from bridge.store import metrics as metrics_sql
from bridge.store.actions import ActionAnswer, Idempotency, keep_answer, kept_answer
from bridge.store.changes import write_change
from bridge.store.incidents import INCIDENT_COLUMNS, incident_from_row, next_id
from bridge.store.queries import get_incident, incident_summary, timeline_events


def create_tables(conn: sqlite3.Connection) -> None:
    """Migration 0018_declared (SQLite's spelling; postgres/schema.py has PostgreSQL's)."""
    conn.execute(
        "CREATE TABLE incident_sources (incident_id INTEGER PRIMARY KEY, source TEXT NOT NULL, "
        "declared_by TEXT NOT NULL, description TEXT NOT NULL, labels TEXT NOT NULL, "
        "created_at INTEGER NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE incident_links (lookup TEXT PRIMARY KEY, incident_id INTEGER NOT NULL, "
        "linked_by TEXT NOT NULL, linked_at INTEGER NOT NULL) WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX idx_incident_links_incident ON incident_links (incident_id)")
    conn.execute(
        "CREATE TABLE incident_merges (duplicate_id INTEGER PRIMARY KEY, "
        "survivor_id INTEGER NOT NULL, merged_by TEXT NOT NULL, merged_at INTEGER NOT NULL)"
    )
    # A merged duplicate needs no postmortem of its own (the survivor's tells its story): the
    # pending postmortems' aggregate (store/metrics.py, 0011 and 0014) leaves it out. Its merge
    # row is written before its status changes; a resolved one counted before is taken back.
    conn.execute("DROP TRIGGER metric_incident_postmortem")
    conn.execute(
        "CREATE TRIGGER metric_incident_postmortem AFTER UPDATE OF status, severity, route "
        "ON incidents WHEN (old.status IS NOT new.status OR old.severity IS NOT new.severity "
        "OR old.route IS NOT new.route) "
        f"AND (old.status IN {metrics_sql.DONE} OR new.status IN {metrics_sql.DONE}) "
        f"AND {metrics_sql.UNPUBLISHED} AND new.dismissed_at IS NULL BEGIN "
        "UPDATE metric_postmortems SET n = n - 1 WHERE route = coalesce(old.route, '') "
        f"AND severity = old.severity AND old.status IN {metrics_sql.DONE}; "
        f"{pending_add_unmerged(metrics_sql.PENDING_ADD)} END"
    )
    conn.execute("DROP TRIGGER metric_postmortem_published")
    conn.execute(
        "CREATE TRIGGER metric_postmortem_published AFTER INSERT ON postmortem_publications "
        "WHEN NOT EXISTS (SELECT 1 FROM postmortem_publications p "
        "WHERE p.incident_id = new.incident_id AND p.id <> new.id) "
        f"AND {NOT_MERGED.replace('new.id', 'new.incident_id')} BEGIN "
        "UPDATE metric_postmortems SET n = n - 1 WHERE (route, severity) = "
        "(SELECT coalesce(route, ''), severity FROM incidents "
        f"WHERE id = new.incident_id AND status IN {metrics_sql.DONE}); END"
    )


# The incident of a trigger's row was not merged into another (store/metrics' aggregates).
NOT_MERGED = "NOT EXISTS (SELECT 1 FROM incident_merges m WHERE m.duplicate_id = new.id)"


def pending_add_unmerged(pending_add: str) -> str:
    """The pending postmortems' increment (``metrics.PENDING_ADD``, as either backend spells
    it) for an incident that was not merged into another."""
    for done in (f"new.status IN {metrics_sql.DONE}", f"NEW.status IN {metrics_sql.DONE}"):
        if done in pending_add:
            return pending_add.replace(done, f"{done} AND {NOT_MERGED}", 1)
    raise ValueError("the pending postmortems' increment changed: update pending_add_unmerged")


@immutable
class DeclareRequest:
    """A declared incident: the rules' decision for its labels (``key`` a fresh one) and what
    the person gave."""

    decision: Decision
    declaration: Declaration
    now: int
    idempotency: Idempotency | None = None
    directory: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@immutable
class LinkRequest:
    incident_id: int
    group_key: str
    actor: str
    now: int
    idempotency: Idempotency | None = None


@immutable
class MergeRequest:
    incident_id: int  # the duplicate
    into: int  # the survivor
    actor: str
    now: int
    reason: str = ""
    idempotency: Idempotency | None = None


def _error(status: int, message: str, field_name: str | None = None) -> ActionAnswer:
    body: dict[str, Any] = {"error": message}
    if field_name is not None:
        body["field"] = field_name
    return ActionAnswer(status, body)


def _load(conn: sqlite3.Connection, incident_id: int) -> Any:
    row = conn.execute(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)
    ).fetchone()
    return None if row is None else incident_from_row(row)


def declare(conn: sqlite3.Connection, request: DeclareRequest) -> ActionAnswer:
    """Open the declared incident: its row, its first entries and the tiers' ``opened`` rows,
    and its source; 201 with the incident as ``GET /api/v1/incidents/{id}`` shows it."""
    kept = kept_answer(conn, request.idempotency)
    if kept is not None:
        return kept
    now, declaration = request.now, request.declaration
    new_id = next_id(conn, "incidents")
    outcome = declare_incident(
        request.decision, declaration, new_id=new_id, now=now, directory=request.directory
    )
    if isinstance(outcome, Refusal):
        answer = _error(outcome.status, outcome.message, outcome.field)
        return keep_answer(conn, request.idempotency, answer, now)
    _, notifications = write_change(conn, None, outcome, now)
    conn.execute(
        "INSERT INTO incident_sources (incident_id, source, declared_by, description, labels, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (
            new_id,
            SOURCE_DECLARED,
            declaration.actor,
            declaration.description,
            jsontext.dumps(dict(declaration.labels)),
            now,
        ),
    )
    body = {"changed": True, "incident": get_incident(conn, new_id)}
    return keep_answer(conn, request.idempotency, ActionAnswer(201, body, True, notifications), now)


def link(conn: sqlite3.Connection, request: LinkRequest) -> ActionAnswer:
    """Link an Alertmanager group into an incident: its next webhooks update it (``redirect``)."""
    kept = kept_answer(conn, request.idempotency)
    if kept is not None:
        return kept
    before = _load(conn, request.incident_id)
    if before is None:
        return _error(404, f"no incident {request.incident_id}")
    lookup = link_lookup_group(request.group_key)
    row = conn.execute(
        "SELECT incident_id FROM incident_links WHERE lookup = ?", (lookup,)
    ).fetchone()
    outcome = link_group(before, request.group_key, request.actor, row[0] if row else None)
    if isinstance(outcome, Refusal):
        answer = _error(outcome.status, outcome.message, outcome.field)
        return keep_answer(conn, request.idempotency, answer, request.now)
    ids, notifications = write_change(conn, before, outcome, request.now)
    if outcome.changed:
        conn.execute(
            "INSERT INTO incident_links (lookup, incident_id, linked_by, linked_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (lookup) DO UPDATE SET "
            "incident_id = excluded.incident_id, linked_by = excluded.linked_by, "
            "linked_at = excluded.linked_at",
            (lookup, before.id, request.actor, request.now),
        )
    body = {
        "changed": outcome.changed,
        "incident": incident_summary(conn, before.id),
        "events": timeline_events(conn, before.id, list(ids)) if ids else [],
    }
    answer = ActionAnswer(200, body, outcome.changed, notifications)
    return keep_answer(conn, request.idempotency, answer, request.now)


def merge_incidents(conn: sqlite3.Connection, request: MergeRequest) -> ActionAnswer:
    """Merge an incident into another: both incidents' entries, the duplicate's links (its
    groups, its key, what was merged into it) moved to the survivor, the merge's row."""
    kept = kept_answer(conn, request.idempotency)
    if kept is not None:
        return kept
    now = request.now
    duplicate = _load(conn, request.incident_id)
    if duplicate is None:
        return _error(404, f"no incident {request.incident_id}")
    survivor = _load(conn, request.into)
    if survivor is None:
        answer = _error(400, f"no incident {request.into}", "into")
        return keep_answer(conn, request.idempotency, answer, now)
    row = conn.execute(
        "SELECT survivor_id FROM incident_merges WHERE duplicate_id = ?", (duplicate.id,)
    ).fetchone()
    entries = [
        eid
        for (eid,) in conn.execute(
            "SELECT id FROM timeline WHERE incident_id = ? ORDER BY id", (duplicate.id,)
        )
    ]
    planned = merge(
        duplicate,
        survivor,
        entries=entries,
        actor=request.actor,
        reason=request.reason,
        now=now,
        merged_into=row[0] if row else None,
    )
    if isinstance(planned, Refusal):
        answer = _error(planned.status, planned.message, planned.field)
        return keep_answer(conn, request.idempotency, answer, now)
    closed, grown = planned
    if closed.changed:
        # before the status changes: the metrics' triggers read it (no postmortem pending)
        conn.execute(
            "INSERT INTO incident_merges (duplicate_id, survivor_id, merged_by, merged_at) "
            "VALUES (?, ?, ?, ?)",
            (duplicate.id, survivor.id, request.actor, now),
        )
    dup_ids, dup_rows = write_change(conn, duplicate, closed, now)
    sur_ids, sur_rows = write_change(conn, survivor, grown, now)
    if closed.changed:
        # Whatever reached the duplicate reaches the survivor from now on: its linked groups,
        # what was merged into it before, and its own key (a webhook-made incident's group).
        conn.execute(
            "UPDATE incident_links SET incident_id = ? WHERE incident_id = ?",
            (survivor.id, duplicate.id),
        )
        conn.execute(
            "INSERT INTO incident_links (lookup, incident_id, linked_by, linked_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (lookup) DO UPDATE SET "
            "incident_id = excluded.incident_id, linked_by = excluded.linked_by, "
            "linked_at = excluded.linked_at",
            (link_lookup_key(duplicate.key), survivor.id, request.actor, now),
        )
    body = {
        "changed": closed.changed,
        "incident": incident_summary(conn, duplicate.id),
        "into": incident_summary(conn, survivor.id),
        "events": [
            *(timeline_events(conn, duplicate.id, list(dup_ids)) if dup_ids else []),
            *(timeline_events(conn, survivor.id, list(sur_ids)) if sur_ids else []),
        ],
    }
    answer = ActionAnswer(200, body, closed.changed, dup_rows + sur_rows)
    return keep_answer(conn, request.idempotency, answer, now)


def redirect(
    conn: sqlite3.Connection, groups: Sequence[str], keys: Sequence[str]
) -> dict[str, Any]:
    """The links that apply to a batch of webhooks: by ``group:<groupKey>`` and ``key:<key>``,
    the incident each names (its key and kept tiers), as {lookup: (key, Tiers)}. One read of a
    small table by its primary key; none of the batch's lookups linked: an empty answer."""
    wanted = [link_lookup_group(g) for g in dict.fromkeys(groups)]
    wanted += [link_lookup_key(k) for k in dict.fromkeys(keys)]
    if not wanted:
        return {}
    # The links first, on their own: no join for a planner to turn into a scan of incidents
    # (most batches stop here, nothing linked), then the incidents they name by id.
    found = dict(
        conn.execute(
            "SELECT lookup, incident_id FROM incident_links "
            f"WHERE lookup IN ({','.join('?' * len(wanted))})",
            wanted,
        ).fetchall()
    )
    if not found:
        return {}
    ids = sorted(set(found.values()))
    incidents = {
        i: (key, tiers_from_json(tiers))
        for i, key, tiers in conn.execute(
            f"SELECT id, key, tiers FROM incidents WHERE id IN ({','.join('?' * len(ids))})", ids
        )
    }
    return {lookup: incidents[i] for lookup, i in found.items() if i in incidents}


def redirected(
    decisions: Sequence[Decision], group_key: str, links: Mapping[str, Any]
) -> list[Decision]:
    """``decisions`` of one webhook with the links applied: a linked group's go to the incident
    it is linked into, a merged incident's key to the incident it was merged into (a group
    linked by hand wins); they notify the tiers that incident keeps."""
    by_group = links.get(link_lookup_group(group_key))
    out = []
    for d in decisions:
        found = by_group or links.get(link_lookup_key(d.key))
        out.append(d if found is None else replace(d, key=found[0], tiers=found[1]))
    return out
