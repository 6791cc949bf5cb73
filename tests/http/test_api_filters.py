"""The read API's filters: the natural ones work, and an unknown one is a 400 naming it
(a misspelt filter would otherwise list everything)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.core.secrets import Secret
from tests.conftest import BOTH_BACKENDS, MakeClient, fixture_body

# Each test's service runs on SQLite and on PostgreSQL (tests/conftest.py: service_db).
pytestmark = BOTH_BACKENDS

TOKEN = "filters-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _open(client: Any, group: str, team: str, service: str) -> None:
    body = fixture_body("ha-pair-single-delivery.json")
    body["groupKey"] = group
    body["commonLabels"] = {"team": team, "service": service}
    body["alerts"][0]["labels"] = {"alertname": group, "team": team, "service": service}
    body["alerts"][0]["fingerprint"] = ""  # computed from the labels
    resp = await client.post("/api/v1/alerts", data=json.dumps(body), headers=AUTH)
    assert resp.status == 200


@pytest.fixture
async def client(make_client: MakeClient) -> Any:
    client = await make_client(webhook_token=Secret(TOKEN))
    await _open(client, "g1", "payments", "checkout")
    await _open(client, "g2", "storage", "db")
    await _open(client, "g3", "payments", "ledger")
    return client


async def _titles(client: Any, query: str) -> list[str]:
    resp = await client.get("/api/v1/incidents?" + query)
    assert resp.status == 200, await resp.text()
    return sorted(i["key"] for i in (await resp.json())["incidents"])


async def test_team_service_route_filters(client: Any) -> None:
    assert await _titles(client, "team=payments") == ["g1", "g3"]
    assert await _titles(client, "team=payments&service=ledger") == ["g3"]
    assert await _titles(client, "service=db,ledger") == ["g2", "g3"]
    assert await _titles(client, "route=default") == ["g1", "g2", "g3"]
    assert await _titles(client, "team=nobody") == []


async def test_since_and_until_bound_the_opening_time(client: Any) -> None:
    listed = (await (await client.get("/api/v1/incidents")).json())["incidents"]
    opened = sorted(i["opened_at"] for i in listed)
    assert await _titles(client, f"since={opened[0]}") == ["g1", "g2", "g3"]
    assert await _titles(client, f"until={opened[0]}") == []
    assert len(await _titles(client, "since=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z")) == 3


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("teem=payments", "teem"),
        ("q=disk", "q"),
        ("since=yesterday", "since"),
        ("team=" + ",".join(["x"] * 51), "team"),
    ],
)
async def test_unknown_or_bad_filters_are_a_400_naming_them(
    client: Any, query: str, field: str
) -> None:
    resp = await client.get("/api/v1/incidents?" + query)
    assert resp.status == 400
    assert (await resp.json())["field"] == field


async def test_notifications_refuse_unknown_parameters_too(client: Any) -> None:
    resp = await client.get("/api/v1/notifications?target=x")
    assert resp.status == 400 and (await resp.json())["field"] == "target"
