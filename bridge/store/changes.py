"""Writing one incident change: the incident row, its timeline events and the outbox rows
they call for (``core/notify``). Every writer of incident changes goes through here: people's
actions, reminders, "seen this before", the follow-up phase."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from bridge.core import jsontext
from bridge.core.actions import Outcome
from bridge.core.notify import plan_notifications
from bridge.core.policy import tiers_from_json
from bridge.core.values import immutable
from bridge.store.incidents import (
    INSERT_EVENT,
    INSERT_OUTBOX,
    UPSERT_INCIDENT,
    incident_values,
    insert_rows,
    next_id,
    together,
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
    ((ids, written),) = write_changes(
        conn,
        [Change(before, outcome, ticket_target=ticket_target, silence_on_ack=silence_on_ack)],
        now,
    )
    return ids, written


@immutable
class Change:
    """One incident's change for ``write_changes``: as ``write_change``'s arguments."""

    before: Any
    outcome: Outcome
    ticket_target: str | None = None
    silence_on_ack: bool = False


def write_changes(
    conn: sqlite3.Connection, changes: Sequence[Change], now: int
) -> list[tuple[range, int]]:
    """``write_change`` of each of ``changes`` (one incident each), the same rows and ids as
    one after the other, in one statement per table for them all: on PostgreSQL each statement
    is a round trip, and a job of the writer (the indexer's "seen this before", 32 incidents)
    holds the webhooks queued behind it for as long as its round trips take
    (docs/performance.md). The outbox rows of the ``@alertmanager`` sender, when a change calls
    for one (a status change: rare), follow all the tiers' rows. An incident that comes again
    starts a new group, so that it is written over its own earlier change."""
    out: list[tuple[range, int]] = []
    group: list[Change] = []
    for change in changes:
        incident_id = change.outcome.incident.id
        if any(c.outcome.incident.id == incident_id for c in group):
            out.extend(_write_group(conn, group, now))
            group = []
        group.append(change)
    if group:
        out.extend(_write_group(conn, group, now))
    return out


def _write_group(
    conn: sqlite3.Connection, changes: Sequence[Change], now: int
) -> list[tuple[range, int]]:
    out: list[tuple[range, int]] = [(range(0), 0)] * len(changes)
    changed = [(k, c) for k, c in enumerate(changes) if c.outcome.changed]
    upserts = []
    for _, c in changed:
        after = c.outcome.incident
        assert after.id is not None
        if after != c.before:
            upserts.append((*incident_values(after), now))
    count = sum(len(c.outcome.events) for _, c in changed)
    first = next_id(conn, "timeline") if count else 0
    events: list[tuple[Any, ...]] = []
    outbox: list[tuple[Any, ...]] = []
    planned: list[tuple[int, range, int]] = []
    for k, c in changed:
        after = c.outcome.incident
        ids = range(first, first + len(c.outcome.events))
        first += len(c.outcome.events)
        events.extend(
            (eid, after.id, now, e.kind, e.actor, e.text, jsontext.dumps(e.data))
            for eid, e in zip(ids, c.outcome.events, strict=True)
        )
        entries = plan_notifications(
            before=c.before,
            after=after,
            events=list(zip(ids, c.outcome.events, strict=True)),
            tiers=tiers_from_json(after.tiers),
            ticket_target=c.ticket_target,
        )
        outbox.extend(
            (after.id, e.target, e.tier, e.event, e.event_id, e.idempotency_key, now, now, now)
            for e in entries
        )
        planned.append((k, ids, len(entries)))
    with together(conn):
        if upserts:
            insert_rows(conn, UPSERT_INCIDENT, upserts)
        insert_rows(conn, INSERT_EVENT, events)
        insert_rows(conn, INSERT_OUTBOX, outbox)
    for k, ids, n in planned:
        c = changes[k]
        silences = _silence_rows(
            conn, c.before, c.outcome.incident, ids, c.outcome, now, c.silence_on_ack
        )
        out[k] = (ids, n + silences)
    return out


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
