"""The delivery worker against a real store and a contract fake of a webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from bridge.core.alertmanager import parse_webhook
from bridge.core.policy import BuiltinPolicy, Decision, Policy, Severity, Tiers
from bridge.delivery.worker import DeliveryPolicy, OutboxWorker, backoff_s
from bridge.metrics import Metrics
from bridge.store import Store
from bridge.store import outbox as q
from bridge.store.ingest import WebhookResult, apply_webhook
from bridge.targets import build_target
from bridge.targets.base import TargetDeps
from tests.conftest import SECOND, Clock, fixture_body
from tests.fakes.base import serving
from tests.fakes.webhook import SECRET, WebhookFake

POLICY = BuiltinPolicy(general=("hook",))


async def ingest(
    store: Store, body: dict[str, Any], now: int, policy: Policy = POLICY
) -> WebhookResult:
    raw = json.dumps(body).encode()
    payload = parse_webhook(raw)
    decisions = policy.evaluate(payload, now)
    return await store.write(
        lambda c: apply_webhook(
            c,
            payload=payload,
            decisions=decisions,
            sha256=hashlib.sha256(raw).hexdigest(),
            body=None,
            now=now,
        )
    )


@pytest.fixture
async def fake() -> AsyncIterator[WebhookFake]:
    async with serving(WebhookFake()) as server:
        yield server


@contextlib.asynccontextmanager
async def hook_worker(
    store: Store,
    url: str,
    clock: Clock,
    policy: DeliveryPolicy | None = None,
    **settings: Any,
) -> AsyncIterator[OutboxWorker]:
    """A worker whose one target, ``hook``, is the signed webhook at ``url``."""
    async with aiohttp.ClientSession() as session:
        target = build_target(
            "hook",
            "webhook",
            {"url": url, "secret": SECRET, **settings},
            TargetDeps(session=session),
        )
        yield OutboxWorker(store, {"hook": target}, Metrics.create(), clock=clock, policy=policy)


@pytest.fixture
async def worker(store: Store, fake: WebhookFake, clock: Clock) -> AsyncIterator[OutboxWorker]:
    policy = DeliveryPolicy(quick_attempts=2, quick_max_wait_s=0.05)
    async with hook_worker(store, fake.hook_url, clock, policy) as w:
        yield w


@dataclass(frozen=True)
class Room:
    """A policy that puts every alert of a webhook in one incident told to one dedicated room."""

    key: str
    severity: Severity
    title: str
    target: str

    def evaluate(self, payload: Any, now_ns: int) -> list[Decision]:
        fingerprints = tuple(a.fingerprint for a in payload.alerts)
        tiers = Tiers(incident=self.target)
        return [Decision(self.key, self.severity, self.title, fingerprints, tiers=tiers)]


async def settle(worker: OutboxWorker) -> int:
    started = await worker.run_once()
    await worker.drain()
    return started


async def rows(store: Store) -> list[q.OutboxRow]:
    return list(
        reversed(await store.read(lambda c: q.list_rows(c, state=None, before=None, limit=100)))
    )


async def test_opened_then_mitigated_delivered_once_in_order(
    store: Store, worker: OutboxWorker, fake: WebhookFake, clock: Clock
) -> None:
    await ingest(store, fixture_body("ha-slow-receiver/01.json"), clock.now)
    await settle(worker)
    clock.advance(1)
    await ingest(store, fixture_body("ha-slow-receiver/04.json"), clock.now)
    await ingest(store, fixture_body("ha-slow-receiver/02.json"), clock.now)  # a late copy
    assert [r.event for r in await rows(store)] == ["opened", "mitigated"]
    while await settle(worker):
        pass
    assert [d["event"] for d in fake.received] == ["opened", "mitigated"]
    assert {r.state for r in await rows(store)} == {"delivered"}
    assert await settle(worker) == 0


async def test_outage_retries_with_backoff_and_retry_after_no_hot_loop(
    store: Store, worker: OutboxWorker, fake: WebhookFake, clock: Clock
) -> None:
    await ingest(store, fixture_body("ha-slow-receiver/01.json"), clock.now)
    fake.fail_next(2, status=503)  # one attempt: two quick tries
    await settle(worker)
    # the resolve arrives during the outage: it must wait behind "opened"
    await ingest(store, fixture_body("ha-slow-receiver/04.json"), clock.now)
    assert len(fake.requests) == 2 and fake.received == []
    first = (await rows(store))[0]
    assert (first.state, first.attempts, first.last_error) == ("pending", 1, "http_503")
    assert first.next_attempt_at > clock.now
    # Not due yet: nothing is sent however often the worker looks.
    for _ in range(5):
        assert await settle(worker) == 0
    assert len(fake.requests) == 2
    fake.fail_next(1, status=429, retry_after=120)
    clock.now = first.next_attempt_at
    await settle(worker)
    assert len(fake.requests) == 3  # a long Retry-After is not retried in the attempt
    again = (await rows(store))[0]
    assert again.next_attempt_at >= clock.now + 120 * SECOND
    clock.now = again.next_attempt_at - SECOND
    assert await settle(worker) == 0  # Retry-After honoured to the second
    clock.now = again.next_attempt_at
    while await settle(worker):
        pass
    assert [d["event"] for d in fake.received] == ["opened", "mitigated"]
    assert len(fake.deliveries) == 2  # once per idempotency key
    assert len(fake.requests) == 5


async def test_events_waiting_together_go_out_as_one_message(
    store: Store, worker: OutboxWorker, fake: WebhookFake, clock: Clock
) -> None:
    await ingest(store, fixture_body("ha-slow-receiver/01.json"), clock.now)
    await ingest(store, fixture_body("ha-slow-receiver/04.json"), clock.now)
    while await settle(worker):
        pass
    [message] = fake.received
    assert message["event"] == "mitigated"
    assert [e["kind"] for e in message["events"]] == ["opened", "status_changed"]
    assert [r.state for r in await rows(store)] == ["delivered", "delivered"]


async def test_waiting_events_are_coalesced_into_one_message(
    store: Store, fake: WebhookFake, clock: Clock
) -> None:
    room = Room(key="storm", severity="sev2", title="storm", target="hook")

    body = fixture_body("ha-pair-single-delivery.json")
    for i in range(12):
        body["alerts"][0]["fingerprint"] = f"{i:016x}"
        body["alerts"][0]["labels"]["instance"] = f"node-{i}"
        await ingest(store, body, clock.now, room)
    async with hook_worker(store, fake.hook_url, clock, DeliveryPolicy(group_size=5)) as w:
        while await settle(w):
            pass
    # 1 opened + 12 alert_fired events, in groups of at most 5, in order
    assert [len(d["events"]) for d in fake.received] == [5, 5, 3]
    kinds = [e["kind"] for d in fake.received for e in d["events"]]
    assert kinds == ["opened"] + ["alert_fired"] * 12
    states = {r.state for r in await rows(store)}
    assert states == {"delivered"}


async def test_permanent_error_dead_letters_and_retry_sends_again(
    store: Store,
    worker: OutboxWorker,
    fake: WebhookFake,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await ingest(store, fixture_body("ha-slow-receiver/01.json"), clock.now)
    fake.fail_next(1, status=400, body={"error": "bad"})
    with caplog.at_level(logging.WARNING):
        await settle(worker)
    dead = (await rows(store))[0]
    assert (dead.state, dead.attempts, dead.last_error) == ("dead", 1, "http_400")
    assert await settle(worker) == 0
    assert await store.write(lambda c: q.retry(c, dead.id, now=clock.now))
    await settle(worker)
    assert (await rows(store))[0].state == "delivered"
    logged = caplog.text
    assert SECRET not in logged and fake.hook_url not in logged


async def test_exhausted_retries_are_dead_with_reason(
    store: Store, fake: WebhookFake, clock: Clock
) -> None:
    await ingest(store, fixture_body("ha-slow-receiver/01.json"), clock.now)
    policy = DeliveryPolicy(max_attempts=3, quick_attempts=1)
    async with hook_worker(store, fake.hook_url, clock, policy) as w:
        fake.fail_next(10, status=500)
        for _ in range(3):
            await settle(w)
            clock.advance(3600)
    row = (await rows(store))[0]
    assert (row.state, row.attempts, row.last_error) == ("dead", 3, "retries_exhausted: http_500")
    assert len(fake.requests) == 3


async def test_crash_between_send_and_mark_resends_with_the_same_key(
    store: Store, worker: OutboxWorker, fake: WebhookFake, clock: Clock
) -> None:
    await ingest(store, fixture_body("ha-slow-receiver/01.json"), clock.now)
    [row] = await rows(store)
    group = await store.write(lambda c: q.claim_group(c, row.id, 20))
    ctx = await store.read(lambda c: q.context(c, group, max_alerts=100))
    assert ctx is not None
    from bridge.delivery.protocol import Notification

    # the send happens, then the process dies before marking the row
    await worker.targets["hook"].send(
        Notification(
            id=row.id,
            idempotency_key=row.idempotency_key,
            target="hook",
            tier="general",
            event="opened",
            incident=ctx.incident,
            events=tuple(ctx.events),
        )
    )
    await settle(worker)  # after the restart the row is still pending and goes out again
    assert len(fake.received) == 2
    assert len(fake.deliveries) == 1
    assert {r.state for r in await rows(store)} == {"delivered"}


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    p = DeliveryPolicy(backoff_base_s=2, backoff_cap_s=60)
    assert [backoff_s(n, p, rand=lambda: 0.0) for n in (1, 2, 3, 4, 10)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        30.0,
    ]
    assert [backoff_s(n, p, rand=lambda: 1.0) for n in (1, 2, 10)] == [2.0, 4.0, 60.0]


class StampedFake(WebhookFake):
    """Records when each message arrived."""

    def routes(self) -> None:
        self.stamps: list[float] = []
        super().routes()

    async def handle(self, request: Any) -> Any:
        self.stamps.append(time.monotonic())
        return await super().handle(request)


async def test_messages_to_one_channel_are_paced(store: Store, clock: Clock) -> None:
    for i in range(3):
        body = fixture_body("ha-pair-single-delivery.json")
        body["groupKey"] = f"paced-{i}"
        body["alerts"][0]["fingerprint"] = f"{i:016x}"
        await ingest(store, body, clock.now)
    fake = StampedFake()
    await fake.start()
    try:
        async with hook_worker(store, fake.hook_url, clock, min_interval_s=0.25) as w:
            deadline = time.monotonic() + 5
            while len(fake.stamps) < 3 and time.monotonic() < deadline:
                await settle(w)  # a paced row stays in the outbox until its turn
                await asyncio.sleep(0.02)
            pending = [r for r in await rows(store) if r.state == "pending"]
    finally:
        await fake.close()
    assert pending == []
    assert len(fake.stamps) == 3 and len(fake.deliveries) == 3
    gaps = [b - a for a, b in zip(fake.stamps, fake.stamps[1:], strict=False)]
    assert all(gap >= 0.2 for gap in gaps), gaps  # 0.25 s apart, give or take the network


async def test_a_paced_backlog_does_not_hold_back_other_targets(
    store: Store, fake: WebhookFake, clock: Clock
) -> None:
    both = BuiltinPolicy(general=("slow", "fast"))
    for i in range(30):
        body = fixture_body("ha-pair-single-delivery.json")
        body["groupKey"] = f"storm-{i}"
        body["alerts"][0]["fingerprint"] = f"{i:016x}"
        await ingest(store, body, clock.now, both)
    async with aiohttp.ClientSession() as session:
        deps = TargetDeps(session=session)
        settings = {"url": fake.hook_url, "secret": SECRET}
        targets = {
            "slow": build_target("slow", "webhook", {**settings, "min_interval_s": 60}, deps),
            "fast": build_target("fast", "webhook", settings, deps),
        }
        w = OutboxWorker(
            store, targets, Metrics.create(), clock=clock, policy=DeliveryPolicy(due_per_target=5)
        )
        for _ in range(10):
            await settle(w)
    by_target = [d["target"] for d in fake.received]
    assert by_target.count("fast") == 30
    assert by_target.count("slow") == 1  # one message a minute on its channel
    waiting = [r for r in await rows(store) if r.state == "pending"]
    assert {r.target for r in waiting} == {"slow"} and len(waiting) == 29
    assert all(r.leader_id is None for r in waiting)  # unclaimed: free to coalesce later


async def test_a_coalesced_message_is_about_its_newest_milestone(
    store: Store, worker: OutboxWorker, fake: WebhookFake, clock: Clock
) -> None:
    room = Room(key="room", severity="sev2", title="t", target="hook")

    await ingest(store, fixture_body("firing-group-bearer.json"), clock.now, room)
    while await settle(worker):
        pass
    [message] = fake.received
    assert [e["kind"] for e in message["events"]] == ["opened", "alert_fired", "alert_fired"]
    assert message["event"] == "opened"


async def test_dedicated_slack_channel_state_survives_between_messages(
    store: Store, clock: Clock
) -> None:
    """The channel the first message created is remembered in the store and used after."""
    from tests.fakes.slack import TOKEN, SlackAPIFake

    room = Room(key="k", severity="sev1", title="High error rate", target="slack")

    slack = SlackAPIFake()
    await slack.start()
    try:
        async with aiohttp.ClientSession() as session:
            settings = {"token": TOKEN, "api_url": slack.url + "/api", "min_interval_s": 0}
            targets = {
                "slack": build_target("slack", "slack", settings, TargetDeps(session=session))
            }
            w = OutboxWorker(store, targets, Metrics.create(), clock=clock)
            await ingest(store, fixture_body("ha-slow-receiver/01.json"), clock.now, room)
            while await settle(w):
                pass
            clock.advance(60)
            await ingest(store, fixture_body("ha-slow-receiver/04.json"), clock.now, room)
            while await settle(w):
                pass
            # a new worker, as after a restart: the channel comes from the store
            clock.advance(60)
            refire = fixture_body("ha-slow-receiver/01.json")
            refire["alerts"][0]["startsAt"] = "2026-11-27T07:00:00Z"
            await ingest(store, refire, clock.now, room)
            w2 = OutboxWorker(store, targets, Metrics.create(), clock=clock)
            while await settle(w2):
                pass
    finally:
        await slack.close()
    created = [c for c in slack.channels if c != "C0GENERAL"]
    assert len(created) == 1, slack.channels
    assert slack.channels[created[0]]["name"].startswith("inc-1-high-error-rate")
    posted = [m for m in slack.messages if m["channel"] == created[0]]
    assert len(posted) >= 3  # opened, mitigated, reopened: all in the one channel
    assert {r.state for r in await rows(store)} == {"delivered"}


class Recording:
    """A target that notes every notification it is handed, then sends it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.sent: list[Any] = []

    @property
    def pacing_s(self) -> float:
        return float(self.inner.pacing_s)

    async def send(self, notification: Any) -> Any:
        self.sent.append(notification)
        return await self.inner.send(notification)


