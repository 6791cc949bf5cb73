"""Search and "seen this before" in the running service: webhooks and people's notes go in
through the API, the indexer loop (started as ``run`` starts it) indexes them behind the
writes, the search API finds a note by a word of it, and a second incident of the same alert
on the same service names the first in its dedicated channel, with the link to its page."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.indexer import Indexer
from tests.conftest import WRITE, Clock, RulesService, fixture_body

RULES = """
targets:
  room: {type: console}
  general: {type: console}
route:
  tiers:
    general: [general]
    incident: room
"""
BASE = "https://bridge.example"


class Service(RulesService):
    """The store, rules, outbox worker, indexer and HTTP app as ``run`` wires them."""

    def __init__(self, tmp_path: Path, clock: Clock, make_client: Any, db: dict[str, Any]) -> None:
        super().__init__(tmp_path, clock, make_client, RULES, db)
        self.indexer: Indexer | None = None

    async def start(self) -> None:
        state = await self.serve()
        self.indexer = Indexer(state, incident_url=lambda i: f"{BASE}/incidents/{i}", poll_s=0.02)
        self.indexer.start()

    async def stop(self) -> None:
        assert self.indexer
        await self.indexer.stop()
        await self.close()


async def until(what: str, check: Callable[[], Awaitable[Any]], within_s: float = 10.0) -> Any:
    deadline = time.monotonic() + within_s
    while not (found := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return found


@pytest.fixture
async def service(
    tmp_path: Path,
    clock: Clock,
    aiohttp_client: Callable[..., Awaitable[Any]],
    db_settings: dict[str, Any],
) -> AsyncIterator[Service]:
    """The service on each backend (``db_settings``)."""
    svc = Service(tmp_path, clock, aiohttp_client, db_settings)
    await svc.start()
    yield svc
    await svc.stop()


async def test_a_note_is_searchable_and_a_second_incident_links_the_first(
    service: Service, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    client = service.client
    assert client is not None
    body = fixture_body("firing-group-bearer.json")  # HighErrorRate on checkout
    resp = await client.post("/api/v1/alerts", json=body)
    assert resp.status == 200
    first = (await resp.json())["incidents"][0]["id"]
    note = await client.post(
        f"/api/v1/incidents/{first}/notes",
        json={"text": "the quokka cache was cold after the deploy; warmed it by hand"},
        headers=WRITE,
    )
    assert note.status == 200
    note_id = (await note.json())["events"][0]["id"]

    async def found() -> list[dict[str, Any]]:
        resp = await client.get("/api/v1/search", params={"q": "quokka"})
        assert resp.status == 200
        results: list[dict[str, Any]] = (await resp.json())["results"]
        return results

    (hit,) = await until("the note in the index", found)
    assert (hit["incident_id"], hit["kind"], hit["ref"]) == (first, "note", str(note_id))
    assert "«quokka»" in hit["snippet"]

    resolve = await client.post(f"/api/v1/incidents/{first}/resolve", json={}, headers=WRITE)
    assert resolve.status == 200
    # Hours later, the same alert on the same service in another Alertmanager group.
    clock.advance(3 * 3600)
    again = copy.deepcopy(body)
    again["groupKey"] = '{}:{alertname="HighErrorRate", service="checkout", cluster="b"}'
    for alert in again["alerts"]:
        alert["labels"]["cluster"] = "b"
        del alert["fingerprint"]
    resp = await client.post("/api/v1/alerts", json=again)
    assert resp.status == 200
    second = (await resp.json())["incidents"][0]["id"]
    assert second != first

    async def linked() -> list[tuple[Any, ...]]:
        return service.rows(
            "SELECT id, text, data FROM timeline WHERE incident_id = ? AND kind = ?",
            second,
            "similar_incidents",
        )

    ((entry_id, text, data),) = await until("the similar incidents entry", linked)
    assert text.startswith(f"Seen before: #{first} 5xx ratio above 5% (resolved, opened ")
    assert f"{BASE}/incidents/{first}" in text
    (similar,) = json.loads(data)["similar"]
    assert similar["id"] == first and similar["reason"] == "same_alert_and_service"
    assert similar["url"] == f"{BASE}/incidents/{first}"
    # Its dedicated channel hears of it, and only it (a timeline event, no milestone).
    rows = service.rows(
        "SELECT tier, target, event FROM outbox WHERE event_id = ? ORDER BY id", entry_id
    )
    assert rows == [("incident", "room", "timeline")]

    async def delivered() -> bool:
        state = service.rows("SELECT state FROM outbox WHERE event_id = ?", entry_id)
        return state == [("delivered",)]

    await until("the message to the room", delivered)
    assert f"Seen before: #{first}" in capsys.readouterr().out
    # The entry is on the incident as the API shows it.
    detail = await (await client.get(f"/api/v1/incidents/{second}")).json()
    assert [e["kind"] for e in detail["timeline"]].count("similar_incidents") == 1
    # And the first incident names nothing: nothing came before it.
    assert service.rows(
        "SELECT count(*) FROM timeline WHERE incident_id = ? AND kind = 'similar_incidents'",
        first,
    ) == [(0,)]
