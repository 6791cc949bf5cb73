"""A target's Retry-After pauses the whole target, not one row; other targets keep delivering.

Two webhook contract fakes on loopback ports: ``limited`` answers its first burst of requests
with 429 and ``Retry-After`` and answers 429 to anything that arrives inside that window (and
notes it: the bridge did not wait), ``other`` is a plain receiver. The worker runs its own loop
with the real clock, as in the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.core.policy import BuiltinPolicy
from bridge.delivery.worker import DeliveryPolicy, OutboxWorker
from bridge.metrics import Metrics
from bridge.store import Store
from bridge.targets import build_target
from bridge.targets.base import TargetDeps
from tests.conftest import Clock, fixture_body
from tests.delivery.test_store_outage import until
from tests.delivery.test_worker import hook_worker, ingest, rows, settle
from tests.fakes.base import serving
from tests.fakes.webhook import SECRET, WebhookFake

# timing bounds: run after the parallel run, alone (make test)
pytestmark = pytest.mark.serial

WINDOW_S = 2.0
BURST = 4  # the worker's sends at a time per target: all of them get the 429
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StampedFake(WebhookFake):
    """Notes when (``time.monotonic``) each request arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[float] = []
        self.app.middlewares.insert(0, self._stamp)

    @web.middleware
    async def _stamp(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.arrived.append(time.monotonic())
        return await handler(request)


class RateLimitedFake(StampedFake):
    """Holds its first ``BURST`` requests, answers them all with 429 + ``Retry-After:
    WINDOW_S``, and answers 429 to (and notes) every request inside that window."""

    def __init__(self) -> None:
        super().__init__()
        self.limited_at: float | None = None
        self.inside: list[float] = []
        self._burst: list[asyncio.Event] = []
        self.app.middlewares.insert(1, self._limit)

    def _too_many(self) -> web.Response:
        return web.json_response(
            {"error": "slow down"}, status=429, headers={"Retry-After": f"{WINDOW_S:g}"}
        )

    @web.middleware
    async def _limit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        await request.read()
        if self.limited_at is None:
            # The first burst: held until it is complete, so that no request was already on
            # its way when the bridge read the 429 (the bridge sends at most BURST at a time).
            release = asyncio.Event()
            self._burst.append(release)
            if len(self._burst) >= BURST:
                for waiting in self._burst:
                    waiting.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await release.wait()
            if self.limited_at is None:
                self.limited_at = time.monotonic()
            return self._too_many()
        if time.monotonic() < self.limited_at + WINDOW_S:
            self.inside.append(time.monotonic())
            return self._too_many()
        return await handler(request)


@pytest.fixture
async def limited() -> AsyncIterator[RateLimitedFake]:
    async with serving(RateLimitedFake()) as server:
        yield server


@pytest.fixture
async def other() -> AsyncIterator[StampedFake]:
    async with serving(StampedFake()) as server:
        yield server


async def storm(store: Store, target: str, first: int, n: int, now: int | None = None) -> None:
    """``n`` new incidents told to ``target``'s general channel."""
    policy = BuiltinPolicy(general=(target,))
    for i in range(first, first + n):
        body = fixture_body("ha-pair-single-delivery.json")
        body["groupKey"] = f"{target}-{i}"
        body["alerts"][0]["fingerprint"] = f"{i:016x}"
        await ingest(store, body, time.time_ns() if now is None else now, policy)


class CountingReads:
    """Counts the worker's reads of the store (each look at the outbox is two)."""

    def __init__(self, store: Store) -> None:
        self.n = 0
        self._read = store.read

    async def __call__(self, fn: Any) -> Any:
        self.n += 1
        return await self._read(fn)


async def test_retry_after_pauses_the_whole_target_and_other_targets_keep_delivering(
    store: Store, limited: RateLimitedFake, other: StampedFake
) -> None:
    await storm(store, "limited", 0, 8)  # more incidents than the sends it may have at a time
    policy = DeliveryPolicy(quick_max_wait_s=0.2, backoff_base_s=1.0, concurrency_per_target=BURST)
    reads = CountingReads(store)
    async with aiohttp.ClientSession() as session:
        deps = TargetDeps(session=session)
        targets = {
            name: build_target(name, "webhook", {"url": fake.hook_url, "secret": SECRET}, deps)
            for name, fake in (("limited", limited), ("other", other))
        }
        worker = OutboxWorker(store, targets, Metrics.create(), policy=policy)
        store.read = reads  # type: ignore[method-assign]
        worker.start()
        try:

            async def limited_and_recorded() -> bool:
                failed = [r for r in await rows(store) if r.last_error == "rate_limited"]
                return len(failed) == BURST

            await until("the 429s answered and recorded", limited_and_recorded)
            assert limited.limited_at is not None
            window_ends = limited.limited_at + WINDOW_S
            reads_before = reads.n
            # While the target waits: new rows for it wait in the outbox, unclaimed (free to be
            # coalesced), and another target is served at once.
            await storm(store, "limited", 100, 2)
            await storm(store, "other", 200, 3)
            worker.notify()
            await until("the other target served", lambda: len(other.received) == 3)
            assert max(other.arrived) < window_ends  # not held behind the paused target
            waiting = [r for r in await rows(store) if r.target == "limited"]
            assert time.monotonic() < window_ends
            assert {r.state for r in waiting} == {"pending"}
            assert [r.leader_id for r in waiting[-2:]] == [None, None]
            await until("the window's end", lambda: time.monotonic() >= window_ends)
            looks_in_window = reads.n - reads_before

            async def all_delivered() -> bool:
                return {r.state for r in await rows(store)} == {"delivered"}

            await until("every row delivered", all_delivered, within_s=20)
        finally:
            await worker.stop()
            del store.read
    assert limited.inside == []  # nothing reached the target inside its Retry-After window
    delivered_at = limited.arrived[BURST:]
    assert len(delivered_at) == 10 and min(delivered_at) >= window_ends
    assert len(limited.deliveries) == 10 and len(other.deliveries) == 3
    # Waiting for the window is waiting, not looking at the outbox every few milliseconds.
    assert looks_in_window < 20, looks_in_window


@pytest.mark.parametrize("status", [429, 503])
async def test_a_retry_after_holds_every_row_of_the_target_until_it_ends(
    store: Store, clock: Clock, status: int
) -> None:
    await storm(store, "hook", 0, 3, now=clock.now)
    fake = WebhookFake()
    await fake.start()
    try:
        fake.fail_next(1, status=status, retry_after=120)
        policy = DeliveryPolicy(concurrency_per_target=1)
        async with hook_worker(store, fake.hook_url, clock, policy) as w:
            await settle(w)
            assert len(fake.requests) == 1  # the others were next in line: not sent
            for _ in range(3):
                assert await settle(w) == 0
            clock.advance(119)
            assert await settle(w) == 0
            assert len(fake.requests) == 1
            clock.advance(1)
            while await settle(w):
                pass
    finally:
        await fake.close()
    assert len(fake.requests) == 4 and len(fake.deliveries) == 3
    first = (await rows(store))[0]
    # its retry kept to the window too; a 429 is a wait, not an attempt (a 503 is a failure)
    assert (first.attempts, first.last_error) == (1 if status == 429 else 2, None)
