"""Replicas on one database (store/coordination.py), on both backends: leases taken, renewed,
expired, released, and raced for by two stores (two processes); the replicas' table; the
shared secret every store agrees on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bridge.config import Settings
from bridge.core.dburl import DatabaseUrl
from tests.conftest import open_store, rows

S = 10**9


def pg_settings(pg_url: str, tmp_path: Path) -> Settings:
    """Two stores on one database are two processes: PostgreSQL only (SQLite's file takes one
    process, whose store is the one asker that always wins)."""
    return Settings(db=tmp_path / "incident-bridge", database_url=DatabaseUrl.parse(pg_url))


async def test_a_lease_is_taken_renewed_and_kept_from_others_until_it_expires(store: Any) -> None:
    leases = store.coordination
    first = await leases.take_lease(name="scheduler", holder="a", now=100 * S, until=110 * S)
    assert (first.holder, first.taken_at, first.expires_at) == ("a", 100 * S, 110 * S)
    # another asker while it runs: refused, the lease unchanged
    other = await leases.take_lease(name="scheduler", holder="b", now=105 * S, until=115 * S)
    assert (other.holder, other.expires_at) == ("a", 110 * S)
    # the holder renews: it keeps the time it took it
    renewed = await leases.take_lease(name="scheduler", holder="a", now=108 * S, until=118 * S)
    assert (renewed.holder, renewed.taken_at, renewed.expires_at) == ("a", 100 * S, 118 * S)
    # expired: the next asker takes it
    taken = await leases.take_lease(name="scheduler", holder="b", now=119 * S, until=129 * S)
    assert (taken.holder, taken.taken_at, taken.expires_at) == ("b", 119 * S, 129 * S)
    assert await leases.lease(name="scheduler") == taken
    # each name is a lease of its own
    idx = await leases.take_lease(name="indexer", holder="a", now=119 * S, until=129 * S)
    assert idx.holder == "a"


async def test_a_released_lease_goes_to_the_next_asker_at_once(store: Any) -> None:
    leases = store.coordination
    await leases.take_lease(name="indexer", holder="a", now=100 * S, until=200 * S)
    assert not await leases.release_lease(name="indexer", holder="b")  # not b's to give
    assert (await leases.lease(name="indexer")).holder == "a"
    assert await leases.release_lease(name="indexer", holder="a")
    taken = await leases.take_lease(name="indexer", holder="b", now=101 * S, until=111 * S)
    assert taken.holder == "b"


async def test_askers_racing_for_one_lease_one_wins(store: Any) -> None:
    got = await asyncio.gather(
        *(
            store.coordination.take_lease(name="race", holder=f"h{i}", now=S, until=2 * S)
            for i in range(8)
        )
    )
    assert len({lease.holder for lease in got}) == 1


async def test_two_stores_racing_for_one_lease_one_wins(pg_url: str, tmp_path: Path) -> None:
    """Two stores on one database (two processes), many askers each at the same moment: every
    answer names the same holder, and that holder asked."""
    a = open_store(pg_settings(pg_url, tmp_path))
    b = open_store(pg_settings(pg_url, tmp_path))
    try:
        for round_ in range(5):
            now = (1000 + round_ * 100) * S  # each round after the last one's lease expired
            asks = [(s, f"{tag}{i}") for i in range(4) for s, tag in ((a, "a"), (b, "b"))]
            got = await asyncio.gather(
                *(
                    s.coordination.take_lease(name="race", holder=h, now=now, until=now + 10 * S)
                    for s, h in asks
                )
            )
            holders = {lease.holder for lease in got}
            assert len(holders) == 1, holders
            assert holders <= {h for _, h in asks}
        found = rows(a, "SELECT count(*) FROM leases WHERE name = 'race'")
        assert found == [(1,)]
    finally:
        a.close()
        b.close()


async def test_replicas_are_seen_by_their_heartbeats_and_pruned(store: Any) -> None:
    c = store.coordination

    async def beat(replica: str, rules: str, now: int) -> list[str]:
        seen = await c.heartbeat(
            replica=replica,
            rules_hash=rules,
            started_at=50 * S,
            now=now,
            live_after=now - 15 * S,
            prune_before=now - 3600 * S,
        )
        return [f"{r.id}:{r.rules_hash}" for r in seen]

    assert await beat("a", "h1", 100 * S) == ["a:h1"]
    assert await beat("b", "h2", 105 * S) == ["a:h1", "b:h2"]
    # a's rules changed (a reload): the next beat says so
    assert await beat("a", "h2", 110 * S) == ["a:h2", "b:h2"]
    # b stops beating: not live 15 s later, its row kept for a while, then pruned
    assert await beat("a", "h2", 121 * S) == ["a:h2"]
    assert [r.id for r in await c.replicas(live_after=0)] == ["a", "b"]
    await beat("a", "h2", 105 * S + 3601 * S)
    assert [r.id for r in await c.replicas(live_after=0)] == ["a"]
    # a clean stop: gone at once
    await c.leave(replica="a")
    assert await c.replicas(live_after=0) == []


async def test_a_shared_secret_is_made_once(store: Any) -> None:
    first = await store.coordination.shared_secret(name="session_key", candidate="k1", now=S)
    again = await store.coordination.shared_secret(name="session_key", candidate="k2", now=S)
    assert first == again == "k1"


async def test_every_store_on_the_database_agrees_on_one_shared_secret(
    pg_url: str, tmp_path: Path
) -> None:
    a = open_store(pg_settings(pg_url, tmp_path))
    b = open_store(pg_settings(pg_url, tmp_path))
    try:
        got = await asyncio.gather(
            *(
                s.coordination.shared_secret(name="session_key", candidate=f"key-{i}", now=S)
                for i, s in enumerate([a, b, a, b])
            )
        )
        assert len(set(got)) == 1 and got[0] in {f"key-{i}" for i in range(4)}
        # later askers, with new candidates, get the same one; another name is its own
        again = await b.coordination.shared_secret(name="session_key", candidate="new", now=S)
        assert again == got[0]
        other = await a.coordination.shared_secret(name="other", candidate="x", now=S)
        assert other == "x"
    finally:
        a.close()
        b.close()
