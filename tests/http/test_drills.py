"""Drills through the API, on both backends: a drill fired into the bridge opens an incident
that is a drill everywhere (stored, titled DRILL:, stakeholders left out unless asked for),
--auto walks the four stages through the actions people use, and the drill's report says what
was delivered, each stage's time against the severity's target and what was skipped, and is
written into the knowledge base. Bad input is a 400 naming the field, with nothing written."""

from __future__ import annotations

import textwrap
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bridge.app import create_app
from bridge.config import Settings
from bridge.runtime import rules_runtime
from bridge.service.drills import fire_scheduled
from bridge.targets.base import TargetDeps
from tests.conftest import BOTH_BACKENDS, WRITE, app_state, rows, service_db
from tests.integration import prometheus as prometheus_fixtures
from tests.integration.prometheus import PrometheusWithExporter

pytestmark = BOTH_BACKENDS
shared_prometheus = prometheus_fixtures.shared_prometheus

RULES = """
targets:
  everyone: {type: console}
  payments-room: {type: console}
  payments-pager: {type: console}
rotations:
  payments:
    members:
      - {name: amara, handles: {slack: U1}}
route:
  tiers:
    general: [everyone]
  routes:
    - name: payments
      matchers: ['team="payments"']
      tiers:
        general: [everyone]
        incident: payments-room
        stakeholders: {targets: [payments-pager], min_severity: sev4}
      reminders:
        sev2: {update_every: 30m, acknowledge_within: 10m}
"""


@pytest.fixture
async def service(
    aiohttp_client: Any, tmp_path: Path, request: pytest.FixtureRequest, clock: Any
) -> AsyncIterator[tuple[Any, Any, Any]]:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(RULES))
    settings = Settings(
        **service_db(request, tmp_path, "drills"), rules=(path,), kb_dir=tmp_path / "kb"
    )
    state = app_state(settings, clock=clock, runtime=rules_runtime([path], TargetDeps()))
    client = await aiohttp_client(TestServer(create_app(state)))
    yield client, state, clock
    state.store.close()


async def post(client: Any, path: str, body: Any = None) -> tuple[int, Any]:
    resp = await client.post(path, json=body, headers=WRITE)
    return resp.status, await resp.json()


async def test_a_drill_is_a_drill_everywhere_and_leaves_stakeholders_out(
    service: tuple[Any, Any, Any],
) -> None:
    client, state, _ = service
    status, body = await post(client, "/api/v1/drills", {"route": "payments", "severity": "sev2"})
    assert status == 201, body
    (incident_id,) = body["incidents"]
    assert body["labels"]["drill"] == "true"
    resp = await client.get(f"/api/v1/incidents/{incident_id}", headers=WRITE)
    incident = await resp.json()
    assert incident["drill"] is True
    assert incident["title"].startswith("DRILL: ")
    assert incident["route"] == "payments" and incident["severity"] == "sev2"
    tiers = {
        t
        for (t,) in rows(state.store, "SELECT tier FROM outbox WHERE incident_id = ?", incident_id)
    }
    assert tiers == {"general", "incident"}  # the stakeholders left out
    # asked for: the stakeholders hear of it too
    status, body = await post(client, "/api/v1/drills", {"route": "payments", "stakeholders": True})
    assert status == 201, body
    (second,) = body["incidents"]
    targets = {
        t for (t,) in rows(state.store, "SELECT target FROM outbox WHERE incident_id = ?", second)
    }
    assert "payments-pager" in targets
    # found by its name, as the CLI finds a drill sent through Alertmanager
    resp = await client.get(f"/api/v1/drills?name={body['drill']}", headers=WRITE)
    assert (await resp.json())["incident"] == second


async def test_bad_drills_are_400_naming_the_field_with_nothing_written(
    service: tuple[Any, Any, Any],
) -> None:
    client, state, _ = service
    for bad, field in (
        ({"route": "nowhere"}, "route"),
        ({"severity": "sev9"}, "severity"),
        ({"stakeholders": "maybe"}, "stakeholders"),
        ({"colour": "red"}, "colour"),
    ):
        status, body = await post(client, "/api/v1/drills", bad)
        assert status == 400, (bad, body)
        assert body["field"] == field, body
    assert rows(state.store, "SELECT count(*) FROM incidents") == [(0,)]
    resp = await client.get("/api/v1/drills?name=x'", headers=WRITE)
    assert resp.status == 400 and (await resp.json())["field"] == "name"
    resp = await client.get("/api/v1/drills/1/report", headers=WRITE)
    assert resp.status == 404


