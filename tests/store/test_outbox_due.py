"""``outbox.due``: which rows the worker may send now, and that finding them does not grow with
the backlog (it runs after every send, and an alert storm leaves thousands of rows waiting)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from bridge.store import outbox as q
from bridge.store.migrations import migrate
from tests.store.conftest import Databases

NOW = 1_000_000


@pytest.fixture
def conn(databases: Databases) -> Any:
    """A database on each backend whose outbox rows need no incidents, for brevity."""
    c = databases.new()
    if databases.backend == "sqlite":
        c.execute("PRAGMA foreign_keys = OFF")
    else:  # the foreign keys' triggers off for this session (the outbox has no others)
        c.raw.execute("SET session_replication_role = replica")
    return c


@pytest.fixture
def sqlite_conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """SQLite's, for the tests that count its VM steps."""
    c = sqlite3.connect(tmp_path / "due.db", isolation_level=None)
    migrate(sqlite_utils.Database(c))
    c.execute("PRAGMA foreign_keys = OFF")
    yield c
    c.close()


def add(conn: Any, incident: int, target: str, at: int, state: str = "pending") -> int:
    n = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    cur = conn.execute(
        "INSERT INTO outbox (incident_id, target, tier, event, idempotency_key, state, attempts, "
        "next_attempt_at, created_at, updated_at) VALUES (?, ?, 'general', 'opened', ?, ?, 0, ?, ?, ?) "
        "RETURNING id",
        (incident, target, f"k{n}", state, at, at, at),
    )
    return int(cur.fetchone()[0])


def ids(rows: list[q.OutboxRow]) -> list[int]:
    return [r.id for r in rows]


def test_only_the_oldest_pending_row_of_an_incident_and_target_is_due(
    conn: Any,
) -> None:
    first = add(conn, 1, "slack", 10)
    add(conn, 1, "slack", 11)  # waits behind the first
    other = add(conn, 1, "email", 12)
    assert ids(q.due(conn, now=NOW, limit=10, per_target=10)) == [first, other]


def test_a_head_waiting_for_its_retry_holds_back_only_its_own_incident(
    conn: Any,
) -> None:
    add(conn, 1, "slack", NOW + 60)  # in backoff
    add(conn, 1, "slack", 5)  # due by its time, but must not overtake the row above
    free = add(conn, 2, "slack", 6)
    assert ids(q.due(conn, now=NOW, limit=10, per_target=10)) == [free]


def test_delivered_and_dead_rows_are_not_heads(conn: Any) -> None:
    add(conn, 1, "slack", 1, state="delivered")
    add(conn, 1, "slack", 2, state="dead")
    head = add(conn, 1, "slack", 3)
    assert ids(q.due(conn, now=NOW, limit=10, per_target=10)) == [head]


def test_each_target_gets_its_share_and_the_result_is_in_time_order(
    conn: Any,
) -> None:
    for i in range(50):
        add(conn, 100 + i, "busy", i)  # older than everything below
    late = [add(conn, 200 + i, "quiet", 1000 + i) for i in range(3)]
    rows = q.due(conn, now=NOW, limit=100, per_target=5)
    assert [r.target for r in rows] == ["busy"] * 5 + ["quiet"] * 3
    assert ids(rows)[5:] == late
    assert [r.next_attempt_at for r in rows] == sorted(r.next_attempt_at for r in rows)
    assert len(q.due(conn, now=NOW, limit=4, per_target=5)) == 4


def test_finding_due_rows_reads_a_bounded_part_of_a_large_backlog(
    sqlite_conn: sqlite3.Connection,
) -> None:
    conn = sqlite_conn
    conn.execute("BEGIN")
    for i in range(20_000):
        add(conn, i, ("slack", "email")[i % 2], i)
    conn.execute("COMMIT")
    steps: list[int] = []
    conn.set_progress_handler(lambda: steps.append(1) and 0, 1000)  # every 1000 VM steps
    rows = q.due(conn, now=NOW, limit=1000, per_target=100)
    conn.set_progress_handler(None, 0)
    assert len(rows) == 200
    # Scanning the 20,000 pending rows would take well over a million VM steps.
    assert len(steps) * 1000 < 200_000


def test_the_next_due_time_is_the_earliest_head_still_waiting_for_its_time(
    conn: Any,
) -> None:
    add(conn, 1, "slack", NOW + 60)  # a head in backoff
    add(conn, 1, "slack", 5)  # due by its time, but never sent before the head above
    add(conn, 2, "email", NOW + 30)  # another head in backoff
    add(conn, 3, "email", 7)  # due already: the worker has it (or knows why it waits)
    add(conn, 4, "email", NOW + 10, state="dead")
    assert q.next_due_at(conn, after=NOW) == NOW + 30
    assert q.next_due_at(conn, after=NOW + 30) == NOW + 60
    assert q.next_due_at(conn, after=NOW + 60) is None


def test_finding_the_next_due_time_reads_a_bounded_part_of_a_large_backlog(
    sqlite_conn: sqlite3.Connection,
) -> None:
    conn = sqlite_conn
    conn.execute("BEGIN")
    for i in range(20_000):
        add(conn, i, ("slack", "email")[i % 2], i)  # all due: a storm waiting for its turn
    later = add(conn, 99_999, "slack", NOW + 5)
    conn.execute("COMMIT")
    steps: list[int] = []
    conn.set_progress_handler(lambda: steps.append(1) and 0, 1000)
    at = q.next_due_at(conn, after=NOW)
    conn.set_progress_handler(None, 0)
    assert at == NOW + 5 and later
    assert len(steps) * 1000 < 20_000
