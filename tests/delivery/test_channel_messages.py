"""Channel messages (tied to no incident): a rotation's hand-off and a scheduled drill's
announcement reach their targets once, through the outbox worker's path, across ticks,
restarts, replicas and a target's outage (a real loopback webhook receiver, both backends)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.config import Settings
from bridge.core.alertmanager import parse_webhook
from bridge.delivery.worker import DeliveryPolicy, OutboxWorker
from bridge.metrics import Metrics
from bridge.runtime import rules_runtime
from bridge.service import AppState
from bridge.service.drills import fire_scheduled
from bridge.service.oncall import announce_handoffs
from bridge.store.interface import IngestItem
from bridge.targets.base import TargetDeps
from tests.conftest import BOTH_BACKENDS, Clock, app_state, fixture_body, rows, service_db
from tests.fakes.base import serving
from tests.fakes.webhook import SECRET, WebhookFake

pytestmark = BOTH_BACKENDS

S = 10**9
# Monday 2026-12-07: a daily rotation hands off at 09:00 UTC.
HANDOFF = int(datetime(2026, 12, 7, 9, 0, tzinfo=UTC).timestamp()) * S
DRILL_AT = int(datetime(2026, 12, 7, 14, 0, tzinfo=UTC).timestamp()) * S

RULES = """
targets:
  hook: {type: webhook, url: "${HOOK_URL}", secret: "${HOOK_SECRET}"}
  # a paging target in the general tier (the hook's fake stands for PagerDuty's API: no network)
  pager: {type: pagerduty, routing_key: "${PD_KEY}", api_url: "${HOOK_URL}"}
rotations:
  ops:
    members: [alice, bob]
    period: daily
    handoff: "09:00"
    handoff_to: [hook]
route:
  name: default
  tiers:
    general: [hook, pager]
  roles:
    commander: {rotation: ops}
  drills:
    - {cron: "0 14 * * 1", severity: sev2, announce_before: 1h}
"""


class DownFake(WebhookFake):
    """The webhook contract fake with an outage switch: down, it answers 503."""

    down = False

    async def handle(self, request: web.Request) -> web.Response:
        if self.down:
            await request.read()
            return web.json_response({"error": "maintenance"}, status=503)
        return await super().handle(request)


@pytest.fixture
async def hook() -> AsyncIterator[DownFake]:
    async with serving(DownFake()) as fake:
        yield fake


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.setenv("PD_KEY", "pd-routing-key-0123")


class Service:
    """One life of the service's parts this needs: the store, the rules, an outbox worker
    (its replica id given), on the test's clock; ``restart`` closes it and opens another."""

    def __init__(self, path: Path, settings: Settings, clock: Clock, deps: TargetDeps) -> None:
        self.path, self.settings, self.clock, self.deps = path, settings, clock, deps
        self.state = self._open()

    def _open(self) -> AppState:
        runtime = rules_runtime([self.path], self.deps)
        return app_state(self.settings, clock=self.clock, runtime=runtime)

    def worker(self, replica: str = "r1", max_attempts: int = 12) -> OutboxWorker:
        # one quick try an attempt: the outage's retry is the persisted schedule's
        policy = DeliveryPolicy(quick_attempts=1, max_attempts=max_attempts)
        worker = OutboxWorker(
            self.state.store,
            self.state.runtime.targets,
            Metrics.create(),
            clock=self.clock,
            policy=policy,
            replica=replica,
            incident_url=lambda i: f"https://bridge.example/incidents/{i}",
        )
        self.state.worker = worker
        return worker

    def restart(self) -> None:
        self.state.store.close()
        self.state = self._open()

    def messages(self) -> list[tuple[Any, ...]]:
        return rows(
            self.state.store,
            "SELECT kind, target, state, attempts FROM channel_messages ORDER BY id",
        )


@pytest.fixture
async def service(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    clock: Clock,
    hook: DownFake,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Service]:
    path = tmp_path / "rules.yaml"
    monkeypatch.setenv("HOOK_URL", hook.hook_url)
    path.write_text(textwrap.dedent(RULES))
    settings = Settings(**service_db(request, tmp_path, "messages"), rules=(path,))
    async with aiohttp.ClientSession() as session:
        svc = Service(path, settings, clock, TargetDeps(session=session))
        try:
            yield svc
        finally:
            svc.state.store.close()


async def open_incident(state: AppState) -> list[int]:
    """An incident opened by a webhook, as the receiver writes it; its id."""
    body = json.dumps(fixture_body("firing-group-bearer.json")).encode()
    payload = parse_webhook(body)
    now = state.clock()
    item = IngestItem(
        payload=payload,
        decisions=state.runtime.policy.evaluate(payload, now),
        sha256=hashlib.sha256(body).hexdigest(),
        body=None,
        now=now,
    )
    result = await state.store.ingest.apply_webhooks(item)
    return [t.id for t in result.incidents]


async def send(worker: OutboxWorker) -> int:
    started = await worker.run_once()
    await worker.drain()
    return started


