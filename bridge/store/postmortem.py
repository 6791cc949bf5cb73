"""Postmortems in the store (migration ``0010_postmortem``): the facts gathered for one, the
narrative's versions and the publications. Writes run in the writer thread, each one
transaction with its timeline entry (``postmortem_saved``, ``postmortem_published``) and the
outbox rows it calls for (``store/changes.write_change``, the incident's kept tiers).

The follow-up's tables (``followups``, ``followup_items``, the tickets in ``target_state``) are
read defensively: by column name, any of them missing or empty reads as nothing, a JSON value
that does not parse as ``{}``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from bridge.core import jsontext
from bridge.core.actions import Outcome
from bridge.core.postmortem import (
    EMPTY,
    MAX_ALERTS,
    Facts,
    IndexEntry,
    SectionProblem,
    Version,
    apply_sections,
    build_facts,
    changed_sections,
    durations,
    narrative_from,
    published_event,
    saved_event,
)
from bridge.core.timeutil import format_ns
from bridge.core.values import immutable
from bridge.store.actions import ActionAnswer, Idempotency, keep_answer, kept_answer
from bridge.store.changes import write_change
from bridge.store.incidents import INCIDENT_COLUMNS, INSERT_OUTBOX, incident_from_row
from bridge.store.queries import incident_summary, timeline_events
from bridge.store.search import POSTMORTEM, index_document

# The document a published postmortem is searched as: one per incident, replaced when published
# again (``search.index_document``).
SEARCH_REF = "published"


def _loads(text: Any) -> Any:
    if not isinstance(text, str) or not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return {}


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _optional(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
    """Rows of a table another part of the service owns, by column name; nothing when the table
    or a column is not (yet) there."""
    try:
        return _dicts(conn.execute(sql, args))
    except sqlite3.OperationalError:
        return []


def _alerts(conn: sqlite3.Connection, incident_id: int) -> list[dict[str, Any]]:
    """The incident's first ``MAX_ALERTS`` alerts, by start (a walk of its index)."""
    rows = conn.execute(
        "SELECT ia.status, a.labels, a.annotations, ia.starts_at, ia.ends_at, a.generator_url "
        "FROM incident_alerts ia JOIN alerts a ON a.fingerprint = ia.fingerprint "
        "WHERE ia.incident_id = ? ORDER BY ia.starts_at, ia.fingerprint LIMIT ?",
        (incident_id, MAX_ALERTS),
    ).fetchall()
    return [
        {
            "status": status,
            "labels": _loads(labels),
            "annotations": _loads(annotations),
            "starts_at": starts_at,
            "ends_at": ends_at,
            "generator_url": generator_url or "",
        }
        for status, labels, annotations, starts_at, ends_at, generator_url in rows
    ]


def _followup(
    conn: sqlite3.Connection, incident_id: int
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], Mapping[str, Any]]:
    """The follow-up (validation), its items and the tickets by item id; whatever is there."""
    found = _optional(conn, "SELECT * FROM followups WHERE incident_id = ?", (incident_id,))
    followup = None
    tickets: Mapping[str, Any] = {}
    if found:
        row = found[0]
        followup = {
            "validated_at": row.get("validated_at"),
            "validation": _loads(row.get("validation")),
        }
        target = row.get("ticket_target")
        if target:
            state = _optional(
                conn,
                "SELECT state FROM target_state WHERE incident_id = ? AND target = ?",
                (incident_id, target),
            )
            if state:
                saved = _loads(state[0].get("state"))
                tickets = saved.get("tickets") or {} if isinstance(saved, dict) else {}
                tickets = tickets if isinstance(tickets, dict) else {}
    items = _optional(
        conn, "SELECT * FROM followup_items WHERE incident_id = ? ORDER BY id", (incident_id,)
    )
    return followup, items, tickets


def gather_facts(conn: sqlite3.Connection, incident_id: int) -> Facts | None:
    """The facts of the incident now; None when there is no such incident."""
    incident = incident_summary(conn, incident_id)
    if incident is None:
        return None
    followup, items, tickets = _followup(conn, incident_id)
    return build_facts(
        incident,
        timeline_events(conn, incident_id),
        _alerts(conn, incident_id),
        alert_count=int(incident.get("alert_count") or 0),
        followup=followup,
        items=items,
        tickets=tickets,
    )


# --- versions ---------------------------------------------------------------------------------

_VERSION = "SELECT version, author, created_at, narrative FROM postmortem_versions"


def _version(row: Sequence[Any]) -> Version:
    return Version(int(row[0]), str(row[1]), int(row[2]), narrative_from(_loads(row[3])))


