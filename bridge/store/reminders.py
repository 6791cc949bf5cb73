"""Firing reminders and escalations: one writer transaction per tick.

For every incident being worked, ``core/reminders.due`` says what is due under the current
rules; each item is claimed by inserting its (incident, kind, due time) row into ``reminders``.
Only the transaction whose row went in writes the timeline entry and the outbox rows (in the
same transaction, as a person's action does: ``store/actions._write``). The key is the claim, so
an item is sent once per due time whatever runs it: a second tick, a restart, another process
or connection on the same file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.core.actions import AssignRole, Outcome, decide
from bridge.core.incidents import Event, Incident
from bridge.core.policy import tiers_from_json
from bridge.core.reminders import (
    ACTOR,
    SCHEDULED_STATUSES,
    Due,
    LastUpdate,
    ReminderPolicy,
    due,
    escalation_event,
    holders,
    reminder_event,
)
from bridge.core.timeutil import NS, parse_rfc3339
from bridge.core.values import immutable
from bridge.store.changes import write_change as _write
from bridge.store.incidents import INCIDENT_COLUMNS, incident_from_row

# (route, severity) -> the current rules' reminders for them
PolicyFor = Callable[[str, str], ReminderPolicy]
# (route, current commander, now) -> who an escalation hands the commander role to, or None
NextCommander = Callable[[str, str | None, int], str | None]

_SCHEDULED = ", ".join(f"'{s}'" for s in SCHEDULED_STATUSES)


@immutable
class Fired:
    """One reminder or escalation this tick sent, with the timeline entries it wrote."""

    incident_id: int
    kind: str
    due_at: int
    event_ids: tuple[int, ...]


@immutable
class FireResult:
    fired: tuple[Fired, ...] = ()
    notifications: int = 0  # outbox rows written


# What a tick reads of each incident being worked, besides its row: its newest status update
# and whether it was escalated, in the same statement (a walk of the status updates' index and
# of the reminders' key per incident). One query for the tick, not two per incident: over
# thousands of open incidents those were thousands of statements while the writer waited, and
# on PostgreSQL each is a round trip to the server (2.2 s for 20,000 incidents, docs/performance.md).
_NEWEST_UPDATE = (
    "(SELECT {col} FROM timeline t WHERE t.incident_id = incidents.id "
    "AND t.kind = 'status_update' ORDER BY t.id DESC LIMIT 1)"
)
_TICK = (
    f"SELECT {INCIDENT_COLUMNS}, {_NEWEST_UPDATE.format(col='t.time')}, "
    f"{_NEWEST_UPDATE.format(col='t.data')}, "
    "EXISTS (SELECT 1 FROM reminders r WHERE r.incident_id = incidents.id "
    "AND r.kind = 'escalated') "
    f"FROM incidents WHERE status IN ({_SCHEDULED})"
)
_FIELDS = len(INCIDENT_COLUMNS.split(", "))
_HAS_UPDATE = (
    "EXISTS (SELECT 1 FROM timeline t WHERE t.incident_id = incidents.id "
    "AND t.kind = 'status_update')"
)


def _last(time: int | None, text: str | None) -> LastUpdate | None:
    if time is None:
        return None
    data = json.loads(text or "{}")
    next_at = data.get("next_update_at")
    try:
        next_update_at = parse_rfc3339(next_at) if isinstance(next_at, str) else None
    except ValueError:
        next_update_at = None
    return LastUpdate(at=int(time), next_update_at=next_update_at)


def _claim(conn: sqlite3.Connection, incident_id: int, item: Due, now: int) -> bool:
    """Take the item: True for the one transaction whose row went in."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO reminders (incident_id, kind, due_at, fired_at) VALUES (?, ?, ?, ?)",
        (incident_id, item.kind, item.due_at, now),
    )
    return cur.rowcount == 1


# At most this many (route, severity) pairs are named in a tick's read; with more, it reads
# every incident it selects (the rules rarely have so many routes).
_MAX_PAIRS = 100


