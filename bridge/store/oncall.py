"""On-call overrides made at run time (API, CLI, pages, chat; docs/oncall.md): who holds a
rotation for a span instead of its schedule, who made the override and why. The rules file stays
the base schedule; these rows are merged over its overrides by the runtime (a snapshot refreshed
on every change and at each scheduler tick), never read by the pure rotation code.

Times are ns since the epoch. Ending an override early (DELETE) keeps the row with ``ended_at``
and ``ended_by``: its span is then ``[start_at, min(end_at, ended_at))``, empty when it ended
before it began, so what was planned stays to be looked at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping, Sequence

from bridge.core.actions import Outcome
from bridge.core.incidents import OPEN_STATUSES, Event, Incident
from bridge.core.timeutil import format_ns
from bridge.core.values import immutable
from bridge.store import messages
from bridge.store.changes import write_change
from bridge.store.incidents import INCIDENT_COLUMNS, incident_from_row


def create_table(conn: sqlite3.Connection) -> None:
    """Migration 0019_oncall (PostgreSQL's DDL: postgres/schema.py, the same columns)."""
    conn.execute(
        "CREATE TABLE oncall_overrides ("
        " id INTEGER PRIMARY KEY,"
        " rotation TEXT NOT NULL,"
        " person TEXT NOT NULL,"
        " start_at INTEGER NOT NULL,"
        " end_at INTEGER NOT NULL,"
        " reason TEXT NOT NULL,"
        " created_by TEXT NOT NULL,"
        " created_at INTEGER NOT NULL,"
        " ended_at INTEGER,"
        " ended_by TEXT,"
        " idempotency_key TEXT UNIQUE"  # a client's retry returns the row it made
        ")"
    )
    conn.execute("CREATE INDEX oncall_overrides_end ON oncall_overrides (end_at)")
    # One row per hand-off announced (rotation, instant): the scheduler's once-per-hand-off key
    conn.execute(
        "CREATE TABLE oncall_handoffs ("
        " rotation TEXT NOT NULL,"
        " handoff_at INTEGER NOT NULL,"
        " from_person TEXT NOT NULL,"
        " to_person TEXT NOT NULL,"
        " recorded_at INTEGER NOT NULL,"
        " PRIMARY KEY (rotation, handoff_at)"
        ")"
    )


@immutable
class NewOverride:
    rotation: str
    person: str
    start_at: int
    end_at: int
    reason: str
    created_by: str
    now: int
    idempotency_key: str | None = None


@immutable
class StoredOverride:
    id: int
    rotation: str
    person: str
    start_at: int
    end_at: int
    reason: str
    created_by: str
    created_at: int
    ended_at: int | None
    ended_by: str | None

    @property
    def effective_end(self) -> int:
        """Where the override stops holding: its end, or earlier when someone ended it."""
        return self.end_at if self.ended_at is None else min(self.end_at, self.ended_at)


_COLUMNS = (
    "id, rotation, person, start_at, end_at, reason, created_by, created_at, ended_at, ended_by"
)


def _row(r: tuple[object, ...]) -> StoredOverride:
    return StoredOverride(*r)  # type: ignore[arg-type]


def add_override(conn: sqlite3.Connection, new: NewOverride) -> tuple[StoredOverride, bool]:
    """Store ``new``; the row and True, or the row an earlier request with the same
    Idempotency-Key made and False (then nothing is written)."""
    if new.idempotency_key is not None:
        found = conn.execute(
            f"SELECT {_COLUMNS} FROM oncall_overrides WHERE idempotency_key = ?",
            (new.idempotency_key,),
        ).fetchone()
        if found is not None:
            return _row(found), False
    row = conn.execute(
        "INSERT INTO oncall_overrides (rotation, person, start_at, end_at, reason, created_by,"
        " created_at, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        f"RETURNING {_COLUMNS}",
        (
            new.rotation,
            new.person,
            new.start_at,
            new.end_at,
            new.reason,
            new.created_by,
            new.now,
            new.idempotency_key,
        ),
    ).fetchone()
    return _row(row), True


def end_override(
    conn: sqlite3.Connection, *, override_id: int, now: int, by: str
) -> StoredOverride | None:
    """End override ``override_id`` now (one not begun yet is cancelled); None when there is
    no such override. Ending one that has already ended changes nothing."""
    conn.execute(
        "UPDATE oncall_overrides SET ended_at = ?, ended_by = ? "
        "WHERE id = ? AND ended_at IS NULL AND end_at > ?",
        (now, by, override_id, now),
    )
    found = conn.execute(
        f"SELECT {_COLUMNS} FROM oncall_overrides WHERE id = ?", (override_id,)
    ).fetchone()
    return None if found is None else _row(found)


def list_overrides(
    conn: sqlite3.Connection, *, rotation: str | None = None, after: int = 0
) -> list[StoredOverride]:
    """The overrides still holding after ``after`` (ns; 0: every one ever made), of one
    rotation or all, by start then id."""
    sql = (
        f"SELECT {_COLUMNS} FROM oncall_overrides "
        "WHERE end_at > ? AND (ended_at IS NULL OR ended_at > ?)"
    )
    args: list[object] = [after, after]
    if rotation is not None:
        sql += " AND rotation = ?"
        args.append(rotation)
    rows = conn.execute(sql + " ORDER BY start_at, id", args).fetchall()
    return [_row(r) for r in rows]


@immutable
class Handoff:
    """What announcing a hand-off wrote: nothing when it was announced before (``recorded``
    False), else the open incidents told, how many outbox rows and channel messages."""

    recorded: bool
    incidents: tuple[int, ...] = ()
    notifications: int = 0
    messages: int = 0


def handoff_text(rotation: str, giver: str, taker: str, incidents: Collection[int]) -> str:
    text = f"Hand-off: {giver} hands {rotation} to {taker}"
    if incidents:
        text += f"; {taker} inherits " + ", ".join(f"#{i}" for i in sorted(incidents))
    return text


# The inherited incidents a hand-off message lists at most (the total is given too): a message
# stays readable, and within every target's size, however many incidents are open.
HANDOFF_MAX_INCIDENTS = 20


def _handoff_message(
    conn: sqlite3.Connection,
    rotation: str,
    at: int,
    giver: str,
    taker: str,
    incidents: Sequence[Incident],
    targets: Collection[str],
    now: int,
    people: Mapping[str, Mapping[str, str]],
) -> int:
    if not targets:
        return 0
    shown = [
        {"id": i.id, "title": i.title, "severity": i.severity, "status": i.status}
        for i in incidents[:HANDOFF_MAX_INCIDENTS]
    ]
    data = {
        "rotation": rotation,
        "from": giver,
        "to": taker,
        "at": format_ns(at),
        "incidents": shown,
        "incident_count": len(incidents),
        # the two people's handles: a Slack message mentions them (``mention``)
        "people": {name: dict(people.get(name) or {}) for name in (giver, taker)},
    }
    key = f"handoff:{rotation}:{at}"
    return messages.enqueue(conn, key=key, kind="handoff", data=data, targets=targets, now=now)


def record_handoff(
    conn: sqlite3.Connection,
    *,
    rotation: str,
    at: int,
    giver: str,
    taker: str,
    routes: Collection[str],
    now: int,
    targets: Collection[str] = (),
    people: Mapping[str, Mapping[str, str]] | None = None,
) -> Handoff:
    """Announce the hand-off of ``rotation`` at ``at`` once (its row is the key: a second
    tick, a restart or another replica writes nothing): on each open incident of ``routes``
    (those whose commander comes from the rotation, which ``taker`` inherits) a timeline entry
    by incident-bridge, with its outbox rows (the incident's channel), and one channel message
    (``store/messages``, kind ``handoff``) to ``targets`` (the rotation's ``handoff_to``;
    ``people``: the members' handles), all in this transaction."""
    row = conn.execute(
        "INSERT OR IGNORE INTO oncall_handoffs (rotation, handoff_at, from_person, to_person,"
        " recorded_at) VALUES (?, ?, ?, ?, ?) RETURNING rotation",
        (rotation, at, giver, taker, now),
    ).fetchone()
    if row is None:
        return Handoff(recorded=False)
    wanted = sorted(set(routes))
    if not wanted:
        sent = _handoff_message(conn, rotation, at, giver, taker, [], targets, now, people or {})
        return Handoff(recorded=True, messages=sent)
    statuses = ", ".join(f"'{s}'" for s in OPEN_STATUSES)
    marks = ", ".join("?" * len(wanted))
    incidents = [
        incident_from_row(r)
        for r in conn.execute(
            f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE status IN ({statuses})"
            f" AND route IN ({marks}) ORDER BY id",
            wanted,
        ).fetchall()
    ]
    ids = tuple(i.id for i in incidents if i.id is not None)
    sent = _handoff_message(conn, rotation, at, giver, taker, incidents, targets, now, people or {})
    text = handoff_text(rotation, giver, taker, ids)
    data = {"rotation": rotation, "from": giver, "to": taker, "at": at, "incidents": list(ids)}
    written = 0
    for incident in incidents:
        event = Event("note", text, data={"handoff": data}, actor="incident-bridge")
        _ids, n = write_change(conn, incident, Outcome(incident, (event,)), now)
        written += n
    return Handoff(recorded=True, incidents=ids, notifications=written, messages=sent)
