"""Writing one incident change: the incident row, its timeline events and the outbox rows
they call for (``core/notify``). Every writer of incident changes goes through here: people's
actions, reminders, "seen this before", the follow-up phase."""

from __future__ import annotations

import sqlite3
from typing import Any

from bridge.core import jsontext
from bridge.core.actions import Outcome
from bridge.core.notify import plan_notifications
from bridge.core.policy import tiers_from_json
from bridge.store.ingest import (
    _INSERT_EVENT,
    _INSERT_OUTBOX,
    _UPSERT_INCIDENT,
    _incident_values,
    _next_id,
)


def write_change(
    conn: sqlite3.Connection,
    before: Any,
    outcome: Outcome,
    now: int,
    *,
    ticket_target: str | None = None,
) -> tuple[range, int]:
    if not outcome.changed:
        return range(0), 0
    after = outcome.incident
    assert after.id is not None
    if after != before:
        conn.execute(_UPSERT_INCIDENT, (*_incident_values(after), now))
    first = _next_id(conn, "timeline")
    ids = range(first, first + len(outcome.events))
    conn.executemany(
        _INSERT_EVENT,
        [
            (eid, after.id, now, e.kind, e.actor, e.text, jsontext.dumps(e.data))
            for eid, e in zip(ids, outcome.events, strict=True)
        ],
    )
    entries = plan_notifications(
        before=before,
        after=after,
        events=list(zip(ids, outcome.events, strict=True)),
        tiers=tiers_from_json(after.tiers),
        ticket_target=ticket_target,
    )
    conn.executemany(
        _INSERT_OUTBOX,
        [
            (
                after.id,
                e.target,
                e.tier,
                e.event,
                e.event_id,
                e.idempotency_key,
                now,
                now,
                now,
            )
            for e in entries
        ],
    )
    return ids, len(entries)
