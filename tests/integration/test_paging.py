"""Paging end to end: the real Alertmanager opens an incident in a real bridge process, the
Twilio target calls the phone through the Twilio fake, the person "presses 1" (the fake posts
the digits to the call's callback, signed as Twilio signs) and the incident is acknowledged by
them, the timeline saying who and how; Twilio repeating the callback acknowledges once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOTH_BACKENDS
from tests.fakes.base import in_a_thread
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TwilioFake
from tests.integration.procs import (
    LOOPBACK,
    Bridge,
    alertmanager_config,
    free_port,
    running_alertmanagers,
    wait_for,
)

pytestmark = pytest.mark.integration

TIMEOUT = 30.0
RULES = """\
targets:
  phone:
    type: twilio
    account_sid: "${TWILIO_ACCOUNT_SID}"
    auth_token: "${TWILIO_AUTH_TOKEN}"
    from: "+14155550100"
    to: "+14155550123"
    api_url: "${TWILIO_URL}"
    callback_url: "${BRIDGE_URL}"
    person: amara
route:
  name: default
  severity_from: {label: severity, map: {critical: sev1}, default: sev4}
  tiers: {general: [phone]}
"""


@pytest.fixture
def twilio() -> Iterator[TwilioFake]:
    fake = TwilioFake()
    with in_a_thread(fake):
        yield fake


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@BOTH_BACKENDS
def test_a_call_from_a_real_alert_acknowledged_by_pressing_1(
    alertmanager_binary: str, tmp_path: Path, twilio: TwilioFake, bridge_db: str | None
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    port = free_port()  # the callback URL is in the rules: the bridge keeps this port
    env = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_URL": twilio.url,
        "BRIDGE_URL": f"http://{LOOPBACK}:{port}",
    }
    bridge = Bridge(
        tmp_path / "bridge",
        args=["--rules", str(rules)],
        env=env,
        database_url=bridge_db,
        fixed_port=port,
    ).start()
    try:
        labels = {"alertname": f"Down{uuid.uuid4().hex[:6]}", "service": "api"}
        alert = {"labels": {**labels, "severity": "critical"}, "startsAt": now()}
        config = alertmanager_config(bridge.url, bridge.token)
        with running_alertmanagers(tmp_path, config, binary=alertmanager_binary) as [am]:
            am.post_alerts([alert])
            (incident,) = wait_for("an incident", lambda: bridge.incidents() or None, TIMEOUT)
            calls = wait_for("the call", lambda: list(twilio.calls.values()) or None, TIMEOUT)
            (call,) = calls
            assert call.to == "+14155550123" and labels["alertname"] in call.said[0]

            code, twiml = asyncio.run(twilio.press(call.sid, "1"))
            assert code == 200 and "is acknowledged" in twiml
            code, _ = asyncio.run(twilio.press(call.sid, "1"))  # Twilio retries: once
            assert code == 200

        seen: dict[str, Any] = bridge.incident(incident["id"])
        assert seen["status"] == "acknowledged"
        acks = [
            (e["actor"], e["text"])
            for e in seen["timeline"]
            if str(e["text"]).startswith("Acknowledged")
        ]
        assert acks == [
            ("amara", "Acknowledged by amara: by phone: pressed 1 on a Twilio call to …0123")
        ]
        assert AUTH_TOKEN not in bridge.logs()
    finally:
        bridge.stop()
