"""Alertmanager drops a group for good on a 4xx: a valid webhook is never refused, and every
5xx is JSON and counted."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bridge.core.alertmanager import WebhookPayload
from bridge.core.policy import Decision
from bridge.core.secrets import Secret
from bridge.core.timeutil import MAX_NS, MIN_NS, parse_rfc3339
from bridge.service import AppState, load_runtime
from bridge.targets.base import TargetDeps
from tests.conftest import MakeClient, fixture_body

TOKEN = "never-refuse-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(make_client: MakeClient) -> Any:
    return await make_client(webhook_token=Secret(TOKEN))


def webhook(**alert_fields: str) -> bytes:
    body = fixture_body("firing-group-bearer.json")
    body["alerts"] = [{**body["alerts"][0], **alert_fields}]
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2300-01-01T00:00:00Z", MAX_NS), ("1500-06-01T00:00:00Z", MIN_NS)],
)
def test_times_beyond_64_bits_are_clamped_when_asked(text: str, expected: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_rfc3339(text)
    assert parse_rfc3339(text, clamp=True) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"startsAt": "2300-01-01T00:00:00Z"},
        {"startsAt": "1500-06-01T00:00:00Z"},
        {"status": "resolved", "endsAt": "9999-12-31T23:59:59Z"},
    ],
    ids=["far future start", "distant past start", "far future end"],
)
async def test_times_alertmanager_accepts_are_stored_and_noted(
    client: Any, fields: dict[str, str]
) -> None:
    if fields.get("status") == "resolved":  # the resolve of an alert that fired before
        assert (await client.post("/api/v1/alerts", data=webhook(), headers=AUTH)).status == 200
    resp = await client.post("/api/v1/alerts", data=webhook(**fields), headers=AUTH)
    assert resp.status == 200, await resp.text()
    (touched,) = (await resp.json())["incidents"]
    incident = await (await client.get(f"/api/v1/incidents/{touched['id']}")).json()
    kinds = [e["kind"] for e in incident["timeline"]]
    assert "alert_time_clamped" in kinds
    assert len(incident["alerts"]) == 1


async def test_truncated_alerts_beyond_64_bits_is_a_400_naming_the_field(client: Any) -> None:
    body = fixture_body("firing-group-bearer.json")
    body["truncatedAlerts"] = 2**63
    resp = await client.post("/api/v1/alerts", data=json.dumps(body), headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["field"] == "truncatedAlerts"
    body["truncatedAlerts"] = 2**63 - 1
    resp = await client.post("/api/v1/alerts", data=json.dumps(body), headers=AUTH)
    assert resp.status == 200


class BrokenPolicy:
    """A policy with a bug: the receiver must still answer JSON and count it."""

    def evaluate(self, payload: WebhookPayload, now_ns: int) -> list[Decision]:
        raise ZeroDivisionError("division by zero")


async def test_a_bug_is_a_json_500_and_counted(client: Any) -> None:
    state: AppState = client.server.app[AppState.KEY]
    state.runtime = replace(state.runtime, policy=BrokenPolicy())
    resp = await client.post("/api/v1/alerts", data=webhook(), headers=AUTH)
    assert resp.status == 500
    assert await resp.json() == {"error": "internal error"}
    metrics = await (await client.get("/metrics")).text()
    assert 'incident_bridge_webhook_requests_total{code="500"} 1.0' in metrics


async def test_a_title_that_cannot_render_keeps_the_group_and_says_so(
    make_client: MakeClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole group is stored with a fallback title; the log names route and group key, a
    metric counts it, the timeline says it once (not again for Alertmanager's repeats)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "targets:\n  out: {type: console}\n"
        "route:\n  name: root\n  tiers: {general: [out]}\n"
        "  title: '{{ labels.alertname|float / 0 }}'\n"
    )
    client: Any = await make_client(webhook_token=Secret(TOKEN), rules=(rules,))
    state: AppState = client.server.app[AppState.KEY]
    state.runtime = load_runtime(state.settings, TargetDeps())
    body = fixture_body("firing-group-bearer.json")
    with caplog.at_level(logging.WARNING):
        for _ in range(2):  # a repeat changes nothing
            resp = await client.post("/api/v1/alerts", data=json.dumps(body), headers=AUTH)
            assert resp.status == 200
    (touched,) = (await resp.json())["incidents"]
    incident = await (await client.get(f"/api/v1/incidents/{touched['id']}")).json()
    assert len(incident["alerts"]) == len(body["alerts"])
    assert incident["title"] == body["commonAnnotations"]["summary"]
    kinds = [e["kind"] for e in incident["timeline"]]
    assert kinds.count("rule_render_failed") == 1
    assert any(
        "route root" in r.getMessage() and body["groupKey"] in r.getMessage()
        for r in caplog.records
    )
    metrics = await (await client.get("/metrics")).text()
    assert 'incident_bridge_rule_render_errors_total{route="root"} 2.0' in metrics