def list_versions(conn: sqlite3.Connection, incident_id: int) -> list[Version]:
    """Every saved version, oldest first."""
    rows = conn.execute(f"{_VERSION} WHERE incident_id = ? ORDER BY version", (incident_id,))
    return [_version(r) for r in rows.fetchall()]


def get_version(
    conn: sqlite3.Connection, incident_id: int, version: int | None = None
) -> Version | None:
    """Version ``version``, or the newest when None; None when there is none."""
    if version is None:
        row = conn.execute(
            f"{_VERSION} WHERE incident_id = ? ORDER BY version DESC LIMIT 1", (incident_id,)
        ).fetchone()
    else:
        row = conn.execute(
            f"{_VERSION} WHERE incident_id = ? AND version = ?", (incident_id, version)
        ).fetchone()
    return None if row is None else _version(row)


@immutable
class Publication:
    version: int
    path: str  # relative to the knowledge base's folder; "" when there was none
    commit_sha: str | None
    published_by: str
    published_at: int


_PUBLICATION = (
    "SELECT version, path, commit_sha, published_by, published_at FROM postmortem_publications"
)


def list_publications(conn: sqlite3.Connection, incident_id: int) -> list[Publication]:
    rows = conn.execute(f"{_PUBLICATION} WHERE incident_id = ? ORDER BY id", (incident_id,))
    return [Publication(*r) for r in rows.fetchall()]


def published_markdown(conn: sqlite3.Connection, incident_id: int) -> str | None:
    """The Markdown of the incident's latest publication; None when it was never published."""
    row = conn.execute(
        "SELECT markdown FROM postmortem_publications WHERE incident_id = ? "
        "ORDER BY id DESC LIMIT 1",
        (incident_id,),
    ).fetchone()
    return None if row is None else str(row[0])


def published_index(conn: sqlite3.Connection) -> list[IndexEntry]:
    """Every postmortem published into the knowledge base's folder (its latest publication with
    a file), for the index page."""
    rows = conn.execute(
        "SELECT i.id, i.title, i.severity, i.team, p.path, i.started_at, i.opened_at, "
        "i.acknowledged_at, i.mitigated_at, i.resolved_at FROM postmortem_publications p "
        "JOIN incidents i ON i.id = p.incident_id WHERE p.id IN (SELECT max(id) FROM "
        "postmortem_publications WHERE path != '' GROUP BY incident_id)"
    ).fetchall()
    out = []
    for (
        incident_id,
        title,
        severity,
        team,
        path,
        started,
        opened,
        acked,
        mitigated,
        resolved,
    ) in rows:
        milestones = {
            "started_at": started,
            "opened_at": opened,
            "acknowledged_at": acked,
            "mitigated_at": mitigated,
            "resolved_at": resolved,
        }
        out.append(
            IndexEntry(
                incident_id, title, severity, team or "", path, started, durations(milestones)
            )
        )
    return out


@immutable
class PostmortemRead:
    """What ``GET .../postmortem`` needs in one read: the facts now, the version asked for (the
    newest by default; None when nothing is saved), the newest version's number, the latest
    publication."""

    facts: Facts
    version: Version | None
    newest: int | None
    publication: Publication | None


def read_postmortem(
    conn: sqlite3.Connection, incident_id: int, version: int | None = None
) -> PostmortemRead | None:
    """None: no such incident. With ``version`` given and not saved, ``version`` is None."""
    facts = gather_facts(conn, incident_id)
    if facts is None:
        return None
    (newest,) = conn.execute(
        "SELECT max(version) FROM postmortem_versions WHERE incident_id = ?", (incident_id,)
    ).fetchone()
    chosen = get_version(conn, incident_id, version) if newest is not None else None
    publications = list_publications(conn, incident_id)
    return PostmortemRead(facts, chosen, newest, publications[-1] if publications else None)


def version_json(version: Version) -> dict[str, Any]:
    return {
        "version": version.version,
        "author": version.author,
        "saved_at": format_ns(version.saved_at),
        "sections": version.narrative.as_dict(),
    }


def publication_json(p: Publication) -> dict[str, Any]:
    return {
        "version": p.version,
        "path": p.path,
        "commit": p.commit_sha,
        "published_by": p.published_by,
        "published_at": format_ns(p.published_at),
    }


# --- writes -----------------------------------------------------------------------------------


@immutable
class SaveRequest:
    incident_id: int
    changes: Mapping[str, Any]  # section -> its new text ("" clears it)
    actor: str
    now: int
    idempotency: Idempotency | None = None


