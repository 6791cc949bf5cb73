"""The running service pages a person and the person acknowledges from the phone: an incident
opens, the outbox worker calls through the Twilio fake, the fake "presses 1" on the call (its
request signed as Twilio signs), the callback route acknowledges the incident as the person
paged, and the timeline says who and how. Ntfy's button and Pushover's receipt the same way.
On each backend (``db_settings``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer, unused_port

from bridge.app import create_app, runner_options
from bridge.runtime import rules_runtime
from bridge.targets.base import TargetDeps
from tests.conftest import Clock, RulesService, app_state, fixture_body
from tests.fakes.base import serving
from tests.fakes.ntfy import ACCESS_TOKEN, NtfyFake
from tests.fakes.pushover import APP_TOKEN, USER_KEY, PushoverFake
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TwilioFake

RULES = """
targets:
  room: {{type: console}}
  phone:
    type: twilio
    account_sid: {sid}
    auth_token: ${{TWILIO_AUTH_TOKEN}}
    from: "+14155550100"
    to: "+14155550123"
    mode: call
    api_url: {twilio}
    callback_url: {bridge}
    person: amara
  push:
    type: ntfy
    server: {ntfy}
    topic: oncall
    token: ${{NTFY_TOKEN}}
    callback_url: {bridge}
    callback_secret: ${{NTFY_CALLBACK_SECRET}}
    person: bjorn
  emergency:
    type: pushover
    token: ${{PUSHOVER_TOKEN}}
    user: {user}
    api_url: {pushover}
    callback_url: {bridge}
    person: chidi
    priority_map: {{sev1: 2, sev2: 2, sev3: 2, sev4: 2}}
route:
  tiers:
    general: [room, {target}]
"""


class PagingService(RulesService):
    """The service as ``run`` wires it, its targets with an HTTP session (they page through
    the fakes) and listening on a port known before the rules are written (the callback URL
    the vendors are given)."""

    def __init__(self, tmp_path: Path, clock: Clock, make_client: Any, rules: str, db: Any):
        super().__init__(tmp_path, clock, make_client, rules, db)
        self.session: aiohttp.ClientSession | None = None

    async def serve_on(self, port: int) -> None:
        self.session = aiohttp.ClientSession()
        runtime = rules_runtime([self.rules], TargetDeps(session=self.session))
        state = app_state(self.settings, clock=self.clock, runtime=runtime, worker=True)
        self.state, self.store, self.worker = state, state.store, state.worker
        server = TestServer(create_app(state), host="127.0.0.1", port=port)
        await server.start_server(**runner_options(self.settings))
        self.client = await self.make_client(server)
        assert self.worker is not None
        self.worker.start()

    async def stop(self) -> None:
        await self.close()
        assert self.session is not None
        await self.session.close()


async def until(what: str, check: Callable[[], Any], within_s: float = 10.0) -> Any:
    deadline = time.monotonic() + within_s
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return found


@pytest.fixture
async def vendors() -> AsyncIterator[tuple[TwilioFake, NtfyFake, PushoverFake]]:
    async with (
        serving(TwilioFake()) as twilio,
        serving(NtfyFake()) as ntfy,
        serving(PushoverFake()) as pushover,
    ):
        yield twilio, ntfy, pushover


@pytest.fixture
async def start(
    tmp_path: Path,
    clock: Clock,
    aiohttp_client: Any,
    db_settings: dict[str, Any],
    vendors: tuple[TwilioFake, NtfyFake, PushoverFake],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Callable[[str], Any]]:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("NTFY_TOKEN", ACCESS_TOKEN)
    monkeypatch.setenv("NTFY_CALLBACK_SECRET", "ntfyCALLBACKsecret0123")
    monkeypatch.setenv("PUSHOVER_TOKEN", APP_TOKEN)
    twilio, ntfy, pushover = vendors
    services: list[PagingService] = []

    async def start(target: str) -> PagingService:
        port = unused_port()
        rules = RULES.format(
            sid=ACCOUNT_SID,
            user=USER_KEY,
            twilio=twilio.url,
            ntfy=ntfy.url,
            pushover=pushover.url,
            bridge=f"http://127.0.0.1:{port}",
            target=target,
        )
        svc = PagingService(tmp_path, clock, aiohttp_client, rules, db_settings)
        services.append(svc)
        await svc.serve_on(port)
        assert svc.client is not None
        resp = await svc.client.post(
            "/api/v1/alerts", json=fixture_body("firing-group-bearer.json")
        )
        assert resp.status == 200
        return svc

    yield start
    for svc in services:
        if svc.store is not None and svc.store.is_open:
            await svc.stop()


def acknowledgements(svc: PagingService) -> list[tuple[str, str]]:
    return [
        (actor, text)
        for actor, text in svc.rows(
            "SELECT actor, text FROM timeline WHERE kind = 'status_changed' "
            "AND text LIKE 'Acknowledged%' ORDER BY id"
        )
    ]


def status(svc: PagingService) -> str:
    ((value,),) = svc.rows("SELECT status FROM incidents")
    return str(value)


async def test_a_call_acknowledged_by_pressing_1(
    start: Callable[[str], Any], vendors: tuple[TwilioFake, NtfyFake, PushoverFake]
) -> None:
    twilio = vendors[0]
    svc = await start("phone")
    await until("the call", lambda: twilio.calls)
    (call,) = twilio.calls.values()
    assert call.said[0] == "Incident bridge: sev1 incident 1: 5xx ratio above 5%."

    # a request not signed with the account's auth token changes nothing
    forged, _ = await twilio.press(call.sid, "1", auth_token="not-the-auth-token")
    assert forged == 401 and status(svc) == "triggered"

    code, twiml = await twilio.press(call.sid, "1")
    assert code == 200 and "is acknowledged" in twiml and twiml.startswith("<?xml")
    assert status(svc) == "acknowledged"
    ((actor, text),) = acknowledgements(svc)
    assert actor == "amara"
    assert text == "Acknowledged by amara: by phone: pressed 1 on a Twilio call to …0123"

    # Twilio retries a callback it got no answer to: acknowledged once
    code, _ = await twilio.press(call.sid, "1")
    assert code == 200 and len(acknowledgements(svc)) == 1


async def test_ntfy_acknowledge_button(
    start: Callable[[str], Any], vendors: tuple[TwilioFake, NtfyFake, PushoverFake]
) -> None:
    ntfy = vendors[1]
    svc = await start("push")
    (message,) = await until("the push", lambda: ntfy.messages)
    code, _ = await ntfy.tap(message["id"], "Acknowledge")
    assert code == 200 and status(svc) == "acknowledged"
    ((actor, text),) = acknowledgements(svc)
    assert actor == "bjorn" and text.endswith("from the ntfy notification")
    # the token is the proof: another one is refused without a word of the rules
    url = message["actions"][0]["url"]
    assert svc.client is not None
    resp = await svc.client.post(urlsplit(url).path[:-4] + "AAAA")
    assert resp.status == 401 and (await resp.json())["field"] == "token"


async def test_pushover_receipt_acknowledged(
    start: Callable[[str], Any], vendors: tuple[TwilioFake, NtfyFake, PushoverFake]
) -> None:
    pushover = vendors[2]
    svc = await start("emergency")
    await until("the emergency push", lambda: pushover.receipts)
    (receipt,) = pushover.receipts
    code, _ = await pushover.acknowledge(receipt, device="pixel8")
    assert code == 200 and status(svc) == "acknowledged"
    ((actor, text),) = acknowledgements(svc)
    assert actor == "chidi" and text.endswith("from Pushover on device pixel8")


ESCALATION_RULES = """
targets:
  room: {{type: console}}
  phone:
    type: twilio
    account_sid: {sid}
    auth_token: ${{TWILIO_AUTH_TOKEN}}
    from: "+14155550100"
    mode: call
    api_url: {twilio}
    callback_url: {bridge}