async def test_auto_walks_the_four_stages_and_the_report_lands_in_the_kb(
    service: tuple[Any, Any, Any], tmp_path: Path
) -> None:
    client, state, _clock = service
    status, body = await post(
        client, "/api/v1/drills", {"route": "payments", "severity": "sev2", "auto": True}
    )
    assert status == 201, body
    (incident_id,) = body["incidents"]
    stages = {s["stage"]: s for s in body["auto"]}
    for stage in ("acknowledge", "commander", "note", "status update", "mitigate"):
        assert stages[stage]["ok"], stages[stage]
    assert stages["postmortem draft"]["ok"], stages["postmortem draft"]
    assert "follow-up checks" in stages, body["auto"]
    kinds = [
        k
        for (k,) in rows(
            state.store, "SELECT kind FROM timeline WHERE incident_id = ? ORDER BY id", incident_id
        )
    ]
    for kind in ("role_changed", "note", "status_update", "followup_opened", "postmortem_saved"):
        assert kind in kinds, kinds
    # the report: nothing skipped, every stage within its target (the injected clock stood)
    status, report = await post(client, f"/api/v1/drills/{incident_id}/report")
    assert status == 200, report
    assert report["skipped"] == [], report["skipped"]
    ack = next(s for s in report["stages"] if s["stage"] == "acknowledge")
    assert ack["target_s"] == 600 and ack["met"] is True
    assert {t["target"] for t in report["targets"]} >= {"everyone", "payments-room"}
    written = tmp_path / "kb" / report["knowledge_base"]["path"]
    text = written.read_text()
    assert text.startswith(f"# Drill report: incident {incident_id}")
    assert "| acknowledge |" in text


async def test_the_report_says_what_was_skipped(service: tuple[Any, Any, Any]) -> None:
    client, _state, clock = service
    _status, body = await post(client, "/api/v1/drills", {"route": "payments", "severity": "sev2"})
    (incident_id,) = body["incidents"]
    clock.advance(3600)  # an hour: past the ack target and the 30 min update cadence
    resp = await client.get(f"/api/v1/drills/{incident_id}/report", headers=WRITE)
    report = await resp.json()
    assert "no commander taken" in report["skipped"]
    assert "no status update within the cadence (30 min)" in report["skipped"]
    ack = next(s for s in report["stages"] if s["stage"] == "acknowledge")
    assert ack["seconds"] is None and ack["met"] is None


SCHEDULED = RULES.replace(
    "      reminders:\n",
    '      drills:\n        - {cron: "0 10 * * 1", severity: sev2, announce_before: 1h}\n'
    "      reminders:\n",
)


async def test_a_scheduled_drill_fires_once_across_two_ticks(
    aiohttp_client: Any, tmp_path: Path, request: pytest.FixtureRequest, clock: Any
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(SCHEDULED))
    settings = Settings(**service_db(request, tmp_path, "scheduled"), rules=(path,))
    state = app_state(settings, clock=clock, runtime=rules_runtime([path], TargetDeps()))
    try:
        monday_10 = int(datetime(2026, 12, 7, 10, 0, tzinfo=UTC).timestamp()) * 10**9
        clock.now = monday_10 - 30 * 60 * 10**9  # half an hour before: announced, not fired
        assert await fire_scheduled(state) == 0
        clock.now = monday_10 + 20 * 10**9
        assert await fire_scheduled(state) == 1
        clock.advance(15)  # the next tick, the same slot: nothing again
        assert await fire_scheduled(state) == 0
        found = rows(state.store, "SELECT route, severity, drill FROM incidents")
        assert found == [("payments", "sev2", 1)]
        runs = rows(state.store, "SELECT kind, slot FROM drill_runs ORDER BY kind")
        assert runs == [("announce", monday_10), ("fire", monday_10)]
        clock.now = monday_10 + 7 * 24 * 3600 * 10**9  # a week later: the next one
        assert await fire_scheduled(state) == 1
    finally:
        state.store.close()


async def test_a_drills_mttx_is_its_own_families_out_of_the_dashboard(
    service: tuple[Any, Any, Any],
) -> None:
    client, _state, clock = service
    status, body = await post(client, "/api/v1/drills", {"route": "payments", "severity": "sev2"})
    assert status == 201, body
    (incident_id,) = body["incidents"]
    clock.advance(90)
    status, body = await post(client, f"/api/v1/incidents/{incident_id}/acknowledge", {})
    assert status == 200, body
    text = await (await client.get("/metrics")).text()
    samples = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert samples['incident_bridge_drill_incidents_opened_total{severity="sev2"}'] == "1.0"
    assert (
        samples['incident_bridge_drill_time_to_acknowledge_seconds_count{severity="sev2"}'] == "1.0"
    )
    real = [
        float(v)
        for k, v in samples.items()
        if k.startswith(
            (
                "incident_bridge_incidents_opened_total{",
                "incident_bridge_time_to_acknowledge_seconds_count{",
            )
        )
    ]
    assert real and sum(real) == 0  # no real incident, and the drill is not one