@dataclass(frozen=True)
class TickScope:
    """What a tick's read may leave out, from the rules: ``earliest(route, severity)`` is how
    long after its opening an incident of that pair can first have something due (ns), None
    when the rules give it nothing; ``unless`` an SQL condition on ``incidents`` under which an
    incident may be due sooner (a status update naming its next one, a reopen)."""

    earliest: Callable[[str, str], int | None]
    unless: str


def tick_rows(
    conn: sqlite3.Connection,
    tick: str,
    incident_ids: Collection[int] | None,
    scope: TickScope | None = None,
    now: int = 0,
) -> list[Any]:
    """The rows of a tick's query ``tick`` (``SELECT ... FROM incidents WHERE ...``), for every
    incident it selects or only ``incident_ids``' (in chunks of 500 parameters), by id.

    With ``scope`` (and no ids), the (route, severity) pairs of the tick's incidents are read
    first, and only the incidents that can have something due at ``now`` are read and built:
    those of the pairs the rules give something, opened long enough ago (or ``unless``). A
    storm's thousands of open incidents, minutes old, cost the tick one small grouped read,
    not a row, two subqueries and an Incident each in Python (974 ms for 125,000 on
    PostgreSQL, on the core the webhooks share). The callers decide again from each row read:
    this only leaves out rows that cannot matter."""
    if incident_ids is None:
        if scope is None:
            return list(conn.execute(tick + " ORDER BY id").fetchall())
        where = tick[tick.rindex(" FROM incidents WHERE ") :]
        pairs = conn.execute(f"SELECT DISTINCT route, severity{where}").fetchall()
        delays = {(r, s): scope.earliest(r, s) for r, s in pairs}
        keep = [(r, s) for (r, s), d in delays.items() if d is not None]
        if not keep:
            return []
        sql = f"{tick} AND (opened_at <= ? OR {scope.unless})"
        args: list[Any] = [now - min(d for d in delays.values() if d is not None)]
        if len(keep) < len(pairs) and len(keep) <= _MAX_PAIRS and all(r for r, _ in keep):
            sql += " AND (" + " OR ".join(["(route = ? AND severity = ?)"] * len(keep)) + ")"
            args += [v for pair in keep for v in pair]
        return list(conn.execute(sql + " ORDER BY id", args).fetchall())
    ids = sorted(incident_ids)
    rows: list[Any] = []
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ", ".join("?" * len(chunk))
        rows += conn.execute(f"{tick} AND id IN ({marks}) ORDER BY id", chunk).fetchall()
    return rows


def _worked(
    conn: sqlite3.Connection,
    policy: PolicyFor,
    incident_ids: Collection[int] | None,
    now: int,
) -> Iterator[tuple[Incident, ReminderPolicy, LastUpdate | None, bool]]:
    """Each incident being worked (of ``incident_ids`` when given) whose rules have reminders,
    with its policy, newest status update and whether it was escalated."""

    def earliest(route: str, severity: str) -> int | None:
        p = policy(route, severity)
        waits = [int(w * NS) for w in (p.update_every_s, p.acknowledge_within_s) if w is not None]
        return min(waits) if waits else None

    # a status update may name its next one sooner than the route's interval
    scope = TickScope(earliest, _HAS_UPDATE)
    rows = tick_rows(conn, _TICK, incident_ids, scope, now)
    for row in rows:
        incident = incident_from_row(row[:_FIELDS])
        p = policy(incident.route, incident.severity)
        if p.update_every_s is None and p.acknowledge_within_s is None:
            continue
        update_at, update_data, was_escalated = row[_FIELDS:]
        last = _last(update_at, update_data) if p.update_every_s is not None else None
        escalated = p.acknowledge_within_s is not None and bool(was_escalated)
        yield incident, p, last, escalated


