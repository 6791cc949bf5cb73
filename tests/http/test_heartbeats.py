"""The dead man's switch through the running service, on an injected clock and each backend:
``POST /api/v1/heartbeats/{name}`` (a cron job's beat) and ``GET /api/v1/heartbeats``, a
Watchdog alert in a webhook as a beat (never an incident), the scheduler's step opening one
incident per lateness episode through the route's tiers and mitigating it when the heartbeat
returns, and the gauges."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.utils import floatToGoString

from bridge.service.heartbeats import check_heartbeats
from tests.conftest import T0, WRITE, Clock, RulesService

S = 10**9
NIGHTLY = "heartbeat:nightly-backup"
RULES = """
targets:
  room: {type: console}
  general: {type: console}
route:
  name: root
  tiers: {general: [general]}
  routes:
    - name: infra
      matchers: ['team="infra"']
      tiers: {incident: room}
heartbeats:
  nightly-backup:
    interval: 1h
    grace: 10m
    labels: {team: infra}
    severity: sev2
  watchdog:
    interval: 2m
    alertname: Watchdog
    labels: {env: prod}
"""


@pytest.fixture
async def service(
    tmp_path: Path,
    clock: Clock,
    aiohttp_client: Callable[..., Awaitable[Any]],
    db_settings: dict[str, Any],
) -> AsyncIterator[RulesService]:
    svc = RulesService(tmp_path, clock, aiohttp_client, RULES, db_settings)
    await svc.serve()
    yield svc
    await svc.close()


def _watchdog(env: str = "prod", *others: dict[str, str]) -> dict[str, Any]:
    alerts = [{"alertname": "Watchdog", "env": env}, *others]
    return {
        "version": "4",
        "groupKey": '{}:{alertname="Watchdog"}',
        "status": "firing",
        "receiver": "bridge",
        "alerts": [
            {"status": "firing", "labels": labels, "startsAt": "2026-11-27T04:00:00Z"}
            for labels in alerts
        ],
    }


async def _steps(state: Any) -> dict[str, str | None]:
    """What one tick of the scheduler's heartbeat step did, by heartbeat."""
    return {v.name: v.step for v in await check_heartbeats(state)}


async def _list(svc: RulesService) -> dict[str, Any]:
    assert svc.client is not None
    resp = await svc.client.get("/api/v1/heartbeats", headers=WRITE)
    assert resp.status == 200
    return {h["name"]: h for h in (await resp.json())["heartbeats"]}


async def test_a_cron_jobs_heartbeat_late_opens_one_incident_and_its_beat_mitigates_it(
    service: RulesService, clock: Clock
) -> None:
    state, client = service.state, service.client
    assert state is not None and client is not None
    await check_heartbeats(state)  # first sight: the service starts counting now
    clock.advance(70 * 60)  # interval + grace exactly: not late yet (the watchdog is)
    assert await _steps(state) == {"watchdog": "raise"}
    assert service.rows("SELECT count(*) FROM incidents WHERE key = ?", NIGHTLY) == [(0,)]
    clock.advance(1)
    assert await _steps(state) == {"nightly-backup": "raise"}
    due = T0 + 70 * 60 * S
    rows = service.rows(
        "SELECT id, key, status, severity, route, started_at FROM incidents WHERE key = ?", NIGHTLY
    )
    assert [r[1:] for r in rows] == [
        ("heartbeat:nightly-backup", "triggered", "sev2", "infra", due)
    ]
    incident = rows[0][0]
    # the route's tiers announce it, and the timeline says the bridge raised it
    assert service.rows(
        "SELECT DISTINCT target FROM outbox WHERE incident_id = ? ORDER BY target", incident
    ) == [("general",), ("room",)]
    ((actor, text),) = service.rows(
        "SELECT actor, text FROM timeline WHERE incident_id = ? AND kind = 'alert_fired'",
        incident,
    )
    assert actor == "incident-bridge" and "a heartbeat is late" in text
    resp = await client.get(f"/api/v1/incidents/{incident}", headers=WRITE)
    source = (await resp.json())["source"]
    assert (source["source"], source["declared_by"]) == ("heartbeat", "incident-bridge")
    assert (await _list(service))["nightly-backup"]["state"] == "late"
    metrics = await (await client.get("/metrics")).text()
    assert 'incident_bridge_heartbeat_state{heartbeat="nightly-backup"} 1.0' in metrics
    assert 'incident_bridge_heartbeat_state{heartbeat="watchdog"} 1.0' in metrics

    # more ticks while it stays late: no second incident, no second entry
    for _ in range(3):
        clock.advance(60)
        assert await _steps(state) == {}
    assert service.rows("SELECT count(*) FROM incidents WHERE key = ?", NIGHTLY) == [(1,)]
    assert service.rows(
        "SELECT count(*) FROM timeline WHERE incident_id = ? AND kind = 'alert_fired'", incident
    ) == [(1,)]

    # the job beats: the next tick mitigates the incident, with a timeline entry
    clock.advance(60)
    resp = await client.post("/api/v1/heartbeats/nightly-backup", headers=WRITE)
    assert resp.status == 200
    body = await resp.json()
    assert body["state"] == "ok" and body["last_seen"] == "2026-11-27T05:20:41Z"
    assert await _steps(state) == {"nightly-backup": "clear"}
    assert service.rows("SELECT status FROM incidents WHERE id = ?", incident) == [("mitigated",)]
    assert service.rows(
        "SELECT actor FROM timeline WHERE incident_id = ? AND kind = 'alert_resolved'", incident
    ) == [("incident-bridge",)]
    metrics = await (await client.get("/metrics")).text()
    assert 'incident_bridge_heartbeat_state{heartbeat="nightly-backup"} 0.0' in metrics
    last = (T0 + (70 * 60 + 1 + 4 * 60) * S) / 1e9
    assert (
        f'last_seen_timestamp_seconds{{heartbeat="nightly-backup"}} {floatToGoString(last)}'
        in metrics
    )
    assert 'last_seen_timestamp_seconds{heartbeat="watchdog"}' not in metrics  # never beaten
    assert await _steps(state) == {}  # back to ok: nothing more to do