rotations:
  primary:
    members:
      - {{name: amara, handles: {{phone: "+14155550123"}}}}
      - {{name: bjorn, handles: {{phone: "+14155550177"}}}}
route:
  tiers:
    general: [room]
  escalation:
    sev1:
      levels:
        - after: 2m
          notify: {{rotation: primary}}
"""


async def test_an_escalation_calls_the_holder_who_acknowledges_by_pressing_1(
    tmp_path: Path,
    clock: Clock,
    aiohttp_client: Any,
    db_settings: dict[str, Any],
    vendors: tuple[TwilioFake, NtfyFake, PushoverFake],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bridge.service.scheduler import ReminderScheduler

    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    twilio = vendors[0]
    port = unused_port()
    rules = ESCALATION_RULES.format(
        sid=ACCOUNT_SID, twilio=twilio.url, bridge=f"http://127.0.0.1:{port}"
    )
    svc = PagingService(tmp_path, clock, aiohttp_client, rules, db_settings)
    await svc.serve_on(port)
    assert svc.state is not None and svc.client is not None
    scheduler = ReminderScheduler(svc.state, every_s=0.01)
    scheduler.start()
    try:
        resp = await svc.client.post(
            "/api/v1/alerts", json=fixture_body("firing-group-bearer.json")
        )
        assert resp.status == 200
        await asyncio.sleep(0.1)
        assert twilio.calls == {}  # the level is due after 2 minutes
        clock.advance(120)
        (call,) = await until("the escalation's call", lambda: list(twilio.calls.values()))
        holder = {"+14155550123": "amara", "+14155550177": "bjorn"}[call.to]
        code, twiml = await twilio.press(call.sid, "1")
        assert code == 200 and "is acknowledged" in twiml
        ((actor, text),) = acknowledgements(svc)
        assert actor == holder
        assert (
            text
            == f"Acknowledged by {holder}: by phone: pressed 1 on a Twilio call to …{call.to[-4:]}"
        )
    finally:
        await scheduler.stop()
        await svc.stop()
