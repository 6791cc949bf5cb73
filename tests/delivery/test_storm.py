"""Storms against vendors' rate limits: a rate-limited answer is a wait (never an attempt,
never a dead letter), requests keep to the limit as they arrive, and a multi-call Slack send
keeps to every method's limit and resumes without repeating a step, across a restart.

The Slack contract fake (tests/fakes/slack.py) limits each method and each channel's posts as
Slack documents (429, ``Retry-After`` in seconds, ``ratelimited``) and notes any request that
arrives inside a window it gave.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from bridge.core.policy import Decision, Severity, Tiers
from bridge.delivery.worker import DeliveryPolicy, OutboxWorker
from bridge.metrics import Metrics
from bridge.store import Store
from bridge.targets import build_target, slack
from bridge.targets.base import TargetDeps
from tests.conftest import Clock, fixture_body
from tests.delivery.test_store_outage import until
from tests.delivery.test_worker import hook_worker, ingest, rows, settle
from tests.fakes.slack import TOKEN, Limit, RateLimits, SlackAPIFake
from tests.fakes.webhook import WebhookFake

RUNBOOK = "https://runbooks.example/node-down"


@dataclass(frozen=True)
class Tiered:
    """Each webhook is its own incident (its group key) with the given tiers."""

    severity: Severity
    tiers: Tiers

    def evaluate(self, payload: Any, now_ns: int) -> list[Decision]:
        fingerprints = tuple(a.fingerprint for a in payload.alerts)
        return [
            Decision(
                payload.group_key,
                self.severity,
                f"Node down {payload.group_key}",
                fingerprints,
                tiers=self.tiers,
            )
        ]


def alert_body(i: int, *, runbook: bool = True) -> dict[str, Any]:
    body = fixture_body("ha-pair-single-delivery.json")
    body["groupKey"] = f"storm-{i}"
    body["alerts"][0]["fingerprint"] = f"{i:016x}"
    if runbook:
        body["alerts"][0]["annotations"]["runbook_url"] = RUNBOOK
    return body


async def test_a_rate_limited_row_waits_and_is_never_dead_lettered(
    store: Store, clock: Clock
) -> None:
    """Twenty 429s in a row, with a dead letter after 2 attempts: the row waits each window
    out, is delivered, and its one attempt is the one that went through."""
    await ingest(store, alert_body(1), clock.now, Tiered("sev2", Tiers(general=("hook",))))
    fake = WebhookFake()
    await fake.start()
    try:
        fake.fail_next(20, status=429, retry_after=1)
        policy = DeliveryPolicy(max_attempts=2, quick_attempts=1)
        async with hook_worker(store, fake.hook_url, clock, policy) as w:
            for _ in range(20):
                await settle(w)
                [row] = await rows(store)
                assert (row.state, row.attempts) == ("pending", 0), row
                assert row.last_error == "rate_limited"
                clock.advance(1)
            await settle(w)
    finally:
        await fake.close()
    [row] = await rows(store)
    assert (row.state, row.attempts, row.last_error) == ("delivered", 1, None)
    assert len(fake.requests) == 21


@contextlib.asynccontextmanager
async def slack_worker(
    store: Store, fake: SlackAPIFake, **settings: Any
) -> AsyncIterator[OutboxWorker]:
    """A running worker (real clock) whose target ``slack`` is the Slack fake."""
    async with aiohttp.ClientSession() as session:
        target = build_target(
            "slack",
            "slack",
            {"token": TOKEN, "api_url": fake.url + "/api", "channel": "C0GENERAL", **settings},
            TargetDeps(session=session),
        )
        worker = OutboxWorker(
            store,
            {"slack": target},
            Metrics.create(),
            policy=DeliveryPolicy(quick_attempts=1),
            incident_url=lambda i: f"https://bridge.example/incidents/{i}",
        )
        worker.start()
        try:
            yield worker
        finally:
            await worker.stop()


async def delivered(store: Store) -> bool:
    return all(r.state == "delivered" for r in await rows(store))


async def test_posts_to_one_channel_arrive_no_closer_than_its_limit(store: Store) -> None:
    """A strict limiter (one post per 0.4 s per channel, no burst): the pace is kept on the
    requests as they arrive, not on when their rows were claimed, so none is refused."""
    fake = SlackAPIFake(RateLimits(methods={}, post=Limit(150, 1)))
    await fake.start()
    policy = Tiered("sev3", Tiers(general=("slack",)))
    for i in range(8):
        await ingest(store, alert_body(i), time.time_ns(), policy)
    try:
        async with slack_worker(store, fake, min_interval_s=0.4, thread_updates=False):
            await until("all delivered", lambda: delivered(store), within_s=20)
    finally:
        await fake.close()
    assert fake.limits is not None
    assert fake.limits.limited == {}, fake.limits.limited
    assert len(fake.messages) == 8


def scaled_limits(monkeypatch: pytest.MonkeyPatch) -> RateLimits:
    """Slack's tiers scaled down 10 times so that a test takes seconds, with the fake stricter
    than the target assumes (no bursts): the target meets 429s and must wait them out."""
    fast = {m: s / 10 for m, s in slack.METHOD_INTERVAL_S.items()}
    monkeypatch.setattr(slack, "METHOD_INTERVAL_S", fast)
    return RateLimits(
        methods={m: Limit(60 / s, 1) for m, s in fast.items()},
        post=Limit(600, 1),
    )


async def test_dedicated_channels_keep_every_methods_limit_and_resume_after_a_restart(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twelve new incidents, each opening its own channel (create, lookup, invite, bookmarks,
    topic, post): no request inside a window the fake gave, including requests of sends that
    were already running; a bookmark's 429 holds neither the message nor the target; no row
    counts a 429 as an attempt; the service stopped in the middle and started again (a new
    worker and target) creates no second channel, adds no bookmark twice, invites nobody
    twice."""
    fake = SlackAPIFake(scaled_limits(monkeypatch))
    await fake.start()
    policy = Tiered("sev2", Tiers(incident="slack"))
    for i in range(12):
        await ingest(store, alert_body(i), time.time_ns(), policy)
    settings = {"invite": ["alice@example.com", "U0BOB"]}
    try:
        async with slack_worker(store, fake, **settings):
            await until("some 429s", lambda: fake.limits and sum(fake.limits.limited.values()))
            await asyncio.sleep(0.3)
        # stopped in the middle of the storm; the next service waits for the windows given
        # to the last one (they are kept in memory only) and goes on
        await asyncio.sleep(1.1)
        async with slack_worker(store, fake, **settings):
            await until("all delivered", lambda: delivered(store), within_s=40)
    finally:
        await fake.close()
    assert fake.limits is not None
    assert fake.limits.inside == [], fake.limits.inside
    assert sum(fake.limits.limited.values()) >= 1  # the fake was stricter than assumed
    every = await rows(store)
    assert {r.state for r in every} == {"delivered"}
    assert max(r.attempts for r in every) == 1  # the 429s were waits, not attempts
    created = {cid: ch for cid, ch in fake.channels.items() if cid != "C0GENERAL"}
    names = sorted(ch["name"] for ch in created.values())
    # one channel per incident, none with a suffix for a name taken (by an earlier try)
    assert len(created) == 12 and len({n.split("-")[1] for n in names}) == 12, names
    assert all(n.split("-")[-1] == str(int(n.split("-")[1]) - 1) for n in names), names
    for ch in created.values():
        links = [b["link"] for b in ch["bookmarks"]]
        assert len(links) == len(set(links)), ch  # never the same bookmark twice
        assert ch["members"] == {"U0ALICE", "U0BOB"}
    assert fake.reinvited == 0  # nobody invited to a channel they were in already
    for cid in created:  # one message each: nothing posted twice
        assert sum(m["channel"] == cid for m in fake.messages) == 1