async def test_a_watchdog_alert_is_a_beat_and_never_an_incident(
    service: RulesService, clock: Clock
) -> None:
    state, client = service.state, service.client
    assert state is not None and client is not None
    await check_heartbeats(state)
    clock.advance(100)
    other = {"alertname": "DiskFull", "team": "infra"}
    resp = await client.post("/api/v1/alerts", json=_watchdog("prod", other))
    assert resp.status == 200
    # the Watchdog beat; DiskFull, in the same webhook, opened its incident as ever
    assert service.rows("SELECT title FROM incidents") == [("DiskFull",)]
    seen = await _list(service)
    assert seen["watchdog"]["last_seen"] == "2026-11-27T04:08:20Z"
    assert seen["nightly-backup"]["last_seen"] is None
    # a Watchdog of other labels beats nothing, and is routed as any alert
    resp = await client.post("/api/v1/alerts", json=_watchdog("dev"))
    assert resp.status == 200
    assert (await _list(service))["watchdog"]["last_seen"] == "2026-11-27T04:08:20Z"
    clock.advance(120)  # 2 minutes after the beat, not more
    assert await _steps(state) == {}
    clock.advance(1)
    assert await _steps(state) == {"watchdog": "raise"}


async def test_ticks_racing_on_one_late_heartbeat_open_one_incident(
    service: RulesService, clock: Clock
) -> None:
    """Two ticks at once (a replica taking the scheduler over while the other finishes its
    tick): the same alert twice, one incident, one entry."""
    state = service.state
    assert state is not None
    await check_heartbeats(state)
    clock.advance(71 * 60)
    await asyncio.gather(*(check_heartbeats(state) for _ in range(3)))
    assert service.rows("SELECT count(*) FROM incidents WHERE key LIKE 'heartbeat:%'") == [(2,)]
    assert service.rows("SELECT count(*) FROM timeline WHERE kind = 'alert_fired'") == [(2,)]
    assert await _steps(state) == {}


async def test_bad_beats_are_refused_and_name_what_is_wrong(service: RulesService) -> None:
    client = service.client
    assert client is not None
    resp = await client.post("/api/v1/heartbeats/nightly-bakup", headers=WRITE)
    assert resp.status == 404
    body = await resp.json()
    assert body["field"] == "name"
    assert "unknown heartbeat 'nightly-bakup'" in body["error"]
    assert "nightly-backup, watchdog" in body["error"]
    resp = await client.post("/api/v1/heartbeats/nightly-backup")  # no token: a write needs one
    assert resp.status == 401
    assert service.rows("SELECT count(*) FROM heartbeats WHERE last_seen IS NOT NULL") == [(0,)]