async def test_a_message_about_a_large_incident_carries_its_counts_and_newest_alerts(
    store: Store, fake: WebhookFake, clock: Clock
) -> None:
    from bridge.delivery.snapshot import MAX_ALERTS
    from tests.store.test_outbox_context import large_group

    n = MAX_ALERTS + 400
    await ingest(store, large_group(n), clock.now)
    async with hook_worker(store, fake.hook_url, clock) as w:
        recording = Recording(w.targets["hook"])
        w.set_targets({"hook": recording})
        await settle(w)
    [notification] = recording.sent
    incident = notification.incident
    assert len(incident["alerts"]) == MAX_ALERTS
    assert incident["alerts"][-1]["fingerprint"] == f"{n - 1:016x}"
    assert list(incident["alerts"][0]) == [
        "fingerprint",
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
    ]
    resolved = len(range(0, n, 5))
    [message] = fake.received
    for shown in (incident, message["incident"]):
        assert shown["alert_count"] == n
        assert (shown["firing_count"], shown["resolved_count"]) == (n - resolved, resolved)


class _Progress:
    """A target that makes progress (say, creates a channel), then fails retryably once: the
    quick retry inside the same attempt must start from that progress."""

    name = "room"
    pacing_s = 0.0

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def send(self, notification: Any) -> Any:
        from bridge.delivery.protocol import DeliveryResult, RetryableError

        self.seen.append(dict(notification.state))
        if not notification.state.get("channel"):
            raise RetryableError("post_failed", state={"channel": "C1"})
        return DeliveryResult(state=dict(notification.state))


async def test_a_quick_retry_starts_from_the_progress_of_the_failed_try(
    store: Store, clock: Clock
) -> None:
    target = _Progress()
    policy = DeliveryPolicy(quick_attempts=3, quick_max_wait_s=0.05)
    worker = OutboxWorker(store, {"room": target}, Metrics.create(), clock=clock, policy=policy)
    await ingest(
        store, fixture_body("firing-group-bearer.json"), clock(), Room("k", "sev2", "t", "room")
    )
    await settle(worker)
    assert target.seen == [{}, {"channel": "C1"}]  # not a second channel
    assert {r.state for r in await rows(store)} == {"delivered"}


async def test_a_builtin_sender_survives_a_reload_of_the_targets(
    store: Store, clock: Clock
) -> None:
    worker = OutboxWorker(store, {"room": _Progress()}, Metrics.create(), clock=clock)
    builtin = _Progress()
    builtin.name = "@knowledge-base"
    worker.add_builtin(builtin)
    worker.set_targets({"other": _Progress()})  # the rules reloaded: "room" is gone
    assert set(worker.targets) == {"other", "@knowledge-base"}