def test_the_dashboard_and_recording_rules_read_the_real_families_only() -> None:
    """Drills are their own families: the shipped queries leave them out by reading the others."""
    root = Path(__file__).resolve().parents[2] / "helm" / "incident-bridge"
    for path in (root / "dashboards" / "incident-bridge.json", root / "prometheus" / "rules.yaml"):
        text = path.read_text()
        assert "incident_bridge_time_to_" in text and "incident_bridge_drill_" not in text, path


async def test_the_report_page(service: tuple[Any, Any, Any]) -> None:
    client, _state, clock = service
    _status, body = await post(client, "/api/v1/drills", {"route": "payments", "severity": "sev2"})
    (incident_id,) = body["incidents"]
    clock.advance(3600)
    resp = await client.get(f"/drills/{incident_id}", headers=WRITE)
    assert resp.status == 200, await resp.text()
    text = await resp.text()
    assert f"Drill report #{incident_id}" in text
    assert "no commander taken" in text and "<td>acknowledge</td><td>-</td><td>10 min</td>" in text
    missing = await client.get("/drills/999", headers=WRITE)
    assert missing.status == 404
    # the drill's incident page links its report
    page = await client.get(f"/incidents/{incident_id}", headers=WRITE)
    assert f'<a href="/drills/{incident_id}">its drill report</a>' in await page.text()


async def test_auto_acts_as_the_actor_given(service: tuple[Any, Any, Any]) -> None:
    client, state, _clock = service
    status, body = await post(
        client, "/api/v1/drills", {"route": "payments", "auto": True, "actor": "amara"}
    )
    assert status == 201, body
    (incident_id,) = body["incidents"]
    actors = {
        a
        for (a,) in rows(
            state.store,
            "SELECT actor FROM timeline WHERE incident_id = ? AND kind IN ('note', 'status_update')",
            incident_id,
        )
    }
    assert actors == {"amara"}
    # the stages of a drill already open, as the CLI walks one fired through Alertmanager
    status, body = await post(client, "/api/v1/drills", {"route": "payments"})
    (second,) = body["incidents"]
    status, walked = await post(client, f"/api/v1/drills/{second}/auto", {})
    assert status == 200 and walked["auto"][0] == {
        "stage": "acknowledge",
        "ok": True,
        "status": 200,
        "error": None,
    }
    status, _ = await post(client, "/api/v1/drills/999/auto", {})
    assert status == 404


CHECKED_RULES = RULES.replace(
    "      reminders:\n",
    """      follow_up:
        stabilization: 30m
        checks:
          - {name: errors_low, expr: 'drill_error_ratio{service="checkout"}', expect: "< 0.01"}
          - {name: latency_low, expr: 'drill_latency_seconds{service="checkout"}', expect: "< 1"}
      reminders:
""",
)


async def _auto_checks(
    aiohttp_client: Any, tmp_path: Path, request: pytest.FixtureRequest, clock: Any, url: str
) -> dict[str, Any]:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(CHECKED_RULES))
    settings = Settings(
        **service_db(request, tmp_path, "drills"),
        rules=(path,),
        kb_dir=tmp_path / "kb",
        prometheus_url=url,
    )
    state = app_state(settings, clock=clock, runtime=rules_runtime([path], TargetDeps()))
    try:
        client = await aiohttp_client(TestServer(create_app(state)))
        status, body = await post(client, "/api/v1/drills", {"route": "payments", "auto": True})
        assert status == 201, body
        (incident_id,) = body["incidents"]
        # only reported: the follow-up's validation still waits for its window
        assert rows(
            state.store, "SELECT validated_at FROM followups WHERE incident_id = ?", incident_id
        ) == [(None,)]
        return next(s for s in body["auto"] if s["stage"] == "follow-up checks")
    finally:
        state.store.close()


async def test_auto_runs_the_follow_ups_checks_at_once(
    aiohttp_client: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    clock: Any,
    shared_prometheus: PrometheusWithExporter,
) -> None:
    prom = shared_prometheus
    prom.exporter.set("drill_error_ratio", 0.001, service="checkout")
    prom.exporter.set("drill_latency_seconds", 4.5, service="checkout")
    prom.wait_for_value('drill_latency_seconds{service="checkout"}', 4.5)
    # the injected clock stands at the real now: Prometheus answers for that instant
    clock.now = time.time_ns()
    step = await _auto_checks(aiohttp_client, tmp_path, request, clock, prom.url)
    assert step["ok"] is False and step["checks"] == 2, step
    assert [(r["name"], r["passed"]) for r in step["results"]] == [
        ("errors_low", True),
        ("latency_low", False),
    ]
    assert step["error"] == "latency_low: 4.5 is not < 1"


async def test_auto_says_when_the_checks_cannot_run(
    aiohttp_client: Any, tmp_path: Path, request: pytest.FixtureRequest, clock: Any
) -> None:
    step = await _auto_checks(aiohttp_client, tmp_path, request, clock, "")
    assert step["ok"] is False
    assert [r["error"] for r in step["results"]] == [
        "not run: no Prometheus configured (--prometheus-url)"
    ] * 2