def save_version(conn: sqlite3.Connection, request: SaveRequest) -> ActionAnswer:
    """Save the newest narrative with ``changes`` applied as a new version, with its
    ``postmortem_saved`` entry and outbox rows; the same narrative again saves nothing
    (``changed: false``). An Idempotency-Key's first answer is kept, as for actions."""
    kept = kept_answer(conn, request.idempotency)
    if kept is not None:
        return kept
    answer = _save(conn, request)
    keep_answer(conn, request.idempotency, answer, request.now)
    return answer


def _save(conn: sqlite3.Connection, request: SaveRequest) -> ActionAnswer:
    incident_id = request.incident_id
    row = conn.execute(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)
    ).fetchone()
    if row is None:
        return ActionAnswer(404, {"error": f"no incident {incident_id}"})
    incident = incident_from_row(row)
    newest = get_version(conn, incident_id)
    base = newest.narrative if newest is not None else EMPTY
    after = apply_sections(base, request.changes)
    if isinstance(after, SectionProblem):
        return ActionAnswer(400, {"error": after.message, "field": after.field})
    changed = changed_sections(base, after)
    if not changed:
        body: dict[str, Any] = {
            "changed": False,
            "version": version_json(newest) if newest is not None else None,
            "events": [],
        }
        return ActionAnswer(200, body)
    number = (newest.version if newest is not None else 0) + 1
    conn.execute(
        "INSERT INTO postmortem_versions (incident_id, version, narrative, author, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (incident_id, number, jsontext.dumps(after.as_dict()), request.actor, request.now),
    )
    event = saved_event(number, request.actor, changed)
    ids, notifications = write_change(conn, incident, Outcome(incident, (event,)), request.now)
    saved = Version(number, request.actor, request.now, after)
    body = {
        "changed": True,
        "version": version_json(saved),
        "events": timeline_events(conn, incident_id, list(ids)),
    }
    return ActionAnswer(200, body, True, notifications)


@immutable
class PublishRecord:
    """A publication to record: the version, the file (relative to the knowledge base's folder;
    "" without one), the commit, who, when, the Markdown and what search indexes of it; and
    the outbox target that pushes the knowledge base (None: no push)."""

    incident_id: int
    version: int
    path: str
    commit_sha: str | None
    actor: str
    now: int
    markdown: str
    search_text: str
    push_target: str | None = None


@immutable
class Recorded:
    events: tuple[dict[str, Any], ...]  # the timeline entries written, as the API shows them
    notifications: int
    pushed: bool  # a push of the knowledge base is queued


def record_publication(conn: sqlite3.Connection, record: PublishRecord) -> Recorded | None:
    """Record the publication with its ``postmortem_published`` entry, the notifications the
    incident's tiers call for, the push of the knowledge base (an outbox row for the built-in
    sender) and the postmortem's search document. None: no such incident."""
    row = conn.execute(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?", (record.incident_id,)
    ).fetchone()
    if row is None:
        return None
    incident = incident_from_row(row)
    conn.execute(
        "INSERT INTO postmortem_publications (incident_id, version, path, commit_sha, "
        "published_by, published_at, markdown) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            record.incident_id,
            record.version,
            record.path,
            record.commit_sha,
            record.actor,
            record.now,
            record.markdown,
        ),
    )
    event = published_event(record.version, record.actor, record.path, record.commit_sha)
    ids, notifications = write_change(conn, incident, Outcome(incident, (event,)), record.now)
    pushed = False
    if record.push_target and record.commit_sha:
        event_id = ids[0]
        key = f"incident-{record.incident_id}/knowledge-base/{record.push_target}/push/{event_id}"
        conn.execute(
            INSERT_OUTBOX,
            (
                record.incident_id,
                record.push_target,
                "knowledge-base",
                "postmortem_published",
                event_id,
                key,
                record.now,
                record.now,
                record.now,
            ),
        )
        notifications += 1
        pushed = True
    index_document(conn, record.incident_id, POSTMORTEM, SEARCH_REF, record.search_text)
    events = timeline_events(conn, record.incident_id, list(ids))
    return Recorded(tuple(events), notifications, pushed)


def previous_path(conn: sqlite3.Connection, incident_id: int) -> str:
    """The file the incident's postmortem was last published to ("" when none): publishing
    again writes the same file, whatever became of the title."""
    row = conn.execute(
        "SELECT path FROM postmortem_publications WHERE incident_id = ? AND path != '' "
        "ORDER BY id DESC LIMIT 1",
        (incident_id,),
    ).fetchone()
    return "" if row is None else str(row[0])
