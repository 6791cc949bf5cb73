"""Two outbox workers on one PostgreSQL database, as two ``serve`` replicas run them: each with
a PgStore of its own (its writer, its read pool, its connections) and its replica id, both
sending to the webhook contract fake (tests/fakes/webhook.py), which acknowledges a repeated
Idempotency-Key without storing it again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.config import Settings
from bridge.core.dburl import DatabaseUrl
from bridge.core.policy import BuiltinPolicy
from bridge.delivery.protocol import DeliveryResult, Notification
from bridge.delivery.worker import DeliveryPolicy, OutboxWorker
from bridge.metrics import Metrics
from bridge.store.outbox import LEASE_NS
from bridge.targets import build_target
from bridge.targets.base import TargetDeps
from tests.conftest import SECOND, Clock, fixture_body, open_store
from tests.delivery.test_store_outage import until
from tests.delivery.test_worker import ingest, rows, settle
from tests.fakes.base import serving
from tests.fakes.webhook import SECRET, WebhookFake

POLICY = BuiltinPolicy(general=("hook",))


@pytest.fixture
def stores(pg_url: str, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """Replica "a"'s store and replica "b"'s, on one database."""
    settings = Settings(db=tmp_path / "incident-bridge", database_url=DatabaseUrl.parse(pg_url))
    a, b = open_store(settings), open_store(settings)
    yield a, b
    b.close()
    a.close()


@pytest.fixture
async def fake() -> AsyncIterator[WebhookFake]:
    async with serving(WebhookFake()) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def hook(url: str, session: aiohttp.ClientSession) -> Any:
    return build_target(
        "hook", "webhook", {"url": url, "secret": SECRET}, TargetDeps(session=session)
    )


async def incidents(store: Any, n: int, clock: Clock) -> None:
    """``n`` incidents, each with its "opened" row for ``hook``."""
    for i in range(n):
        body = fixture_body("ha-pair-single-delivery.json")
        body["groupKey"] = f"replicas-{i}"
        body["alerts"][0]["fingerprint"] = f"{i:016x}"
        await ingest(store, body, clock.now, POLICY)


class Counting:
    """A target that counts what its worker sent through it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.keys: list[str] = []

    @property
    def pacing_s(self) -> float:
        return float(self.inner.pacing_s)

    async def send(self, notification: Notification) -> DeliveryResult:
        result: DeliveryResult = await self.inner.send(notification)
        self.keys.append(notification.idempotency_key)
        return result


class DiesAfterSending(Counting):
    """The send reaches the receiver, then the process dies before it records anything."""

    async def send(self, notification: Notification) -> DeliveryResult:
        await self.inner.send(notification)
        self.keys.append(notification.idempotency_key)
        await asyncio.Event().wait()  # never returns: the test cancels it, as a SIGKILL would
        raise AssertionError("unreachable")


class Slow(Counting):
    """A send that takes ``seconds`` (a slow receiver, or a long queue for the target)."""

    def __init__(self, inner: Any, seconds: float) -> None:
        super().__init__(inner)
        self.seconds = seconds
        self.started = 0

    async def send(self, notification: Notification) -> DeliveryResult:
        self.started += 1
        await asyncio.sleep(self.seconds)
        return await super().send(notification)


