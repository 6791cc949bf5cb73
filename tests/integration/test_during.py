"""Stage 2 end to end: the real Alertmanager opens an incident, people drive it through the write
API and the `incident` CLI, and every tier's contract fake receives what it should."""

from __future__ import annotations

import json
import subprocess
import sys
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
RULES = """\
targets:
  general: {type: webhook, url: "${GENERAL_URL}", secret: "${HOOK_SECRET}"}
  channel: {type: webhook, url: "${CHANNEL_URL}", secret: "${HOOK_SECRET}"}
  stakeholders: {type: webhook, url: "${STAKE_URL}", secret: "${HOOK_SECRET}"}
rotations:
  commanders:
    members:
      - {name: amara, handles: {slack: U01AMARA}}
    period: weekly
route:
  name: default
  severity_from:
    label: severity
    map: {critical: sev1, warning: sev3}
    default: sev4
  tiers:
    general: [general]
    incident: channel
    stakeholders: {targets: [stakeholders], min_severity: sev1}
  roles:
    commander: {rotation: commanders}
"""


@pytest.fixture
def fakes() -> Iterator[dict[str, WebhookFake]]:
    """Three webhook contract fakes, one per tier, in a thread of their own."""
    servers = {name: WebhookFake() for name in ("general", "channel", "stakeholders")}
    with in_a_thread(*servers.values()):
        yield servers


def events(fake: WebhookFake) -> list[str]:
    """The notification events a target received in order, each delivery once (a retried
    delivery has the same Idempotency-Key); a message may cover several events."""
    return [e["event"] for d in fake.deliveries.values() for e in d["events"]]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@BOTH_BACKENDS
