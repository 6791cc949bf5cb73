"""Declaring an incident through the API: routed by the rules (labels, team, route), announced
in the route's tiers, its source shown; bad input a 400 naming the field with nothing written;
link and merge as actions (Idempotency-Key, timeline entries)."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bridge.app import create_app
from bridge.config import Settings
from bridge.runtime import rules_runtime
from bridge.targets.base import TargetDeps
from tests.conftest import BOTH_BACKENDS, WRITE, app_state, fixture_body, rows, service_db

pytestmark = BOTH_BACKENDS

RULES = """
targets:
  everyone: {type: console}
  payments-room: {type: console}
  payments-pager: {type: console}
rotations:
  payments:
    members:
      - {name: amara, handles: {slack: U1}}
      - {name: bjorn, handles: {slack: U2}}
route:
  tiers:
    general: [everyone]
  routes:
    - name: payments
      matchers: ['team="payments"']
      tiers:
        general: [everyone]
        incident: payments-room
        stakeholders: {targets: [payments-pager], min_severity: sev2}
      roles:
        commander: {rotation: payments}
      postmortem: {sev2: required}
    - name: storage
      matchers: ['service="db"']
"""


@pytest.fixture
async def service(
    aiohttp_client: Any, tmp_path: Path, request: pytest.FixtureRequest, clock: Any
) -> AsyncIterator[tuple[Any, Any]]:

    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(RULES))
    settings = Settings(**service_db(request, tmp_path, "declare"), rules=(path,))
    state = app_state(settings, clock=clock, runtime=rules_runtime([path], TargetDeps()))
    server = TestServer(create_app(state))
    client = await aiohttp_client(server)
    yield client, state.store
    state.store.close()


async def post(client: Any, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    resp = await client.post(path, json=body, headers={**WRITE, **headers})
    return resp.status, await resp.json()


async def test_declared_by_team_is_routed_announced_and_shows_its_source(
    service: tuple[Any, Any],
) -> None:
    client, store = service
    resp = await client.post(
        "/api/v1/incidents",
        json={
            "title": "Checkout is slow",
            "severity": "sev2",
            "team": "payments",
            "description": "p99 at 4 s",
            "labels": {"service": "checkout"},
            "actor": "alice",
        },
        headers=WRITE,
    )
    body = await resp.json()
    assert resp.status == 201, body
    incident = body["incident"]
    assert resp.headers["Location"] == f"/api/v1/incidents/{incident['id']}"
    assert (incident["route"], incident["team"], incident["service"]) == (
        "payments",
        "payments",
        "checkout",
    )
    assert incident["roles"] == {"commander": ["amara"]}  # the rotation's holder now
    assert incident["people"] == {"amara": {"slack": "U1"}}
    assert incident["source"]["source"] == "declared"
    assert incident["source"]["declared_by"] == "alice"
    assert incident["key"].startswith("declared:")
    # the route's tiers: general, the dedicated channel and (sev2) the stakeholders
    targets = {
        t
        for (t,) in rows(
            store,
            "SELECT target FROM outbox WHERE incident_id = ? AND event = 'opened'",
            incident["id"],
        )
    }
    assert targets == {"everyone", "payments-room", "payments-pager"}
    # the same postmortem policy as the route's alerts: a close needs it
    base = f"/api/v1/incidents/{incident['id']}"
    assert (await post(client, f"{base}/resolve"))[0] == 200
    status, refused = await post(client, f"{base}/close")
    assert status == 409 and "postmortem is required" in refused["error"]
    # GET shows the source too
    shown = await (await client.get(base, headers=WRITE)).json()
    assert shown["source"]["description"] == "p99 at 4 s"


async def test_declared_by_route_or_labels(service: tuple[Any, Any]) -> None:
    client, _ = service
    status, body = await post(
        client, "/api/v1/incidents", {"title": "x", "severity": "sev3", "route": "storage"}
    )
    assert status == 201 and body["incident"]["route"] == "storage"
    status, body = await post(
        client,
        "/api/v1/incidents",
        {"title": "x", "severity": "sev4", "labels": {"service": "db"}},
    )
    assert status == 201 and body["incident"]["route"] == "storage"
    status, body = await post(client, "/api/v1/incidents", {"title": "x", "severity": "sev4"})
    assert status == 201 and body["incident"]["route"] == "root"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "x", "severity": "sev2", "route": "nope"}, "route"),
        ({"title": "x", "severity": "sev9", "team": "payments"}, "severity"),
        ({"title": "x", "severity": "sev2", "commander": "zed"}, "commander"),
        ({"title": " ", "severity": "sev2"}, "title"),
        ({"severity": "sev2"}, "title"),
        ({"title": "x", "severity": "sev2", "labels": {"bad-name": "v"}}, "labels"),
        ({"title": "x", "severity": "sev2", "labels": {"a": 1}}, "labels.a"),
        ({"title": "x", "severity": "sev2", "colour": "red"}, "colour"),
    ],
)
async def test_bad_declarations_name_the_field_and_write_nothing(
    service: tuple[Any, Any], body: dict[str, Any], field: str
) -> None:
    client, store = service
    status, answer = await post(client, "/api/v1/incidents", body)
    assert (status, answer["field"]) == (400, field), answer
    assert rows(store, "SELECT count(*) FROM incidents")[0][0] == 0


async def test_a_known_commander_and_the_idempotency_key(service: tuple[Any, Any]) -> None:
    client, store = service
    body = {"title": "x", "severity": "sev2", "team": "payments", "commander": "bjorn"}
    status, first = await post(client, "/api/v1/incidents", body, **{"Idempotency-Key": "k1"})
    assert status == 201 and first["incident"]["roles"] == {"commander": ["bjorn"]}
    resp = await client.post(
        "/api/v1/incidents", json=body, headers={**WRITE, "Idempotency-Key": "k1"}
    )
    assert resp.status == 201 and resp.headers["Idempotent-Replayed"] == "true"
    assert (await resp.json()) == first
    assert rows(store, "SELECT count(*) FROM incidents")[0][0] == 1
    status, _ = await post(
        client, "/api/v1/incidents", {**body, "title": "y"}, **{"Idempotency-Key": "k1"}
    )
    assert status == 422


async def test_declaring_needs_a_write_token(service: tuple[Any, Any]) -> None:
    client, _ = service
    resp = await client.post("/api/v1/incidents", json={"title": "x", "severity": "sev2"})
    assert resp.status == 401


async def test_link_and_merge_through_the_api(service: tuple[Any, Any]) -> None:
    client, store = service
    _, declared = await post(
        client, "/api/v1/incidents", {"title": "Checkout", "severity": "sev2", "team": "payments"}
    )
    survivor = declared["incident"]["id"]
    hook = fixture_body("firing-group-bearer.json")
    resp = await client.post("/api/v1/alerts", json=hook, headers=WRITE)
    duplicate = (await resp.json())["incidents"][0]["id"]
    assert duplicate != survivor

    status, merged = await post(
        client,
        f"/api/v1/incidents/{duplicate}/merge",
        {"into": survivor, "reason": "same outage"},
        **{"Idempotency-Key": "m1"},
    )
    assert status == 200 and merged["incident"]["status"] == "closed", merged
    assert merged["into"]["id"] == survivor
    assert [e["kind"] for e in merged["events"]] == ["merged", "merged_in"]
    status, again = await post(
        client,
        f"/api/v1/incidents/{duplicate}/merge",
        {"into": survivor, "reason": "same outage"},
        **{"Idempotency-Key": "m1"},
    )
    assert status == 200 and again == merged
    status, bad = await post(client, f"/api/v1/incidents/{survivor}/merge", {"into": "x"})
    assert (status, bad["field"]) == (400, "into")

    status, linked = await post(
        client, f"/api/v1/incidents/{survivor}/link", {"group_key": '{}:{alertname="Other"}'}
    )
    assert status == 200 and linked["events"][0]["kind"] == "linked"
    status, bad = await post(client, f"/api/v1/incidents/{survivor}/link", {})
    assert (status, bad["field"]) == (400, "group_key")
    status, _ = await post(client, "/api/v1/incidents/999/link", {"group_key": "g"})
    assert status == 404
    # the duplicate's group now updates the survivor
    hook["alerts"][0]["startsAt"] = "2026-11-27T04:05:00Z"
    resp = await client.post("/api/v1/alerts", json=hook, headers=WRITE)
    assert [i["id"] for i in (await resp.json())["incidents"]] == [survivor]
    assert rows(store, "SELECT count(*) FROM incidents")[0][0] == 2