async def test_two_replicas_deliver_every_row_exactly_once(
    stores: tuple[Any, Any], fake: WebhookFake, session: aiohttp.ClientSession
) -> None:
    a_store, b_store = stores
    clock = Clock()
    await incidents(a_store, 200, clock)
    policy = DeliveryPolicy(due_per_target=10, poll_s=0.2)
    # 20 ms a send, 4 at a time: one replica alone would take a second, so the other's
    # first look (its connections opening) comes while there is still work to share
    targets = [Slow(hook(fake.hook_url, session), seconds=0.02) for _ in range(2)]
    workers = [
        OutboxWorker(s, {"hook": t}, Metrics.create(), policy=policy, replica=name)
        for s, t, name in zip(stores, targets, ("a", "b"), strict=True)
    ]
    for w in workers:
        w.start()
    try:
        await until("every row sent", lambda: len(fake.received) >= 200, within_s=60)
        await until(
            "every row marked delivered",
            lambda: _all_delivered(b_store),
            within_s=20,
        )
    finally:
        for w in workers:
            await w.stop()
    assert len(fake.received) == 200 == len(fake.deliveries)  # none sent twice
    assert len(targets[0].keys) > 0 and len(targets[1].keys) > 0  # both replicas sent
    assert set(targets[0].keys).isdisjoint(targets[1].keys)
    claimed = await b_store.read(
        lambda c: c.execute("SELECT count(*) FROM outbox WHERE claimed_by IS NOT NULL").fetchone()
    )
    assert claimed[0] == 0


async def _all_delivered(store: Any) -> bool:
    states = await store.read(lambda c: c.execute("SELECT DISTINCT state FROM outbox").fetchall())
    return [tuple(s) for s in states] == [("delivered",)]


async def test_a_replica_killed_mid_send_leaves_its_rows_to_the_other_after_the_lease(
    stores: tuple[Any, Any], fake: WebhookFake, session: aiohttp.ClientSession
) -> None:
    a_store, b_store = stores
    clock = Clock()
    await incidents(a_store, 20, clock)
    dying = DiesAfterSending(hook(fake.hook_url, session))
    a = OutboxWorker(
        a_store,
        {"hook": dying},
        Metrics.create(),
        clock=clock,
        policy=DeliveryPolicy(due_per_target=8, concurrency_per_target=4),
        replica="a",
    )
    assert await a.run_once() == 8  # eight claimed: four sent, four queued behind them
    await until("a's sends reached the receiver", lambda: len(dying.keys) == 4)
    for task in list(a._inflight.values()):  # killed: nothing released, nothing recorded
        task.cancel()
    await asyncio.gather(*a._inflight.values(), return_exceptions=True)

    survivor = Counting(hook(fake.hook_url, session))
    b = OutboxWorker(b_store, {"hook": survivor}, Metrics.create(), clock=clock, replica="b")
    while await settle(b):
        pass
    assert len(survivor.keys) == 12  # every row but a's eight
    assert set(survivor.keys).isdisjoint(dying.keys)
    # b wakes when a's lease runs out, not before
    assert await b_store.outbox.next_due_at(after=clock.now, replica="b") == clock.now + LEASE_NS
    clock.advance(LEASE_NS / SECOND - 1)
    assert await settle(b) == 0
    clock.advance(1)
    while await settle(b):
        pass
    assert len(survivor.keys) == 20
    # the four a had sent went out again under the same keys: the receiver stored them once
    assert set(dying.keys) < set(survivor.keys)
    assert len(fake.received) == 24 and len(fake.deliveries) == 20
    assert {r.state for r in await rows(b_store)} == {"delivered"}


async def test_a_retry_after_seen_by_one_replica_holds_both(
    stores: tuple[Any, Any], fake: WebhookFake, session: aiohttp.ClientSession
) -> None:
    a_store, b_store = stores
    clock = Clock()
    await incidents(a_store, 6, clock)
    fake.fail_next(1, status=429, retry_after=30)
    one_at_a_time = DeliveryPolicy(concurrency_per_target=1)
    a = OutboxWorker(
        a_store,
        {"hook": hook(fake.hook_url, session)},
        Metrics.create(),
        clock=clock,
        policy=one_at_a_time,
        replica="a",
    )
    b = OutboxWorker(
        b_store,
        {"hook": hook(fake.hook_url, session)},
        Metrics.create(),
        clock=clock,
        replica="b",
    )
    await settle(a)  # the first request gets the 429; a's other sends wait for the pause
    assert len(fake.requests) == 1 and fake.received == []
    # b never heard the 429 itself: the pause is in the database
    assert await b_store.outbox.paused_targets(now=clock.now) == {"hook": clock.now + 30 * SECOND}
    for _ in range(3):
        assert await settle(b) == 0
        clock.advance(9)
    assert len(fake.requests) == 1
    # a's rows it did not send are not held by a's claims: b takes them when the pause is over
    clock.advance(3)
    while await settle(b):
        pass
    assert len(fake.received) == 6 == len(fake.deliveries)
    assert {r.state for r in await rows(b_store)} == {"delivered"}
    await a.stop()
    await b.stop()