def test_people_drive_an_incident_from_open_to_closed(
    alertmanager_binary: str, tmp_path: Path, fakes: dict[str, WebhookFake], bridge_db: str | None
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = {
        "GENERAL_URL": fakes["general"].hook_url,
        "CHANNEL_URL": fakes["channel"].hook_url,
        "STAKE_URL": fakes["stakeholders"].hook_url,
        "HOOK_SECRET": SECRET,
    }
    bridge = Bridge(
        tmp_path / "bridge", args=["--rules", str(rules)], env=env, database_url=bridge_db
    ).start()
    try:
        token = api_token_path(bridge.db).read_text().strip()
        write = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def act(incident: int, action: str, body: dict[str, Any]) -> dict[str, Any]:
            resp = http(
                "POST",
                f"{bridge.url}/api/v1/incidents/{incident}/{action}",
                json.dumps(body).encode(),
                write,
            )
            assert resp.status == 200, (action, resp.status, resp.body)
            answer: dict[str, Any] = resp.json()
            return answer

        def cli(*args: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "bridge", "incident", *args, "--url", bridge.url],
                capture_output=True,
                text=True,
                timeout=30,
                env={"INCIDENT_BRIDGE_API_TOKEN": token, "PATH": "/usr/bin:/bin"},
                check=False,
            )
            assert done.returncode == 0, (args, done.stdout, done.stderr)
            return done.stdout

        name = f"CheckoutSlow{uuid.uuid4().hex[:6]}"
        started = now()
        labels = {"alertname": name, "service": "checkout", "severity": "warning"}
        alert = {"labels": labels, "annotations": {"summary": "checkout is slow"}}
        config = alertmanager_config(bridge.url, bridge.token)
        with running_alertmanagers(tmp_path, config, binary=alertmanager_binary) as [am]:
            am.post_alerts([{**alert, "startsAt": started}])
            listed = wait_for("an incident", lambda: bridge.incidents() or None, TIMEOUT)
            assert len(listed) == 1
            incident = listed[0]
            i = incident["id"]
            assert incident["severity"] == "sev3"
            assert incident["roles"] == {"commander": ["amara"]}
            wait_for("opened in general", lambda: events(fakes["general"]) or None, TIMEOUT)
            wait_for("opened in the channel", lambda: events(fakes["channel"]) or None, TIMEOUT)

            # People drive it: the CLI acknowledges, the API does the rest.
            assert "acknowledged" in cli("ack", str(i), "--as", "carol")
            act(i, "roles", {"role": "commander", "person": "dave", "actor": "amara"})
            note = act(i, "notes", {"text": "p99 at 4 s", "actor": "sam"})["events"][0]["id"]
            act(i, "decisions", {"text": "roll back 4.2", "actor": "dave"})
            act(i, "notes", {"text": "p99 at 6 s", "corrects": note, "actor": "sam"})
            act(i, "updates", {"text": "Checkout slow; rolling back", "actor": "lee"})
            act(i, "severity", {"severity": "sev1", "reason": "revenue impact", "actor": "dave"})
            act(i, "updates", {"text": "Rollback under way", "actor": "lee"})

            # The alert resolves: Alertmanager says so, the incident is mitigated.
            am.post_alerts([{**alert, "startsAt": started, "endsAt": now()}])
            wait_for(
                "mitigated",
                lambda: bridge.incident(i)["status"] == "mitigated" or None,
                TIMEOUT,
            )
        act(i, "resolve", {"reason": "rolled back", "actor": "dave"})
        # sev1: the incident closes once its postmortem is published (the shipped policy).
        refused = http(
            "POST",
            f"{bridge.url}/api/v1/incidents/{i}/close",
            json.dumps({"actor": "dave"}).encode(),
            write,
        )
        assert refused.status == 409 and "publish it first" in refused.json()["error"]
        act(i, "postmortem", {"sections": {"summary": "4.2 slowed checkout"}, "actor": "dave"})
        published = act(i, "postmortem/publish", {"actor": "dave"})
        assert published["incident"]["status"] == "closed"  # closed by the publisher
        act(i, "close", {"actor": "dave"})  # already closed: a retry changes nothing

        final = bridge.incident(i)
        assert final["status"] == "closed"
        steps = [
            (e["kind"], e["actor"])
            for e in final["timeline"]
            # (the follow-up opens when it is mitigated, docs/followup.md; not this test's)
            if e["kind"] not in ("alert_fired", "alert_resolved", "followup_opened")
        ]
        assert steps == [
            ("opened", "alertmanager"),
            ("status_changed", "carol"),
            ("role_changed", "amara"),
            ("note", "sam"),
            ("decision", "dave"),
            ("note", "sam"),
            ("status_update", "lee"),
            ("severity_changed", "dave"),
            ("status_update", "lee"),
            ("status_changed", "alertmanager"),
            ("status_changed", "dave"),
            ("postmortem_saved", "dave"),
            ("postmortem_published", "dave"),
            ("status_changed", "dave"),
        ], steps
        corrected = next(e for e in final["timeline"] if e["id"] == note)
        assert corrected["corrected_text"] == "p99 at 6 s"
        ids = [e["id"] for e in final["timeline"]]
        assert ids == sorted(ids)

        def delivered() -> bool | None:
            return "closed" in events(fakes["stakeholders"]) or None

        wait_for("every message delivered", delivered, TIMEOUT)
        # Stakeholders: alerted once when the severity reached theirs, then the milestones and
        # the liaison's later update; never the sev3 opening or the first update.
        assert events(fakes["stakeholders"]) == [
            "severity_changed",
            "update",
            "mitigated",
            "resolved",
            "postmortem_published",
            "closed",
        ]
        general = events(fakes["general"])
        assert general[:2] == ["opened", "acknowledged"]
        assert general.count("update") == 2
        channel = fakes["channel"].received
        texts = [e["text"] for d in channel for e in d["events"]]
        assert any("Commander handed over from amara to dave" in t for t in texts)
        assert any("Decision: roll back 4.2" in t for t in texts)
    finally:
        bridge.stop()
