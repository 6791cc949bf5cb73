"""Firing the steps of escalation policies: one writer transaction per tick, as reminders.

For every ``triggered`` incident, ``core/escalation.due_steps`` says which level steps are due
under the current rules; each is claimed by inserting its row into ``reminders`` under the kind
``escalation/LEVEL/REPETITION`` and its due time: the table's key (incident, kind, due time) is
the claim, so a step is sent once per (incident, level, repetition, due time) whatever runs it
(a second tick, a restart, another replica on the same database). Only the transaction whose
row went in writes the step's timeline entry and its outbox rows (``store/changes.write_change``:
the level's targets and the dedicated channel), in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence

from bridge.core.actions import Outcome
from bridge.core.escalation import (
    EscalationPolicy,
    Reach,
    Recipient,
    Step,
    due_steps,
    started_at,
    step_event,
)
from bridge.core.incidents import Incident
from bridge.core.timeutil import NS
from bridge.store.changes import write_change
from bridge.store.incidents import INCIDENT_COLUMNS, incident_from_row
from bridge.store.reminders import Fired, FireResult, TickScope, tick_rows

# (route, severity) -> the current rules' escalation policy for them
EscalationFor = Callable[[str, str], EscalationPolicy]
# (a level's recipients, the step's due time) -> whom they are then, and the targets
ReachOf = Callable[[Sequence[Recipient], int], Reach]

# Each triggered incident with its newest reopen (escalation starts again from it), in one
# statement for the tick.
_TICK = (
    f"SELECT {INCIDENT_COLUMNS}, (SELECT t.time FROM timeline t "
    "WHERE t.incident_id = incidents.id AND t.kind = 'reopened' ORDER BY t.id DESC LIMIT 1) "
    "FROM incidents WHERE status = 'triggered'"
)
_FIELDS = len(INCIDENT_COLUMNS.split(", "))
_REOPENED = (
    "EXISTS (SELECT 1 FROM timeline t WHERE t.incident_id = incidents.id AND t.kind = 'reopened')"
)
# Migration 0021_escalation, the same statement on both backends: the newest reopen of each
# incident found through an index over reopens only (the tick's subquery walked every entry of
# each triggered incident's timeline without it: 190 ms instead of 73 ms a tick for 5,000
# triggered incidents of 40 entries each on SQLite).
REOPENS_INDEX = (
    "CREATE INDEX idx_timeline_reopens ON timeline (incident_id, id) WHERE kind = 'reopened'"
)


def _escalating(
    conn: sqlite3.Connection,
    policy: EscalationFor,
    incident_ids: Collection[int] | None,
    now: int,
) -> Iterator[tuple[Incident, EscalationPolicy, int | None]]:
    """Each triggered incident (of ``incident_ids`` when given) whose rules have a policy,
    with it and the incident's newest reopen."""

    def earliest(route: str, severity: str) -> int | None:
        levels = policy(route, severity).levels
        return int(levels[0].after_s * NS) if levels else None

    # a reopen starts the policy again from then
    rows = tick_rows(conn, _TICK, incident_ids, TickScope(earliest, _REOPENED), now)
    for row in rows:
        incident = incident_from_row(row[:_FIELDS])
        p = policy(incident.route, incident.severity)
        if p.levels:
            reopened = row[_FIELDS]
            yield incident, p, int(reopened) if reopened is not None else None


def _sent(conn: sqlite3.Connection, incident_id: int, step: Step) -> bool:
    found = conn.execute(
        "SELECT 1 FROM reminders WHERE incident_id = ? AND kind = ? AND due_at = ?",
        (incident_id, step.key, step.due_at),
    ).fetchone()
    return found is not None


def due_incidents(conn: sqlite3.Connection, now: int, *, policy: EscalationFor) -> list[int]:
    """The incidents with a step due at ``now`` and not sent yet, read on a reader: the tick
    writes only for them (``fire_due(incident_ids=)``), deciding again from what it reads."""
    found = []
    for incident, p, reopened in _escalating(conn, policy, None, now):
        assert incident.id is not None
        items = due_steps(incident, p, now, reopened_at=reopened)
        if any(not _sent(conn, incident.id, s) for s in items):
            found.append(incident.id)
    return found


def fire_due(
    conn: sqlite3.Connection,
    now: int,
    *,
    policy: EscalationFor,
    reach: ReachOf,
    incident_ids: Collection[int] | None = None,
) -> FireResult:
    """Send the steps due at ``now`` for every triggered incident (of ``incident_ids`` when
    given), each once: its timeline entry (``escalation_step``) and outbox rows to whom the
    level reaches at the step's due time (``reach``)."""
    fired: list[Fired] = []
    notifications = 0
    for incident, p, reopened in _escalating(conn, policy, incident_ids, now):
        assert incident.id is not None
        start = started_at(incident, reopened)
        for step in due_steps(incident, p, now, reopened_at=reopened):
            cur = conn.execute(
                "INSERT OR IGNORE INTO reminders (incident_id, kind, due_at, fired_at) "
                "VALUES (?, ?, ?, ?)",
                (incident.id, step.key, step.due_at, now),
            )
            if cur.rowcount != 1:
                continue  # sent already (an earlier tick, or another writer)
            whom = reach(p.levels[step.level - 1].notify, step.due_at)
            event = step_event(incident, p, step, whom, start=start)
            ids, written = write_change(conn, incident, Outcome(incident, (event,)), now)
            conn.execute(
                "UPDATE reminders SET event_id = ? WHERE incident_id = ? AND kind = ? "
                "AND due_at = ?",
                (ids[0], incident.id, step.key, step.due_at),
            )
            fired.append(Fired(incident.id, step.key, step.due_at, tuple(ids)))
            notifications += written
    return FireResult(tuple(fired), notifications)
