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
from bridge.store.incidents import (
    INSERT_EVENT,
    INSERT_OUTBOX,
    UPSERT_INCIDENT,
    incident_values,
    next_id,
)


def write_change(
    conn: sqlite3.Connection,
    before: Any,
    outcome: Outcome,
    now: int,
    *,
    ticket_target: str | None = None,
    silence_on_ack: bool = False,
) -> tuple[range, int]:
    """Write ``outcome`` (the incident after, its events) over ``before``: the incident row,
    the timeline, the tiers' outbox rows, and the rows of the built-in sender ``@alertmanager``
    (docs/reconcile.md): make a silence when the incident is acknowledged and
    ``silence_on_ack`` (the route asks for it), expire it when the incident resolves or closes.
    Returns the new entries' ids and how many outbox rows were written."""
    if not outcome.changed:
        return range(0), 0
    after = outcome.incident
    assert after.id is not None
    if after != before:
        conn.execute(UPSERT_INCIDENT, (*incident_values(after), now))
    first = next_id(conn, "timeline")
    ids = range(first, first + len(outcome.events))
    conn.executemany(
        INSERT_EVENT,
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
        INSERT_OUTBOX,
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
    silences = _silence_rows(conn, before, after, ids, outcome, now, silence_on_ack)
    return ids, len(entries) + silences


SILENCE_SENDER = "@alertmanager"  # bridge/silences.py; "@" keeps it apart from rule targets


def silence_key(incident_id: int, what: str) -> str:
    """One silence per incident (``make``), expired once (``expire``)."""
    return f"incident-{incident_id}/alertmanager/{SILENCE_SENDER}/{what}"


def _silence_rows(
    conn: sqlite3.Connection,
    before: Any,
    after: Any,
    ids: range,
    outcome: Outcome,
    now: int,
    silence_on_ack: bool,
) -> int:
    was = getattr(before, "status", None)
    if after.status == "acknowledged" and was == "triggered" and silence_on_ack:
        what, event = "make", "acknowledged"
    elif after.status in ("resolved", "closed") and was not in ("resolved", "closed"):
        made = conn.execute(
            "SELECT 1 FROM outbox WHERE idempotency_key = ?", (silence_key(after.id, "make"),)
        ).fetchone()
        if made is None:
            return 0  # no silence was asked for: nothing to expire
        what, event = "expire", "resolved"
    else:
        return 0
    # The entry the row tells of: the status change (its actor makes the silence).
    event_id = next(
        (
            eid
            for eid, e in zip(ids, outcome.events, strict=True)
            if e.kind == "status_changed" and e.data.get("to") == after.status
        ),
        ids[0],
    )
    cur = conn.execute(
        INSERT_OUTBOX,
        (
            after.id,
            SILENCE_SENDER,
            "alertmanager",
            event,
            event_id,
            silence_key(after.id, what),
            now,
            now,
            now,
        ),
    )
    return cur.rowcount