async def test_stop_releases_the_claims_of_sends_that_did_not_finish(
    stores: tuple[Any, Any], fake: WebhookFake, session: aiohttp.ClientSession
) -> None:
    a_store, b_store = stores
    clock = Clock()
    await incidents(a_store, 3, clock)
    stuck = DiesAfterSending(hook(fake.hook_url, session))
    a = OutboxWorker(a_store, {"hook": stuck}, Metrics.create(), clock=clock, replica="a")
    assert await a.run_once() == 3
    await until("a's sends reached the receiver", lambda: len(stuck.keys) == 3)
    await a.stop(grace_s=0.1)  # the sends do not finish in the grace: cancelled, released
    b = OutboxWorker(
        b_store,
        {"hook": Counting(hook(fake.hook_url, session))},
        Metrics.create(),
        clock=clock,
        replica="b",
    )
    while await settle(b):  # at once, on the same clock: no lease to wait for
        pass
    assert {r.state for r in await rows(b_store)} == {"delivered"}
    assert len(fake.deliveries) == 3


async def test_a_send_longer_than_the_lease_keeps_its_claim_by_renewing_it(
    stores: tuple[Any, Any], fake: WebhookFake, session: aiohttp.ClientSession
) -> None:
    a_store, b_store = stores
    await incidents(a_store, 1, Clock())
    slow = Slow(hook(fake.hook_url, session), seconds=1.2)
    # the real clock: a's loop renews a third of a lease of 0.3 s while its send lasts 1.2 s
    policy = DeliveryPolicy(lease_s=0.3, poll_s=0.05)
    a = OutboxWorker(a_store, {"hook": slow}, Metrics.create(), policy=policy, replica="a")
    b = OutboxWorker(
        b_store, {"hook": Counting(hook(fake.hook_url, session))}, Metrics.create(), replica="b"
    )
    a.start()
    try:
        await until("a sending", lambda: slow.started == 1)
        for _ in range(8):
            await asyncio.sleep(0.1)
            assert await b.run_once() == 0
        await until("a's send done", lambda: len(fake.received) == 1)
    finally:
        await a.stop()
        await b.stop()
    assert len(fake.received) == 1 and slow.keys != []


class Stamped(WebhookFake):
    """Notes when (the event loop's time) each message arrived."""

    def routes(self) -> None:
        self.stamps: list[float] = []
        super().routes()

    async def handle(self, request: Any) -> Any:
        self.stamps.append(asyncio.get_running_loop().time())
        return await super().handle(request)


async def test_two_replicas_together_keep_one_channels_pace(
    stores: tuple[Any, Any], session: aiohttp.ClientSession
) -> None:
    a_store, _ = stores
    await incidents(a_store, 4, Clock())
    interval = 0.25
    async with serving(Stamped()) as fake:
        settings = {"url": fake.hook_url, "secret": SECRET, "min_interval_s": interval}
        workers = [
            OutboxWorker(
                store,
                {"hook": build_target("hook", "webhook", settings, TargetDeps(session=session))},
                Metrics.create(),
                policy=DeliveryPolicy(poll_s=0.05),
                replica=name,
            )
            for store, name in zip(stores, ("a", "b"), strict=True)
        ]
        for w in workers:
            w.start()
        try:
            await until("every message sent", lambda: len(fake.stamps) == 4, within_s=10)
        finally:
            for w in workers:
                await w.stop()
    gaps = [b - a for a, b in zip(fake.stamps, fake.stamps[1:], strict=False)]
    assert all(gap >= interval * 0.8 for gap in gaps), gaps
