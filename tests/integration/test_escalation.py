"""Escalation policies end to end: the real Alertmanager opens an incident in a real bridge
process, its policy pages the primary's holder through the target their handle names, then the
backup target; a restart between the levels sends nothing twice, and the level that fell due
while the bridge was down goes out at start, once."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.config import api_token_path
from tests.conftest import BOTH_BACKENDS
from tests.fakes.base import in_a_thread
from tests.fakes.webhook import SECRET, WebhookFake
from tests.integration.procs import (
    Bridge,
    alertmanager_config,
    http,
    running_alertmanagers,
    wait_for,
)

pytestmark = pytest.mark.integration

TIMEOUT = 30.0
# Level 1 after 2 s (the primary's holder, through the target her handle names), level 2 after
# 5 s more (the backup target).
RULES = """\
targets:
  channel: {type: webhook, url: "${CHANNEL_URL}", secret: "${HOOK_SECRET}"}
  phone: {type: webhook, url: "${PHONE_URL}", secret: "${HOOK_SECRET}"}
  backup: {type: webhook, url: "${BACKUP_URL}", secret: "${HOOK_SECRET}"}
rotations:
  primary:
    members:
      - {name: amara, handles: {phone: "+15550100"}}
    period: weekly
route:
  name: default
  severity_from: {label: severity, map: {critical: sev1}, default: sev4}
  tiers: {incident: channel}
  reminders: {sev1: ~}
  escalation:
    sev1:
      levels:
        - {after: 2s, notify: {rotation: primary}}
        - {after: 5s, notify: {target: backup}}
"""


@pytest.fixture
def fakes() -> Iterator[dict[str, WebhookFake]]:
    servers = {name: WebhookFake() for name in ("channel", "phone", "backup")}
    with in_a_thread(*servers.values()):
        yield servers


def steps(fake: WebhookFake) -> list[int]:
    """The escalation levels a target was paged for, each delivery once."""
    return [
        e["data"]["level"]
        for d in fake.deliveries.values()
        for e in d["events"]
        if e["event"] == "escalated"
    ]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@BOTH_BACKENDS
def test_levels_page_once_each_through_a_restart(
    alertmanager_binary: str, tmp_path: Path, fakes: dict[str, WebhookFake], bridge_db: str | None
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = {
        "CHANNEL_URL": fakes["channel"].hook_url,
        "PHONE_URL": fakes["phone"].hook_url,
        "BACKUP_URL": fakes["backup"].hook_url,
        "HOOK_SECRET": SECRET,
    }
    bridge = Bridge(
        tmp_path / "bridge",
        args=["--rules", str(rules), "--scheduler-interval", "1"],
        env=env,
        database_url=bridge_db,
    ).start()
    try:
        labels = {"alertname": f"Down{uuid.uuid4().hex[:6]}", "service": "api"}
        alert = {"labels": {**labels, "severity": "critical"}, "startsAt": now()}
        config = alertmanager_config(bridge.url, bridge.token)
        with running_alertmanagers(tmp_path, config, binary=alertmanager_binary) as [am]:
            am.post_alerts([alert])
            (incident,) = wait_for("an incident", lambda: bridge.incidents() or None, TIMEOUT)
            i = incident["id"]
            wait_for("level 1 on amara's phone", lambda: steps(fakes["phone"]) or None, TIMEOUT)
            assert steps(fakes["backup"]) == []

            # Down across level 2's due time: it goes out at start, once.
            assert bridge.stop() == 0
            time.sleep(6)
            bridge.start()
            wait_for("level 2 on the backup", lambda: steps(fakes["backup"]) or None, TIMEOUT)
            token = api_token_path(bridge.db).read_text().strip()
            resp = http(
                "POST",
                f"{bridge.url}/api/v1/incidents/{i}/acknowledge",
                json.dumps({"actor": "amara"}).encode(),
                {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            assert resp.status == 200, resp.body
            time.sleep(3)  # more ticks of the scheduler: nothing again
        assert steps(fakes["phone"]) == [1]
        assert steps(fakes["backup"]) == [2]
        assert steps(fakes["channel"]) == [1, 2]  # the dedicated channel hears of each step
        timeline: list[dict[str, Any]] = bridge.incident(i)["timeline"]
        entries = [e for e in timeline if e["kind"] == "escalation_step"]
        assert [(e["data"]["level"], e["data"]["people"]) for e in entries] == [
            (1, ["amara"]),
            (2, []),
        ]
        assert [e["actor"] for e in entries] == ["incident-bridge", "incident-bridge"]
    finally:
        bridge.stop()