def due_incidents(conn: sqlite3.Connection, now: int, *, policy: PolicyFor) -> list[int]:
    """The incidents with something due at ``now`` that is not sent yet, read on a reader: the
    tick writes only when there are some, and only for them (``fire_due(incident_ids=)``), so
    that reading every incident being worked never holds the writer and the webhooks behind
    it. What the writer does is decided again from what it reads (an incident acknowledged
    in between has nothing due any more); one that becomes due in between waits a tick."""
    found = []
    for incident, p, last, escalated in _worked(conn, policy, None, now):
        assert incident.id is not None
        items = due(incident, p, now, last_update=last, escalated=escalated)
        if items and _unsent(conn, incident.id, items):
            found.append(incident.id)
    return found


def _unsent(conn: sqlite3.Connection, incident_id: int, items: Sequence[Due]) -> bool:
    """Whether one of ``items`` has no claim yet (most due items were sent at an earlier tick
    and stay due until the incident moves on)."""
    for item in items:
        sent = conn.execute(
            "SELECT 1 FROM reminders WHERE incident_id = ? AND kind = ? AND due_at = ?",
            (incident_id, item.kind, item.due_at),
        ).fetchone()
        if sent is None:
            return True
    return False


def fire_due(
    conn: sqlite3.Connection,
    now: int,
    *,
    policy: PolicyFor,
    next_commander: NextCommander | None = None,
    directory: Mapping[str, Mapping[str, str]] | None = None,
    incident_ids: Collection[int] | None = None,
) -> FireResult:
    """Send what is due at ``now`` for every incident being worked (of ``incident_ids`` when
    given: those ``due_incidents`` found), each item once.

    ``policy`` gives the current rules' reminders of a route and severity; ``next_commander``
    who an escalation hands the commander role to, where the policy says so; ``directory``
    people's handles (the rotations'), so that the new commander is invited and mentioned."""
    fired: list[Fired] = []
    notifications = 0
    for incident, p, last, escalated in _worked(conn, policy, incident_ids, now):
        assert incident.id is not None
        for item in due(incident, p, now, last_update=last, escalated=escalated):
            if not _claim(conn, incident.id, item, now):
                continue  # sent already (an earlier tick, or another writer)
            outcome = _outcome(incident, item, p, now, last, next_commander, directory or {})
            ids, written = _write(conn, incident, outcome, now)
            conn.execute(
                "UPDATE reminders SET event_id = ? WHERE incident_id = ? AND kind = ? "
                "AND due_at = ?",
                (ids[0], incident.id, item.kind, item.due_at),
            )
            fired.append(Fired(incident.id, item.kind, item.due_at, tuple(ids)))
            notifications += written
            incident = outcome.incident
    return FireResult(tuple(fired), notifications)


def _outcome(
    incident: Incident,
    item: Due,
    policy: ReminderPolicy,
    now: int,
    last: LastUpdate | None,
    next_commander: NextCommander | None,
    directory: Mapping[str, Mapping[str, str]],
) -> Outcome:
    """The incident after the item and its timeline entries."""
    if item.kind == "reminder":
        return Outcome(incident, (reminder_event(incident, item, now, last),))
    after = incident
    events: list[Event] = []
    commander: str | None = None
    if policy.escalate_to_next_commander and next_commander is not None:
        current = next(iter(holders(incident, "commander")), None)
        person = next_commander(incident.route, current, now)
        if person is not None:
            # The hand-over is a person's action taken by the bridge: the same role logic, the
            # same timeline entry (role_changed), the new holder's handles kept.
            handover = decide(
                incident, AssignRole(ACTOR, "commander", person), now, directory=directory
            )
            if isinstance(handover, Outcome) and handover.changed:
                after, commander = handover.incident, person
                events.extend(handover.events)
    stakeholders = bool(tiers_from_json(incident.tiers).stakeholders)
    escalation = escalation_event(
        incident, policy, now, stakeholders=stakeholders, commander=commander
    )
    return Outcome(after, (escalation, *events))