async def test_a_storm_goes_out_as_digests_and_sev1_pages_go_first(store: Store) -> None:
    """Thirty sev3 incidents, then five sev1. The general channel gets digests, the sev1
    incidents in the first; every incident is named once and nothing is sent twice. The
    stakeholders' channel (paged from sev3 up here) gets one message per page, never merged,
    and the five sev1 pages first although they are the newest."""
    fake = SlackAPIFake(RateLimits(methods={}, post=Limit(600, 1)))
    fake.channels["C0PAGE"] = {"name": "page", "members": set(), "topic": "", "bookmarks": []}
    await fake.start()
    tiers = Tiers(general=("slack",), stakeholders=("pager",), stakeholder_min_severity="sev3")
    for i in range(30):
        await ingest(store, alert_body(i), time.time_ns(), Tiered("sev3", tiers))
    for i in range(30, 35):
        await ingest(store, alert_body(i), time.time_ns(), Tiered("sev1", tiers))
    try:
        async with aiohttp.ClientSession() as session:
            deps = TargetDeps(session=session)
            common = {"token": TOKEN, "api_url": fake.url + "/api", "min_interval_s": 0.12}
            targets = {
                "slack": build_target("slack", "slack", {**common, "channel": "C0GENERAL"}, deps),
                "pager": build_target("pager", "slack", {**common, "channel": "C0PAGE"}, deps),
            }
            worker = OutboxWorker(
                store,
                targets,
                Metrics.create(),
                policy=DeliveryPolicy(digest_budget_s=0.5, digest_size=10),
                incident_url=lambda i: f"https://bridge.example/incidents/{i}",
            )
            worker.start()
            try:
                await until("all delivered", lambda: delivered(store), within_s=30)
            finally:
                await worker.stop()
    finally:
        await fake.close()
    assert fake.limits is not None and fake.limits.limited == {}
    general = [m["text"] for m in fake.messages if m["channel"] == "C0GENERAL"]
    assert all("incidents at once" in t for t in general), general
    named = [int(n) for t in general for n in re.findall(r"\|#(\d+) ", t)]
    assert sorted(named) == list(range(1, 36))  # each incident once
    assert len(general) == 4  # 35 incidents, at most 10 a digest
    assert re.findall(r"\*(SEV\d)\*", general[0])[:5] == ["SEV1"] * 5  # most severe first
    pages = [m["text"] for m in fake.messages if m["channel"] == "C0PAGE"]
    assert len(pages) == 35 and not [t for t in pages if "incidents at once" in t]
    assert all("[SEV1]" in t for t in pages[:5]), pages[:6]
    every = await rows(store)
    assert {r.state for r in every} == {"delivered"}
    assert all(r.attempts == 1 for r in every)
