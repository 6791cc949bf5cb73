"""The bridge behind the real Alertmanager 0.25: alerts go in through Alertmanager's API.

Alertmanager groups, waits and retries exactly as in production (group_wait 1s, group_interval
2s here), and sends with its own bearer-token `http_config`. In CI these tests must run: a missing
binary fails them instead of skipping (see conftest).
"""

from __future__ import annotations

import subprocess
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOTH_BACKENDS
from tests.integration.procs import (
    Bridge,
    alertmanager_config,
    http,
    metric_value,
    running_alertmanagers,
    running_bridge,
    running_prometheus,
    wait_for,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "examples" / "alertmanager.yml"
TIMEOUT = 30.0  # seconds for Alertmanager to deliver a transition (usually 1-3 s)


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def alert(
    alertname: str, instance: str, starts_at: str, ends_at: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "labels": {
            "alertname": alertname,
            "service": "checkout",
            "instance": instance,
            "severity": "critical",
        },
        "annotations": {"summary": f"{alertname} on checkout"},
        "startsAt": starts_at,
        "generatorURL": "http://prometheus.test/graph",
    }
    if ends_at is not None:
        body["endsAt"] = ends_at
    return body


def only_incident(bridge: Bridge) -> dict[str, Any] | None:
    """The detailed incident when there is exactly one; fails when there are more."""
    listed = bridge.incidents()
    assert len(listed) <= 1, f"expected one incident, got {[i['key'] for i in listed]}"
    return bridge.incident(listed[0]["id"]) if listed else None


def wait_incident(bridge: Bridge, what: str, check: Any) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        incident = only_incident(bridge)
        return incident if incident is not None and check(incident) else None

    found: dict[str, Any] = wait_for(what, probe, TIMEOUT, interval=0.2)
    return found


def alert_states(incident: dict[str, Any]) -> dict[str, str]:
    return {a["labels"]["instance"]: a["status"] for a in incident["alerts"]}


def fire_then_resolve(bridge: Bridge, post: Any, alertname: str) -> dict[str, Any]:
    """Fire web-1 and web-2 of one group, resolve web-1, then web-2; return the final incident."""
    started = now_rfc3339()
    post([alert(alertname, "web-1", started), alert(alertname, "web-2", started)])
    incident = wait_incident(
        bridge, "one triggered incident with two alerts", lambda i: len(i["alerts"]) == 2
    )
    assert incident["status"] == "triggered"
    assert alert_states(incident) == {"web-1": "firing", "web-2": "firing"}
    assert incident["alert_count"] == 2
    assert incident["severity"] == "sev1"

    post([alert(alertname, "web-1", started, now_rfc3339())])
    incident = wait_incident(
        bridge, "web-1 resolved", lambda i: alert_states(i)["web-1"] == "resolved"
    )
    assert incident["status"] == "triggered", "one alert still fires"
    assert alert_states(incident) == {"web-1": "resolved", "web-2": "firing"}

    post([alert(alertname, "web-2", started, now_rfc3339())])
    incident = wait_incident(bridge, "the incident mitigated", lambda i: i["status"] == "mitigated")
    assert alert_states(incident) == {"web-1": "resolved", "web-2": "resolved"}
    assert incident["mitigated_at"] is not None
    return incident


def assert_timeline(incident: dict[str, Any]) -> None:
    # Mitigated, its follow-up opens (docs/followup.md): what the alerts did is the rest.
    timeline = [e for e in incident["timeline"] if e["kind"] != "followup_opened"]
    kinds = [e["kind"] for e in timeline]
    assert kinds == [
        "opened",
        "alert_fired",
        "alert_fired",
        "alert_resolved",
        "alert_resolved",
        "status_changed",
    ], kinds
    by_fp = {a["fingerprint"]: a["labels"]["instance"] for a in incident["alerts"]}
    resolved = [by_fp[e["data"]["fingerprint"]] for e in timeline if e["kind"] == "alert_resolved"]
    assert resolved == ["web-1", "web-2"], "resolves are recorded in the order they happened"
    assert timeline[-1]["data"] == {"from": "triggered", "to": "mitigated"}
    times = [e["time"] for e in timeline]
    assert times == sorted(times), "timeline times never go backwards"
    ids = [e["id"] for e in timeline]
    assert ids == sorted(ids)


@BOTH_BACKENDS
def test_alertmanager_group_becomes_one_incident_then_mitigated(
    alertmanager_binary: str, bridge: Bridge, tmp_path: Path
) -> None:
    config = alertmanager_config(bridge.url, bridge.token)
    with running_alertmanagers(tmp_path, config, binary=alertmanager_binary) as [am]:
        incident = fire_then_resolve(
            bridge, am.post_alerts, f"IntegrationSingle{uuid.uuid4().hex[:6]}"
        )
    assert_timeline(incident)
    assert incident["key"].endswith('service="checkout"}'), incident["key"]
    metrics = bridge.metrics()
    # Alertmanager's own bearer credentials were accepted, and it never had to retry.
    assert metric_value(metrics, "incident_bridge_webhook_requests_total", code="200") >= 3
    assert metric_value(metrics, "incident_bridge_webhook_requests_total", code="401") == 0
    assert metric_value(metrics, "incident_bridge_incidents_opened_total", severity="sev1") == 1
    assert metric_value(metrics, "incident_bridge_alerts_received_total", status="resolved") >= 2


def test_alertmanager_rejected_without_the_token(
    alertmanager_binary: str, bridge: Bridge, tmp_path: Path
) -> None:
    """A receiver configured with a wrong token gets 401s and opens nothing."""
    config = alertmanager_config(bridge.url, "not-the-token")
    with running_alertmanagers(tmp_path, config, binary=alertmanager_binary) as [am]:
        am.post_alerts([alert("IntegrationWrongToken", "web-1", now_rfc3339())])
        wait_for(
            "Alertmanager's request to be refused",
            lambda: metric_value(
                bridge.metrics(), "incident_bridge_webhook_requests_total", code="401"
            ),
            TIMEOUT,
            interval=0.2,
        )
    assert bridge.incidents() == []


@BOTH_BACKENDS
def test_alertmanager_basic_auth_and_max_alerts_truncation(
    alertmanager_binary: str, tmp_path: Path, bridge_db: str | None
) -> None:
    """Basic auth as Alertmanager sends it; `max_alerts: 2` of three alerts is noted on the incident."""
    password_file = tmp_path / "basic-password"
    password_file.write_text("pa55-w0rd\n")
    args = ["--webhook-basic-user", "alertmanager", "--webhook-basic-password-file"]
    with running_bridge(
        tmp_path / "bridge", token=None, args=[*args, str(password_file)], database_url=bridge_db
    ) as bridge:
        config = alertmanager_config(
            bridge.url, None, basic_auth=("alertmanager", "pa55-w0rd"), max_alerts=2
        )
        with running_alertmanagers(tmp_path, config, binary=alertmanager_binary) as [am]:
            started = now_rfc3339()
            name = f"IntegrationTruncated{uuid.uuid4().hex[:6]}"
            am.post_alerts([alert(name, f"web-{n}", started) for n in (1, 2, 3)])
            incident = wait_incident(
                bridge, "a triggered incident noting the truncated alert", lambda i: i["alerts"]
            )
        assert incident["status"] == "triggered"
        assert incident["alert_count"] == 2, "Alertmanager sent two of the three"
        assert incident["truncated_alerts"] == 1
        kinds = [e["kind"] for e in incident["timeline"]]
        assert kinds.count("truncated_alerts") == 1, kinds
        metrics = bridge.metrics()
        assert metric_value(metrics, "incident_bridge_webhook_requests_total", code="401") == 0


@BOTH_BACKENDS
def test_alertmanager_ha_pair_gives_one_incident_without_duplicate_events(
    alertmanager_binary: str, bridge: Bridge, tmp_path: Path
) -> None:
    """Two clustered peers get every alert (as from two Prometheus servers) and both may notify."""
    config = alertmanager_config(bridge.url, bridge.token)
    with running_alertmanagers(tmp_path, config, peers=2, binary=alertmanager_binary) as peers:

        def post_to_both(alerts: list[dict[str, Any]]) -> None:
            for am in peers:
                am.post_alerts(alerts)

        incident = fire_then_resolve(bridge, post_to_both, f"IntegrationHA{uuid.uuid4().hex[:6]}")
    assert_timeline(incident)
    per_alert = Counter((e["kind"], e["data"].get("fingerprint")) for e in incident["timeline"])
    assert all(n == 1 for n in per_alert.values()), per_alert
    assert len(bridge.incidents()) == 1
    metrics = bridge.metrics()
    assert metric_value(metrics, "incident_bridge_webhook_requests_total", code="200") >= 3
    assert metric_value(metrics, "incident_bridge_incidents_opened_total") == 1


PROMETHEUS_RULES = """\
groups:
  - name: incident-bridge-e2e
    interval: 1s
    rules:
      - alert: E2EAlwaysFiring
        expr: vector(1)
        labels:
          severity: warning
          service: e2e
        annotations:
          summary: always firing
"""


def test_prometheus_to_alertmanager_to_bridge(
    alertmanager_binary: str, prometheus_binary: str, bridge: Bridge, tmp_path: Path
) -> None:
    """The whole chain: a rule fires in the real Prometheus, Alertmanager groups and delivers."""
    config = alertmanager_config(bridge.url, bridge.token)
    with (
        running_alertmanagers(tmp_path, config, binary=alertmanager_binary) as [am],
        running_prometheus(
            tmp_path / "prometheus", am.url, PROMETHEUS_RULES, binary=prometheus_binary
        ) as prometheus,
    ):
        incident = wait_incident(
            bridge, "an incident from Prometheus' alert", lambda i: i["alerts"]
        )
    assert incident["status"] == "triggered"
    assert incident["severity"] == "sev3"
    [fired] = incident["alerts"]
    assert fired["labels"]["alertname"] == "E2EAlwaysFiring"
    assert fired["annotations"] == {"summary": "always firing"}
    assert fired["generator_url"].startswith(prometheus + "/graph")
    assert incident["started_at"] is not None


def test_prometheus_rules_file_is_valid(promtool_binary: str, tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(PROMETHEUS_RULES)
    result = subprocess.run(
        [promtool_binary, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_alertmanager_config_is_valid(amtool_binary: str) -> None:
    """The snippet the README links is a config Alertmanager 0.25 accepts."""
    assert EXAMPLE_CONFIG.exists(), EXAMPLE_CONFIG
    result = subprocess.run(
        [amtool_binary, "check-config", str(EXAMPLE_CONFIG)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    text = EXAMPLE_CONFIG.read_text()
    assert "/api/v1/alerts" in text
    assert "credentials" in text


def test_generated_alertmanager_config_is_valid(amtool_binary: str, tmp_path: Path) -> None:
    """The configs these tests start Alertmanager with are valid too (no silent misconfig)."""
    path = tmp_path / "alertmanager.yml"
    path.write_text(alertmanager_config("http://127.0.0.1:9096", "token"))
    result = subprocess.run(
        [amtool_binary, "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@BOTH_BACKENDS
def test_bridge_ready_and_healthy(bridge: Bridge) -> None:
    for path in ("/-/healthy", "/-/ready"):
        assert http("GET", bridge.url + path).status == 200
