"""Reconciliation's reads and writes (docs/reconcile.md): which open incidents an answer of
Alertmanager's API can speak for, and the decisions of ``core/reconcile`` written in the
writer, one transaction per batch of incidents, through ``changes.write_change`` (the incident,
its timeline entries, the outbox rows for its dedicated channel).

The decisions are made inside the write, on what the store holds at that moment: a webhook that
arrived between the poll and the write is seen (its ``last_seen`` is newer than the answer), so
a poll racing a webhook, or another poll, never resolves what the webhook just said fires, and a
second poll with the same answer changes nothing (each mark is recorded once).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import field

from bridge.core import jsontext
from bridge.core.actions import Outcome
from bridge.core.incidents import OPEN_STATUSES
from bridge.core.reconcile import AmView, LinkView, plan_incident
from bridge.core.values import immutable
from bridge.store.changes import write_change
from bridge.store.incidents import INCIDENT_COLUMNS, incident_from_row

_OPEN = ", ".join(f"'{s}'" for s in OPEN_STATUSES)


@immutable
class TruncatedGroup:
    """An open incident whose webhook left alerts out (``max_alerts``): what fetching the rest
    needs (from its ``truncated_alerts`` entry) and the fingerprints it holds."""

    incident_id: int
    group_key: str
    receiver: str
    group_labels: Mapping[str, str]
    held: frozenset[str]


@immutable
class Candidates:
    incidents: tuple[int, ...]  # open incidents of the answering Alertmanager's receivers
    truncated: tuple[TruncatedGroup, ...] = ()
    unknown_receiver: int = 0  # open incidents left alone: their receiver is not Alertmanager's


@immutable
class Applied:
    """What one write of reconciliation did."""

    changed: tuple[int, ...] = ()  # incidents with new timeline entries
    mitigated: tuple[int, ...] = ()
    notifications: int = 0
    kinds: Mapping[str, int] = field(default_factory=dict)  # timeline kind -> entries written
    # (incident id, fingerprint) of firing alerts this answer found gone: the next poll must
    # find them gone too before they are resolved (core/reconcile.plan_incident)
    gone: frozenset[tuple[int, str]] = frozenset()


def candidates(conn: sqlite3.Connection, receivers: Collection[str]) -> Candidates:
    """The open incidents an answer can speak for: those opened by a webhook of one of the
    receivers the answering Alertmanager has. An incident of another receiver (another
    Alertmanager sends to this service too) or of none known is left alone."""
    # oldest first on both backends (PostgreSQL promises no order without one): the
    # reconciler resolves and logs in the order incidents were opened, run after run
    rows = conn.execute(
        f"SELECT id, receiver, truncated_alerts FROM incidents WHERE status IN ({_OPEN}) "
        "ORDER BY id"
    ).fetchall()
    wanted = set(receivers)
    ids = [r[0] for r in rows if r[1] in wanted]
    truncated: list[TruncatedGroup] = []
    for incident_id, receiver, count in rows:
        if not count or receiver not in wanted:
            continue
        found = conn.execute(
            "SELECT data FROM timeline WHERE incident_id = ? AND kind = 'truncated_alerts' "
            "ORDER BY id DESC LIMIT 1",
            (incident_id,),
        ).fetchone()
        data = json.loads(found[0]) if found and found[0] else {}
        if not isinstance(data.get("group_labels"), dict) or "group_key" not in data:
            continue  # recorded before the group was kept on the entry: nothing to ask for
        held = frozenset(
            r[0]
            for r in conn.execute(
                "SELECT fingerprint FROM incident_alerts WHERE incident_id = ?", (incident_id,)
            )
        )
        truncated.append(
            TruncatedGroup(
                incident_id,
                str(data["group_key"]),
                str(data.get("receiver") or receiver),
                {str(k): str(v) for k, v in data["group_labels"].items()},
                held,
            )
        )
    return Candidates(tuple(ids), tuple(truncated), len(rows) - len(ids))


def _links(conn: sqlite3.Connection, incident_id: int) -> list[LinkView]:
    rows = conn.execute(
        "SELECT ia.fingerprint, ia.status, ia.starts_at, ia.ends_at, ia.last_seen, a.labels, "
        "ia.mark FROM incident_alerts ia JOIN alerts a ON a.fingerprint = ia.fingerprint "
        "WHERE ia.incident_id = ? ORDER BY ia.starts_at, ia.fingerprint",
        (incident_id,),
    )
    return [
        LinkView(
            fingerprint=fp,
            status=status,
            starts_at=starts_at,
            ends_at=ends_at,
            last_seen=last_seen,
            labels=json.loads(labels),
            mark=json.loads(mark) if mark else None,
        )
        for fp, status, starts_at, ends_at, last_seen, labels, mark in rows
    ]


def apply_view(
    conn: sqlite3.Connection,
    *,
    incident_ids: Sequence[int],
    view: AmView,
    now: int,
    min_age_ns: int = 0,
    gone_before: Collection[tuple[int, str]] | None = None,
) -> Applied:
    """Compare each incident (still open now) with ``view`` and write what changed. With
    ``gone_before`` (the previous poll's ``Applied.gone``), an alert is resolved only when that
    poll found it gone too; ``min_age_ns``: only when its last webhook is at least that old."""
    previous: dict[int, set[str]] | None = None
    if gone_before is not None:
        previous = {}
        for incident_id, fp in gone_before:
            previous.setdefault(incident_id, set()).add(fp)
    gone: set[tuple[int, str]] = set()
    changed: list[int] = []
    mitigated: list[int] = []
    notifications = 0
    kinds: dict[str, int] = {}
    for incident_id in incident_ids:
        row = conn.execute(
            f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ? AND status IN ({_OPEN})",
            (incident_id,),
        ).fetchone()
        if row is None:
            continue
        before = incident_from_row(row)
        plan = plan_incident(
            before,
            _links(conn, incident_id),
            view,
            now,
            min_age_ns=min_age_ns,
            gone_before=None if previous is None else previous.get(incident_id, frozenset()),
        )
        gone.update((incident_id, fp) for fp in plan.gone)
        if not plan.changed:
            continue
        for c in plan.links:
            conn.execute(
                "UPDATE incident_alerts SET status = ?, ends_at = ?, mark = ? "
                "WHERE incident_id = ? AND fingerprint = ?",
                (
                    c.status,
                    c.ends_at,
                    jsontext.dumps(dict(c.mark)) if c.mark is not None else None,
                    incident_id,
                    c.fingerprint,
                ),
            )
            # The alerts table holds the newest occurrence: it follows when it is this one.
            conn.execute(
                "UPDATE alerts SET status = ?, ends_at = ? WHERE fingerprint = ? AND starts_at = ?",
                (c.status, c.ends_at, c.fingerprint, c.starts_at),
            )
        _, n = write_change(conn, before, Outcome(plan.incident, plan.events), now)
        notifications += n
        if plan.events:
            changed.append(incident_id)
        if plan.incident.status == "mitigated" and before.status != "mitigated":
            mitigated.append(incident_id)
        for e in plan.events:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
    return Applied(tuple(changed), tuple(mitigated), notifications, kinds, frozenset(gone))