async def test_a_hand_off_message_arrives_once_across_two_ticks_and_a_restart(
    service: Service, clock: Clock, hook: DownFake
) -> None:
    clock.now = HANDOFF + 60 * S
    assert await announce_handoffs(service.state) == 1
    assert await send(service.worker()) == 1
    clock.advance(15)  # the next tick: recorded before, nothing again
    assert await announce_handoffs(service.state) == 0
    assert await send(service.worker()) == 0
    service.restart()
    clock.advance(15)
    assert await announce_handoffs(service.state) == 0
    assert await send(service.worker()) == 0
    assert len(hook.received) == 1
    (payload,) = hook.received
    message = payload["message"]
    assert message["kind"] == "handoff" and message["rotation"] == "ops"
    assert {message["from"], message["to"]} == {"alice", "bob"}
    assert message["incident_count"] == 0 and "id" not in payload["incident"]
    assert f"{message['from']} hands to {message['to']}" in payload["text"]
    assert service.messages() == [("handoff", "hook", "delivered", 1)]


async def test_a_hand_off_lists_the_open_incidents_inherited_with_their_links(
    service: Service, clock: Clock, hook: DownFake
) -> None:
    clock.now = HANDOFF - 3600 * S
    ids = await open_incident(service.state)
    clock.now = HANDOFF + 60 * S
    assert await announce_handoffs(service.state) == 1
    await send(service.worker())  # the incident's own messages go out too
    (payload,) = [r for r in hook.received if "message" in r]
    message = payload["message"]
    assert message["incident_count"] == 1
    assert [i["id"] for i in message["incidents"]] == ids
    assert message["incidents"][0]["url"] == f"https://bridge.example/incidents/{ids[0]}"
    assert f"https://bridge.example/incidents/{ids[0]}" in payload["text"]


async def test_a_target_down_is_retried_and_the_message_arrives_after(
    service: Service, clock: Clock, hook: DownFake
) -> None:
    hook.down = True
    clock.now = HANDOFF + 60 * S
    assert await announce_handoffs(service.state) == 1
    worker = service.worker()
    assert await send(worker) == 1
    ((_, _, state, attempts),) = service.messages()
    assert (state, attempts) == ("pending", 1) and hook.received == []
    hook.down = False
    assert await send(worker) == 0  # its retry's time has not come
    (due,) = rows(service.state.store, "SELECT next_attempt_at FROM channel_messages")
    clock.now = int(due[0])
    assert await send(worker) == 1
    assert len(hook.received) == 1
    assert service.messages() == [("handoff", "hook", "delivered", 2)]


async def test_waiting_and_dead_messages_count_in_the_outbox_gauges(
    service: Service, clock: Clock, hook: DownFake
) -> None:
    hook.down = True
    clock.now = HANDOFF + 60 * S
    assert await announce_handoffs(service.state) == 1
    _, waiting, _ = await service.state.store.metrics.scrape(teams=[])
    assert (waiting.pending, waiting.dead) == (1, 0)
    assert waiting.oldest_pending_at == HANDOFF + 60 * S
    assert await send(service.worker(max_attempts=1)) == 1  # its one attempt fails: dead
    _, dead, _ = await service.state.store.metrics.scrape(teams=[])
    assert (dead.pending, dead.dead) == (0, 1)
    (row,) = rows(service.state.store, "SELECT state, last_error FROM channel_messages")
    assert row == ("dead", "retries_exhausted: http_503")


async def test_a_second_replica_does_not_double_a_message(
    service: Service, clock: Clock, hook: DownFake
) -> None:
    clock.now = HANDOFF + 60 * S
    # two replicas' scheduler ticks at once: one records the hand-off
    done = await asyncio.gather(announce_handoffs(service.state), announce_handoffs(service.state))
    assert sorted(done) == [0, 1]
    one, two = service.worker("replica-1"), service.worker("replica-2")
    assert await one.run_once() == 1  # claimed under replica-1's lease, its send under way
    assert await two.run_once() == 0  # replica-2 sees the claim
    await one.drain()
    assert await send(two) == 0  # delivered: nothing left
    assert len(hook.received) == 1
    keys = {r["idempotency_key"] for r in hook.received}
    assert len(keys) == 1


async def test_a_drill_is_announced_once_announce_before_ahead_in_the_general_channel(
    service: Service, clock: Clock, hook: DownFake
) -> None:
    clock.now = DRILL_AT - 2 * 3600 * S  # two hours ahead: not yet
    assert await fire_scheduled(service.state) == 0
    assert await send(service.worker()) == 0
    clock.now = DRILL_AT - 3600 * S + 10 * S  # within the hour before: announced
    assert await fire_scheduled(service.state) == 0
    assert await send(service.worker()) == 1
    clock.advance(15)
    assert await fire_scheduled(service.state) == 0
    service.restart()
    assert await fire_scheduled(service.state) == 0
    assert await send(service.worker()) == 0
    (payload,) = hook.received
    message = payload["message"]
    assert message["kind"] == "drill_announcement"
    assert (message["route"], message["severity"]) == ("default", "sev2")
    assert message["at"] == "2026-12-07T14:00:00Z"
    assert "DRILL" in payload["text"] and "not a real incident" in payload["text"]
    # the pager of the general tier takes no channel message: only the webhook was written
    assert service.messages() == [("drill_announcement", "hook", "delivered", 1)]
