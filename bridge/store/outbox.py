"""Outbox queries and state changes. Writes run in the writer thread (``Store.write``), reads on
the read pool (``Store.read``); every function takes the connection first.

Several replicas (``serve`` processes on one PostgreSQL database) work the same outbox, each
under its replica id. What one process used to keep in memory is in the database:

- a head being sent is claimed (``claimed_by``, ``claim_until``) in the write that fixes its
  group (``claim_groups``); ``due`` leaves out the heads another replica holds with a live
  claim, and as only the oldest pending row of an (incident, target) is ever a head, a claimed
  head holds back that (incident, target)'s later rows on every replica. A claim ends with the
  attempt's outcome (``record``), a release (``release``: the worker stopping) or its lease
  (``LEASE_NS``, renewed by the worker while the send lasts: ``renew``); an expired claim is
  free, and the row goes out again in the group fixed at its first claim, under the same
  idempotency key, as after a restart;
- a target's pause after a Retry-After (``outbox_pauses``), written with the attempt's outcome
  and read by every replica (``paused_targets``, ``due``);
- the next send slot of each paced (target, channel) (``outbox_pace``), taken in the claim's
  write, so that the replicas together keep one channel's pace.

On SQLite there is one process, and the same code runs with one replica id.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from bridge.core import jsontext
from bridge.core.actions import Outcome
from bridge.core.incidents import Event
from bridge.core.policy import severity_rank
from bridge.core.timeutil import format_ns
from bridge.store import messages
from bridge.store.changes import write_change
from bridge.store.incidents import INCIDENT_COLUMNS, incident_from_row
from bridge.store.queries import get_incident_for_message, newest_first, timeline_events

STATES = ("pending", "delivered", "dead")
# How long a claim holds a head without news of its replica. The worker renews its claims every
# third of this while their sends last (a send may wait for its target's turn, its pace and its
# quick retries for much longer than one request), so the lease only has to outlast a stall of
# the whole process between two renewals (about 13 s of margin). A replica that died holds its
# heads this long at most, then another one (or the process restarted, under a new replica id)
# sends them again: the lease is what a crash costs those notifications.
LEASE_NS = 20 * 1_000_000_000
# Leaders claimed per statement (SQLite's bound parameters stay far below its limit).
_CLAIM_CHUNK = 500
_ROW = (
    "id, incident_id, target, tier, event, event_id, idempotency_key, state, attempts, "
    "next_attempt_at, created_at, updated_at, delivered_at, last_error, leader_id"
)


@dataclass(frozen=True)
class OutboxRow:
    id: int
    incident_id: int
    target: str
    tier: str
    event: str
    event_id: int | None
    idempotency_key: str
    state: str
    attempts: int
    next_attempt_at: int
    created_at: int
    updated_at: int
    delivered_at: int | None
    last_error: str | None
    leader_id: int | None
    # the incident's severity when the row was read as due (the worker orders by it)
    severity: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "incident_id": self.incident_id,
            "target": self.target,
            "tier": self.tier,
            "event": self.event,
            "event_id": self.event_id,
            "idempotency_key": self.idempotency_key,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt_at": format_ns(self.next_attempt_at),
            "created_at": format_ns(self.created_at),
            "delivered_at": format_ns(self.delivered_at),
            "last_error": self.last_error,
            "carried_by": self.leader_id if self.leader_id != self.id else None,
        }


def _rows(cursor: sqlite3.Cursor) -> list[OutboxRow]:
    return [OutboxRow(*row) for row in cursor.fetchall()]


def _pending_targets(conn: sqlite3.Connection) -> list[str]:
    """The targets with pending rows, found by skipping through the index: one lookup each."""
    return [
        name
        for (name,) in conn.execute(
            "WITH RECURSIVE t(name) AS ("
            "SELECT min(target) FROM outbox WHERE state = 'pending' "
            "UNION ALL SELECT (SELECT min(target) FROM outbox "
            "WHERE state = 'pending' AND target > t.name) FROM t WHERE t.name IS NOT NULL) "
            "SELECT name FROM t WHERE name IS NOT NULL"
        )
    ]


# The heads of one target in time order: pending rows with no older pending row of the same
# incident and target, walked on (state, target, next_attempt_at, id).
_ROW_O = ", ".join(f"o.{c}" for c in _ROW.split(", "))
_SEVERITY = "(SELECT i.severity FROM incidents i WHERE i.id = o.incident_id)"
# A head another replica holds (a live claim) is not free; its own replica's is.
_FREE = "AND (o.claim_until IS NULL OR o.claim_until <= ? OR o.claimed_by = ?) "
_HEADS = (
    f"SELECT {_ROW}, {_SEVERITY} FROM outbox o "
    "INDEXED BY idx_outbox_state_target_next_attempt_at_id "
    "WHERE o.state = 'pending' AND o.target = ? AND o.next_attempt_at {op} ? {free}"
    "AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.state = 'pending' "
    "AND p.incident_id = o.incident_id AND p.target = o.target AND p.id < o.id) "
    "ORDER BY o.next_attempt_at, o.id LIMIT ?"
)
_HEADS_DUE = _HEADS.format(op="<=", free=_FREE)
_HEADS_LATER = _HEADS.format(op=">", free="")
# The heads of one target for the open incidents of one severity: a walk of the incidents'
# (status, severity) index, and per incident its oldest pending row of the target (the
# outbox's (state, incident_id, target, id) index). Under a storm the oldest heads are often
# of minor incidents: these are what a sev1 must not wait behind.
_URGENT_HEADS = (
    f"SELECT {_ROW_O}, i.severity FROM incidents i JOIN outbox o ON o.id = "
    "(SELECT min(p.id) FROM outbox p WHERE p.state = 'pending' AND p.incident_id = i.id "
    "AND p.target = ?) "
    "WHERE i.status IN ('triggered', 'acknowledged', 'mitigated') AND i.severity = ? "
    f"AND o.next_attempt_at <= ? {_FREE}ORDER BY o.next_attempt_at, o.id LIMIT ?"
)
# Severities whose heads are looked for apart from the time order.
URGENT = ("sev1", "sev2")


def priority(row: OutboxRow) -> tuple[int, int, int, int]:
    """The order rows are sent in: severity first, then a stakeholder page before other news
    of the same severity, then age."""
    return (severity_rank(row.severity), row.tier != "stakeholders", row.next_attempt_at, row.id)


def due(
    conn: sqlite3.Connection, *, now: int, limit: int, per_target: int, replica: str = ""
) -> list[OutboxRow]:
    """The oldest pending row of each (incident, target) whose time has come, at most
    ``per_target`` for each target so that one slow or paced target cannot fill the window;
    not the heads another replica than ``replica`` holds with a live claim, nor the rows of a
    target paused (``outbox_pauses``) at ``now``.

    Only the oldest is ever sent, so a target hears of an incident's events in order.

    The cost does not grow with the backlog: under an alert storm thousands of rows wait, and
    this runs after every send. Each target is one index walk in time order (index on state,
    target, next_attempt_at, id) that stops after ``per_target`` heads; the targets with pending
    rows are found by skipping through the same index, one lookup per target. The heads of open
    sev1 and sev2 incidents are added however old (``_URGENT_HEADS``, only for a target with
    more due heads than ``per_target``: otherwise they are all there), and the rows come in the
    order they should be sent (``priority``: severity, stakeholders, age).
    """
    rows: dict[int, OutboxRow] = {}
    paused = paused_targets(conn, now=now)
    for target in _pending_targets(conn):
        if target in paused:
            continue
        heads = _rows(conn.execute(_HEADS_DUE, (target, now, now, replica, per_target)))
        for row in heads:
            rows[row.id] = row
        if len(heads) < per_target:
            continue  # every due head of this target is there, the urgent ones with them
        for severity in URGENT:
            urgent = (target, severity, now, now, replica, per_target)
            for row in _rows(conn.execute(_URGENT_HEADS, urgent)):
                rows[row.id] = row
    return sorted(rows.values(), key=priority)[:limit]


def next_due_at(conn: sqlite3.Connection, *, after: int, replica: str = "") -> int | None:
    """When the next row waiting for its time (a retry's backoff) becomes due: the earliest
    ``next_attempt_at`` later than ``after`` among the heads, or the end of a claim another
    replica than ``replica`` holds (that replica may have died: its heads are free then), or
    None.

    Heads already due are left out: the worker has started them, or holds them for a reason it
    knows the end of (a send in flight, a paced channel, a paused target, an outcome not yet
    recorded). A row due behind a head that waits does not count either: it is not sent before
    that head. Like ``due``, one short index walk per target.
    """
    times = [
        row.next_attempt_at
        for target in _pending_targets(conn)
        for row in _rows(conn.execute(_HEADS_LATER, (target, after, 1)))
    ]
    # The claims' index holds only the live claims (a claim ends with its row's outcome).
    claim = conn.execute(
        "SELECT claim_until FROM outbox INDEXED BY idx_outbox_claim_until "
        "WHERE claim_until > ? AND state = 'pending' AND claimed_by <> ? "
        "ORDER BY claim_until LIMIT 1",
        (after, replica),
    ).fetchone()
    if claim is not None:
        times.append(int(claim[0]))
    return min(times, default=None)


def paused_targets(conn: sqlite3.Connection, *, now: int) -> dict[str, int]:
    """The targets paused at ``now`` (a Retry-After any replica was given): name -> until."""
    return {
        name: int(until)
        for name, until in conn.execute(
            "SELECT target, paused_until FROM outbox_pauses WHERE paused_until > ?", (now,)
        )
    }


@dataclass(frozen=True)
class Pace:
    """A paced (target, channel)'s next send slot asked for ``leaders`` (one message, or the
    leaders of one digest): taken only when one of them is claimed, then free again
    ``interval_ns`` later."""

    target: str
    channel: str
    interval_ns: int
    leaders: tuple[int, ...]


class Claimed(dict[int, list[OutboxRow]]):
    """The groups claimed, by leader id; ``paced``: (target, channel) -> when its next slot
    comes (``pace_now``'s clock), for the paces whose slot another send (maybe another
    replica's) had taken: their leaders were left unclaimed."""

    def __init__(self) -> None:
        super().__init__()
        self.paced: dict[tuple[str, str], int] = {}


def claim_groups(
    conn: sqlite3.Connection,
    leader_ids: Sequence[int],
    max_group: int,
    *,
    replica: str = "",
    now: int | None = None,
    lease_ns: int = LEASE_NS,
    paces: Sequence[Pace] = (),
    pace_now: int | None = None,
) -> Claimed:
    """Claim leaders for ``replica`` until ``now + lease_ns`` and fix their groups
    (``claim_group``), in one write. A leader is left out when it is no longer pending, no
    longer the oldest pending row of its (incident, target), held by another replica's live
    claim, or when its ``Pace``'s slot is not free at ``pace_now`` (the pacing clock: the wall
    clock, shared by the replicas; ``now`` is the worker's clock, which due times use)."""
    now = time.time_ns() if now is None else now
    pace_now = now if pace_now is None else pace_now
    out = Claimed()
    refused: set[int] = set()
    granted: list[Pace] = []
    if paces:
        # A slot in the past is no slot: forgetting those keeps the table to the channels
        # paced in the last interval (the dedicated channels come and go with incidents).
        conn.execute("DELETE FROM outbox_pace WHERE next_at <= ?", (pace_now,))
    for pace in paces:
        slot = conn.execute(
            "SELECT next_at FROM outbox_pace WHERE target = ? AND channel = ?",
            (pace.target, pace.channel),
        ).fetchone()
        if slot is not None and int(slot[0]) > pace_now:
            out.paced[(pace.target, pace.channel)] = int(slot[0])
            refused.update(pace.leaders)
        else:
            granted.append(pace)
    wanted = [i for i in leader_ids if i not in refused]
    free = _free_heads(conn, wanted, replica=replica, now=now)
    conn.executemany(
        "UPDATE outbox SET claimed_by = ?, claim_until = ? WHERE id = ?",
        [(replica, now + lease_ns, i) for i in wanted if i in free],
    )
    for leader_id in wanted:
        if leader_id in free and (group := claim_group(conn, leader_id, max_group)):
            out[leader_id] = group
    for pace in granted:
        if any(leader in out for leader in pace.leaders):
            conn.execute(
                "INSERT INTO outbox_pace (target, channel, next_at) VALUES (?, ?, ?) "
                "ON CONFLICT(target, channel) DO UPDATE SET next_at = excluded.next_at",
                (pace.target, pace.channel, pace_now + pace.interval_ns),
            )
    return out


def _free_heads(
    conn: sqlite3.Connection, leader_ids: Sequence[int], *, replica: str, now: int
) -> set[int]:
    """Of ``leader_ids``, the rows ``replica`` may claim at ``now``, locked until the commit:
    pending, the oldest pending row of their (incident, target) (``due``'s answer was read
    before this write: another replica may have sent that head since, or a retry made an
    older row pending again), and not held by another replica's live claim.

    On PostgreSQL ``FOR UPDATE SKIP LOCKED`` locks them and passes over the rows another
    transaction is claiming. Today that never skips anything: every write transaction first
    takes the writer's advisory lock (``postgres.schema.WRITE_LOCK``), so the replicas' writes
    run one after the other and each sees the claims committed before it. The clause keeps
    the claim right if that lock is ever narrowed. SQLite reads it as a comment (``dialect``):
    its one writer holds the whole database."""
    free: set[int] = set()
    for start in range(0, len(leader_ids), _CLAIM_CHUNK):
        chunk = leader_ids[start : start + _CLAIM_CHUNK]
        marks = ",".join("?" * len(chunk))
        free.update(
            int(row_id)
            for (row_id,) in conn.execute(
                f"SELECT o.id FROM outbox o WHERE o.id IN ({marks}) AND o.state = 'pending' "
                f"{_FREE}"
                "AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.state = 'pending' "
                "AND p.incident_id = o.incident_id AND p.target = o.target AND p.id < o.id) "
                "/* FOR UPDATE SKIP LOCKED */",
                (*chunk, now, replica),
            )
        )
    return free


def renew(conn: sqlite3.Connection, replica: str, leader_ids: Sequence[int], *, until: int) -> None:
    """Extend ``replica``'s claims on ``leader_ids`` to ``until`` (their sends go on); a claim
    another replica took over after it expired stays that replica's."""
    conn.executemany(
        "UPDATE outbox SET claim_until = ? WHERE id = ? AND claimed_by = ? AND state = 'pending'",
        [(until, i, replica) for i in leader_ids],
    )


def release(conn: sqlite3.Connection, replica: str, leader_ids: Sequence[int]) -> None:
    """End ``replica``'s claims on ``leader_ids`` (a stopping worker's unfinished sends): the
    other replicas take those heads at once instead of after the lease."""
    conn.executemany(
        "UPDATE outbox SET claimed_by = NULL, claim_until = NULL WHERE id = ? AND claimed_by = ?",
        [(i, replica) for i in leader_ids],
    )


def claim_group(conn: sqlite3.Connection, leader_id: int, max_group: int) -> list[OutboxRow]:
    """The rows one message carries, oldest first, fixed at the first attempt.

    Waiting rows of the same incident, target and tier are coalesced behind the oldest one (one
    message instead of a flood under an alert storm). The group is recorded before the send, so
    a retry after a crash sends the same group under the same idempotency key.
    """
    row = conn.execute(
        "SELECT incident_id, target FROM outbox WHERE id = ? AND state = 'pending'", (leader_id,)
    ).fetchone()
    if row is None:
        return []
    # The leader is the oldest pending row of its (incident, target); a group never has more
    # than max_group rows and later rows have larger ids, so this window holds the whole group.
    window = _rows(
        conn.execute(
            f"SELECT {_ROW} FROM outbox WHERE state = 'pending' AND incident_id = ? "
            "AND target = ? AND id >= ? ORDER BY id LIMIT ?",
            (row[0], row[1], leader_id, max_group),
        )
    )
    leader = window[0]
    if leader.leader_id is not None:  # grouped at an earlier attempt
        return [r for r in window if r.leader_id == leader.id]
    members: list[OutboxRow] = []
    for r in window:
        if r.tier != leader.tier or r.leader_id is not None:
            break  # keep order: never skip over a row to take a later one
        members.append(replace(r, leader_id=leader.id))
    conn.executemany(
        "UPDATE outbox SET leader_id = ? WHERE id = ?", [(leader.id, m.id) for m in members]
    )
    return members


# An outcome ends the claim of the row's sender.
_UNCLAIMED = "claimed_by = NULL, claim_until = NULL"


def mark_delivered(
    conn: sqlite3.Connection,
    leader_id: int,
    *,
    now: int,
    state: dict[str, Any] | None,
    provider_ids: dict[str, str] | None,
) -> int:
    """Mark the message's rows delivered; returns how many were still pending."""
    cur = conn.execute(
        "UPDATE outbox SET state = 'delivered', delivered_at = ?, updated_at = ?, "
        f"attempts = attempts + 1, last_error = NULL, provider_ids = ?, {_UNCLAIMED} "
        "WHERE leader_id = ? AND state = 'pending'",
        (now, now, jsontext.dumps(provider_ids or {}), leader_id),
    )
    if state is not None:
        _save_state(conn, leader_id, state, now)
    return cur.rowcount


def _write_timeline(
    conn: sqlite3.Connection, leader_id: int, events: Sequence[Event], now: int
) -> None:
    row = conn.execute(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = "
        "(SELECT incident_id FROM outbox WHERE id = ?)",
        (leader_id,),
    ).fetchone()
    if row is None:
        return
    incident = incident_from_row(row)
    write_change(conn, incident, Outcome(incident, tuple(events)), now)


def mark_failed(
    conn: sqlite3.Connection,
    leader_id: int,
    *,
    now: int,
    error: str,
    retry_at: int | None,
    state: dict[str, Any] | None,
    counts: bool = True,
) -> None:
    """A failed attempt: try again at ``retry_at``, or dead-letter when it is None.
    ``counts`` False: a rate limit's wait, which is not an attempt (``attempts`` unchanged), so
    waiting never brings a row nearer to the dead letter."""
    if not counts and retry_at is not None:
        conn.execute(
            f"UPDATE outbox SET updated_at = ?, last_error = ?, next_attempt_at = ?, {_UNCLAIMED} "
            "WHERE leader_id = ? AND state = 'pending'",
            (now, error, retry_at, leader_id),
        )
    elif retry_at is None:
        conn.execute(
            "UPDATE outbox SET state = 'dead', updated_at = ?, attempts = attempts + 1, "
            f"last_error = ?, {_UNCLAIMED} WHERE leader_id = ? AND state = 'pending'",
            (now, error, leader_id),
        )
    else:
        conn.execute(
            "UPDATE outbox SET updated_at = ?, attempts = attempts + 1, last_error = ?, "
            f"next_attempt_at = ?, {_UNCLAIMED} WHERE leader_id = ? AND state = 'pending'",
            (now, error, retry_at, leader_id),
        )
    if state is not None:
        _save_state(conn, leader_id, state, now)


def _save_state(conn: sqlite3.Connection, leader_id: int, state: dict[str, Any], now: int) -> None:
    conn.execute(
        "INSERT INTO target_state (incident_id, target, state, updated_at) "
        "SELECT incident_id, target, ?, ? FROM outbox WHERE id = ? "
        "ON CONFLICT(incident_id, target) DO UPDATE SET state = excluded.state, "
        "updated_at = excluded.updated_at",
        (jsontext.dumps(state), now, leader_id),
    )


def _save_pause(
    conn: sqlite3.Connection, leader_id: int, until: int, reason: str, now: int
) -> None:
    """The leader's target paused until ``until`` (``save_pause``)."""
    row = conn.execute("SELECT target FROM outbox WHERE id = ?", (leader_id,)).fetchone()
    if row is not None:
        save_pause(conn, str(row[0]), until, reason, now)


def save_pause(conn: sqlite3.Connection, target: str, until: int, reason: str, now: int) -> None:
    """``target`` paused until ``until`` (a later pause already stored stands); the pauses over
    at ``now`` are forgotten (one row a target at most). A channel message's outcome
    (``store/messages``) pauses its target here too: one pause holds both."""
    conn.execute("DELETE FROM outbox_pauses WHERE paused_until <= ?", (now,))
    conn.execute(
        "INSERT INTO outbox_pauses (target, paused_until, reason) VALUES (?, ?, ?) "
        "ON CONFLICT(target) DO UPDATE SET "
        "reason = CASE WHEN excluded.paused_until > outbox_pauses.paused_until "
        "THEN excluded.reason ELSE outbox_pauses.reason END, "
        "paused_until = max(outbox_pauses.paused_until, excluded.paused_until)",
        (target, until, reason),
    )


def retry(conn: sqlite3.Connection, row_id: int, *, now: int) -> bool:
    """Send a dead-lettered notification (and the rows its message carried) again."""
    row = conn.execute("SELECT state, leader_id FROM outbox WHERE id = ?", (row_id,)).fetchone()
    if row is None or row[0] != "dead":
        return False
    leader = row[1] if row[1] is not None else row_id
    conn.execute(
        "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?, "
        f"{_UNCLAIMED} WHERE (leader_id = ? OR id = ?) AND state = 'dead'",
        (now, now, leader, row_id),
    )
    return True


def list_rows(
    conn: sqlite3.Connection, *, state: str | None, before: int | None, limit: int
) -> list[OutboxRow]:
    found = newest_first(conn, "outbox", _ROW, state=state, before=before, limit=limit)
    return [OutboxRow(*row) for row in found]


def incident_rows(conn: sqlite3.Connection, incident_id: int, limit: int = 200) -> list[OutboxRow]:
    """The notifications of one incident, newest first (the incident page): three short walks
    of the (state, incident_id, ...) index, one per state, never a scan of the outbox."""
    marks = ",".join("?" * len(STATES))
    return _rows(
        conn.execute(
            f"SELECT {_ROW} FROM outbox WHERE state IN ({marks}) AND incident_id = ? "
            "ORDER BY id DESC LIMIT ?",
            (*STATES, incident_id, limit),
        )
    )


def get_row(conn: sqlite3.Connection, row_id: int) -> OutboxRow | None:
    rows = _rows(conn.execute(f"SELECT {_ROW} FROM outbox WHERE id = ?", (row_id,)))
    return rows[0] if rows else None


@dataclass(frozen=True)
class Stats:
    pending: int
    dead: int
    oldest_pending_at: int | None


def stats(conn: sqlite3.Connection) -> Stats:
    pending, oldest = conn.execute(
        "SELECT count(*), min(created_at) FROM outbox WHERE state = 'pending'"
    ).fetchone()
    dead = conn.execute("SELECT count(*) FROM outbox WHERE state = 'dead'").fetchone()[0]
    return Stats(int(pending), int(dead), oldest)


@dataclass(frozen=True)
class Context:
    incident: dict[str, Any]
    events: list[dict[str, Any]]
    state: dict[str, Any]


def context(conn: sqlite3.Connection, group: list[OutboxRow], *, max_alerts: int) -> Context | None:
    """What a message about ``group`` needs: the incident now (its alert counts and at most
    ``max_alerts`` of its newest alerts), the events, the target's state."""
    return contexts(conn, [group], max_alerts=max_alerts).get(group[0].id)


def contexts(
    conn: sqlite3.Connection, groups: Sequence[list[OutboxRow]], *, max_alerts: int
) -> dict[int, Context]:
    """``context`` for several groups (by leader id) in one read; each incident loaded once,
    only as much of it as a message shows (``queries.get_incident_for_message``)."""
    incidents: dict[int, dict[str, Any] | None] = {}
    out: dict[int, Context] = {}
    for group in groups:
        first = group[0]
        if first.incident_id not in incidents:
            incidents[first.incident_id] = get_incident_for_message(
                conn, first.incident_id, max_alerts=max_alerts
            )
        incident = incidents[first.incident_id]
        if incident is None:
            continue
        ids = [r.event_id for r in group if r.event_id is not None]
        events = timeline_events(conn, first.incident_id, ids)
        row = conn.execute(
            "SELECT state FROM target_state WHERE incident_id = ? AND target = ?",
            (first.incident_id, first.target),
        ).fetchone()
        out[first.id] = Context(dict(incident), events, json.loads(row[0]) if row else {})
    return out


@dataclass(frozen=True)
class Attempt:
    """How one message went: delivered (``error is None``), to retry at ``retry_at``, or dead."""

    leader_id: int
    now: int
    error: str | None = None
    retry_at: int | None = None
    state: dict[str, Any] | None = None
    provider_ids: dict[str, str] | None = None
    # timeline entries the send asked for (a built-in sender's: the silence it made), written
    # with the delivered state, once: only by the attempt that marks the row delivered
    timeline: tuple[Event, ...] = ()
    # False for a rate limit's wait: the row is rescheduled, its attempts are not counted
    counts: bool = True
    # The row's target asked to wait (a Retry-After) until then: every replica holds its sends
    pause_until: int | None = None
    pause_reason: str = ""
    # True: ``leader_id`` is a channel message's row (``store/messages``), not an outbox row
    message: bool = False


def record(conn: sqlite3.Connection, attempts: Sequence[Attempt]) -> list[None]:
    """Record several sends' attempts at once (a ``Batched`` write)."""
    for o in attempts:
        if o.message:
            target = messages.target_of(conn, o.leader_id)
            if o.pause_until is not None and target is not None:
                save_pause(conn, target, o.pause_until, o.pause_reason, o.now)
            messages.record_attempt(
                conn,
                o.leader_id,
                now=o.now,
                error=o.error,
                retry_at=o.retry_at,
                counts=o.counts,
                provider_ids=o.provider_ids,
            )
            continue
        if o.pause_until is not None:
            _save_pause(conn, o.leader_id, o.pause_until, o.pause_reason, o.now)
        if o.error is None:
            done = mark_delivered(
                conn, o.leader_id, now=o.now, state=o.state, provider_ids=o.provider_ids
            )
            if done and o.timeline:
                _write_timeline(conn, o.leader_id, o.timeline, o.now)
        else:
            mark_failed(
                conn,
                o.leader_id,
                now=o.now,
                error=o.error,
                retry_at=o.retry_at,
                state=o.state,
                counts=o.counts,
            )
    return [None] * len(attempts)
