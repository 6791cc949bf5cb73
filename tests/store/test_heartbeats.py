"""The dead man's switch's table (store/heartbeats.py) on both backends: first sight kept,
beats only moving forward, an episode raised and cleared once."""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.core.heartbeats import Seen

S = 10**9


async def test_first_sight_is_kept_and_beats_move_forward(store: Any) -> None:
    hb = store.heartbeats
    assert await hb.read() == []
    got = await hb.register(names=["a", "b"], now=100 * S)
    assert got == [Seen("a", 100 * S), Seen("b", 100 * S)]
    # registering again (every start, every reload) keeps the first sight
    assert await hb.register(names=["a", "b", "c"], now=200 * S) == [
        Seen("a", 100 * S),
        Seen("b", 100 * S),
        Seen("c", 200 * S),
    ]
    await hb.beat(names=["a"], at=300 * S)
    await hb.beat(names=["a"], at=250 * S)  # an older beat (a retried webhook): no change
    # a beat of a heartbeat not registered yet is its first sight too
    await hb.beat(names=["d"], at=310 * S)
    assert await hb.read(names=["a", "d"]) == [
        Seen("a", 100 * S, 300 * S),
        Seen("d", 310 * S, 310 * S),
    ]


async def test_an_episode_is_raised_and_cleared_once(store: Any) -> None:
    hb = store.heartbeats
    await hb.register(names=["a"], now=S)
    assert await hb.mark(name="a", late_since=100 * S)
    assert not await hb.mark(name="a", late_since=200 * S)  # raised already: kept as it was
    assert (await hb.read(names=["a"]))[0].late_since == 100 * S
    assert await hb.mark(name="a", late_since=None)
    assert not await hb.mark(name="a", late_since=None)
    assert not await hb.mark(name="gone", late_since=5 * S)


async def test_concurrent_beats_keep_the_newest(store: Any) -> None:
    hb = store.heartbeats
    await asyncio.gather(*(hb.beat(names=["a", "b"], at=i * S) for i in range(1, 21)))
    assert [s.last_seen for s in await hb.read()] == [20 * S, 20 * S]
