"""The outbox across replicas: two stores on one database (two PgStores on PostgreSQL are two
replicas' connections, each with its writer and read pool; on SQLite one store runs the same
SQL under two replica ids) claim heads with a lease, keep a target's pause and a channel's pace in the
database, and release what a stopping worker did not finish."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.config import Settings
from bridge.store.interface import Attempt, OutboxRow, Pace
from bridge.store.outbox import LEASE_NS
from bridge.store.postgres.dialect import translate
from tests.conftest import SECOND, T0, execute, fixture_body, open_store, rows
from tests.store.test_store import ingest

NOW = T0 + 3600 * SECOND


@pytest.fixture
def two(backend: str, db_settings: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    """Replica "a"'s store and replica "b"'s on one database: two PgStores on PostgreSQL; on
    SQLite, which one process holds (its lock file), the one store under both names."""
    a = open_store(Settings(**db_settings))
    b = open_store(Settings(**db_settings)) if backend == "postgresql" else a
    yield a, b
    if b is not a:
        b.close()
    a.close()


async def incidents(store: Any, n: int) -> list[int]:
    """``n`` incidents, their outbox emptied: the tests add the rows they need."""
    ids = []
    for i in range(n):
        body = {**fixture_body("ha-pair-single-delivery.json"), "groupKey": f"claims-{i}"}
        result = await ingest(store, body)
        ids.append(result.incidents[0].id)
    execute(store, "DELETE FROM outbox")
    return ids


def add(
    store: Any, incident: int, target: str = "hook", at: int = T0, tier: str = "general"
) -> int:
    """One pending row (its id) due at ``at``."""
    key = f"k-{incident}-{target}-{len(rows(store, 'SELECT id FROM outbox'))}"
    execute(
        store,
        "INSERT INTO outbox (incident_id, target, tier, event, idempotency_key, state, attempts, "
        "next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, 'opened', ?, 'pending', 0, "
        "?, ?, ?)",
        (incident, target, tier, key, at, at, at),
    )
    return int(rows(store, "SELECT id FROM outbox WHERE idempotency_key = ?", key)[0][0])


def ids(found: list[OutboxRow]) -> list[int]:
    return sorted(r.id for r in found)


async def due(store: Any, replica: str, now: int = NOW) -> list[int]:
    return ids(await store.outbox.due(now=now, limit=100, per_target=100, replica=replica))


async def claim(store: Any, replica: str, leaders: list[int], now: int = NOW, **kw: Any) -> Any:
    return await store.outbox.claim_groups(leaders, 20, replica=replica, now=now, **kw)


async def test_two_replicas_claiming_at_once_claim_each_head_once(two: tuple[Any, Any]) -> None:
    a, b = two
    heads = [add(a, i) for i in await incidents(a, 12)]
    assert await due(a, "a") == await due(b, "b") == heads  # both read every head as due
    won_a, won_b = await asyncio.gather(claim(a, "a", heads), claim(b, "b", heads))
    assert set(won_a).isdisjoint(won_b)
    assert sorted([*won_a, *won_b]) == heads
    holders = dict(rows(a, "SELECT id, claimed_by FROM outbox"))
    assert {holders[i] for i in won_a} <= {"a"} and {holders[i] for i in won_b} <= {"b"}
    until = {int(u) for (u,) in rows(a, "SELECT claim_until FROM outbox")}
    assert until == {NOW + LEASE_NS}
    # each sees its own claims as due (it knows what it is sending), not the other's
    assert await due(a, "a") == sorted(won_a)
    assert await due(b, "b") == sorted(won_b)
    # and claiming again takes nothing from the other
    assert set(await claim(b, "b", heads)) == set(won_b)


async def test_a_claimed_head_holds_back_the_later_rows_of_its_incident_and_target(
    two: tuple[Any, Any],
) -> None:
    a, b = two
    [inc, other] = await incidents(a, 2)
    head = add(a, inc)
    later = add(a, inc)  # "resolved" after "opened": never before it
    free = add(a, other)
    # the later row is coalesced behind the head in one group only when the group is fixed
    # before it arrives: here the head alone is claimed first
    assert list(await claim(a, "a", [head], now=NOW)) == [head]
    execute(a, "UPDATE outbox SET leader_id = NULL WHERE id = ?", (later,))
    assert await due(b, "b") == [free]
    # asked directly (its due() was read before), the later row is refused: not the head
    assert list(await claim(b, "b", [later, free])) == [free]
    assert rows(b, "SELECT claimed_by FROM outbox WHERE id = ?", later) == [(None,)]


async def test_an_expired_lease_is_taken_by_the_other_replica_with_the_same_group(
    two: tuple[Any, Any],
) -> None:
    a, b = two
    [inc] = await incidents(a, 1)
    head, second = add(a, inc), add(a, inc)
    group_a = (await claim(a, "a", [head]))[head]
    assert [r.id for r in group_a] == [head, second]
    third = add(a, inc)  # arrives while "a" sends: not in the message "a" is sending
    # "a" dies mid-send: its head is not due for "b" while the lease lives
    assert await due(b, "b", NOW + LEASE_NS - 1) == []
    assert list(await claim(b, "b", [head], now=NOW + LEASE_NS - 1)) == []
    assert await b.outbox.next_due_at(after=NOW, replica="b") == NOW + LEASE_NS
    assert await a.outbox.next_due_at(after=NOW, replica="a") is None  # its own: no wake
    later = NOW + LEASE_NS
    assert await due(b, "b", later) == [head]
    group_b = (await claim(b, "b", [head], now=later))[head]
    assert group_b == group_a  # the same rows, the leader's idempotency key with them
    assert group_b[0].idempotency_key == group_a[0].idempotency_key
    assert third not in [r.id for r in group_b]
    assert rows(a, "SELECT claimed_by FROM outbox WHERE id = ?", head) == [("b",)]
    # "a" coming back cannot renew what "b" took over
    await a.outbox.renew("a", [head], until=later + 2 * LEASE_NS)
    assert rows(a, "SELECT claimed_by, claim_until FROM outbox WHERE id = ?", head) == [
        ("b", later + LEASE_NS)
    ]
    # the outcome ends the claim
    await b.outbox.record(Attempt(head, later))
    found = rows(a, "SELECT id, state, claimed_by, claim_until FROM outbox ORDER BY id")
    assert found == [
        (head, "delivered", None, None),
        (second, "delivered", None, None),
        (third, "pending", None, None),
    ]


async def test_a_renewed_lease_keeps_the_head(two: tuple[Any, Any]) -> None:
    a, b = two
    [inc] = await incidents(a, 1)
    head = add(a, inc)
    await claim(a, "a", [head])
    await a.outbox.renew("a", [head], until=NOW + 3 * LEASE_NS)
    assert await due(b, "b", NOW + 2 * LEASE_NS) == []
    assert await due(b, "b", NOW + 3 * LEASE_NS) == [head]


async def test_a_release_frees_the_heads_at_once(two: tuple[Any, Any]) -> None:
    a, b = two
    heads = [add(a, i) for i in await incidents(a, 3)]
    await claim(a, "a", heads)
    assert await due(b, "b") == []
    await b.outbox.release("b", heads)  # not "b"'s: nothing changes
    assert await due(b, "b") == []
    await a.outbox.release("a", heads[:2])
    assert await due(b, "b") == heads[:2]
    assert sorted(await claim(b, "b", heads)) == heads[:2]


async def test_a_retry_and_a_failure_end_the_claim(two: tuple[Any, Any]) -> None:
    a, b = two
    [one, two_] = await incidents(a, 2)
    retried, dead = add(a, one), add(a, two_)
    await claim(a, "a", [retried, dead])
    await a.outbox.record(Attempt(retried, NOW, error="http_503", retry_at=NOW + SECOND))
    await a.outbox.record(Attempt(dead, NOW, error="http_400", retry_at=None))
    assert rows(a, "SELECT count(*) FROM outbox WHERE claimed_by IS NOT NULL") == [(0,)]
    assert await due(b, "b", NOW + SECOND) == [retried]
    assert await b.outbox.retry(dead, now=NOW + SECOND)
    assert await due(b, "b", NOW + SECOND) == [retried, dead]


async def test_a_pause_recorded_by_one_replica_holds_the_other(two: tuple[Any, Any]) -> None:
    a, b = two
    [one, two_] = await incidents(a, 2)
    limited = add(a, one, "hook")
    waiting = add(a, two_, "hook")
    elsewhere = add(a, two_, "mail")
    await claim(a, "a", [limited])
    until = NOW + 30 * SECOND
    await a.outbox.record(
        Attempt(
            limited,
            NOW,
            error="rate_limited",
            retry_at=until,
            counts=False,
            pause_until=until,
            pause_reason="rate_limited",
        )
    )
    assert await b.outbox.paused_targets(now=NOW) == {"hook": until}
    assert await due(b, "b") == [elsewhere]  # no row of the paused target, other targets go on
    assert await due(b, "b", until) == [limited, waiting, elsewhere]
    assert await b.outbox.paused_targets(now=until) == {}
    # a shorter pause recorded later does not cut the longer one short
    await claim(b, "b", [waiting])
    await b.outbox.record(Attempt(waiting, NOW, pause_until=NOW + SECOND, pause_reason="short"))
    assert rows(a, "SELECT target, paused_until, reason FROM outbox_pauses") == [
        ("hook", until, "rate_limited")
    ]


async def test_one_channel_is_paced_across_the_replicas(two: tuple[Any, Any]) -> None:
    a, b = two
    first, second, third = [add(a, i) for i in await incidents(a, 3)]
    interval = 2 * SECOND
    wall = T0

    def pace(leader: int) -> list[Pace]:
        return [Pace("hook", "general", interval, (leader,))]

    got = await claim(a, "a", [first], paces=pace(first), pace_now=wall)
    assert list(got) == [first] and got.paced == {}
    # "b" asks for the same channel a second later: the slot is "a"'s, nothing is claimed
    got = await claim(b, "b", [second], paces=pace(second), pace_now=wall + SECOND)
    assert list(got) == [] and got.paced == {("hook", "general"): wall + interval}
    assert rows(a, "SELECT claimed_by FROM outbox WHERE id = ?", second) == [(None,)]
    # another channel of the same target is not held
    other = [Pace("hook", "incident-1", interval, (third,))]
    assert list(await claim(b, "b", [third], paces=other, pace_now=wall)) == [third]
    # the slot comes back after the interval, and the stale rows are forgotten
    got = await claim(b, "b", [second], paces=pace(second), pace_now=wall + interval)
    assert list(got) == [second]
    assert rows(a, "SELECT target, channel, next_at FROM outbox_pace") == [
        ("hook", "general", wall + 2 * interval)
    ]


async def test_a_slot_is_not_taken_when_nothing_was_claimed(two: tuple[Any, Any]) -> None:
    a, b = two
    [head, free] = [add(a, i) for i in await incidents(a, 2)]
    await claim(a, "a", [head])  # no pacing asked
    pace = [Pace("hook", "general", SECOND, (head,))]
    assert list(await claim(b, "b", [head], paces=pace, pace_now=T0)) == []
    pace = [Pace("hook", "general", SECOND, (free,))]
    assert list(await claim(b, "b", [free], paces=pace, pace_now=T0)) == [free]


def test_the_claim_locks_its_rows_with_skip_locked_on_postgresql_only() -> None:
    sql = "SELECT o.id FROM outbox o WHERE o.id = ? /* FOR UPDATE SKIP LOCKED */"
    assert translate(sql)[0] == "SELECT o.id FROM outbox o WHERE o.id = %s FOR UPDATE SKIP LOCKED"


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_head_another_transaction_locked_is_skipped_not_waited_for(
    two: tuple[Any, Any],
) -> None:
    """The writers' advisory lock makes the replicas' claims serial, so SKIP LOCKED never skips
    between two bridges today; a transaction without that lock holding a head's row (as one
    would if the lock were narrowed) shows the claim passes over it instead of waiting."""
    import psycopg

    a, _ = two
    [held, free] = [add(a, i) for i in await incidents(a, 2)]
    locked, done = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(a.url.conninfo) as raw:
            raw.execute("SELECT id FROM outbox WHERE id = %s FOR UPDATE", (held,))
            locked.set()
            done.wait(10)
            raw.rollback()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert locked.wait(5)
        got = await asyncio.wait_for(claim(a, "a", [held, free]), 5)
    finally:
        done.set()
        thread.join()
    assert list(got) == [free]
    assert list(await claim(a, "a", [held])) == [held]  # free again after that transaction
