"""The kept insights aggregates over the running service: the scheduler's tick refreshes what
the webhooks marked (in chunks), so that an answer's own refresh has little left to do."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest

from bridge.service import AppState
from bridge.service import insights as service_insights
from bridge.service.scheduler import ReminderScheduler
from tests.conftest import BOTH_BACKENDS, WRITE, MakeClient, fixture_bytes

pytestmark = BOTH_BACKENDS


async def _marked(state: AppState) -> int:
    def count(conn: Any) -> int:
        return int(conn.execute("SELECT count(*) FROM insight_dirty").fetchone()[0])

    return await state.store.read(count)


async def _incidents(client: Any, n: int) -> None:
    for k in range(n):
        body = json.loads(fixture_bytes("firing-group-bearer.json"))
        body["groupKey"] = f"group-{k}"
        for alert in body["alerts"]:
            alert["labels"]["instance"] = f"host-{k}"
        assert (await client.post("/api/v1/alerts", json=body)).status == 200


async def test_the_refresh_step_takes_every_marked_incident_in_chunks(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client: Any = await make_client()
    state: AppState = client.server.app[AppState.KEY]
    await _incidents(client, 5)
    assert await _marked(state) == 5
    chunks: list[int | None] = []
    refresh = state.store.insights.refresh

    async def counted(limit: int | None = None) -> int:
        chunks.append(limit)
        return await refresh(limit=limit)

    monkeypatch.setattr(state.store.insights, "refresh", counted)
    monkeypatch.setattr(service_insights, "REFRESH_CHUNK", 2)
    assert await service_insights.refresh_aggregates(state) == 5
    assert chunks == [2, 2, 2] and await _marked(state) == 0
    assert await service_insights.refresh_aggregates(state) == 0


async def test_a_scheduler_tick_refreshes_the_aggregates(make_client: MakeClient) -> None:
    client: Any = await make_client()
    state: AppState = client.server.app[AppState.KEY]
    await _incidents(client, 2)
    assert await _marked(state) == 2
    scheduler = ReminderScheduler(state, every_s=3600)
    task = asyncio.create_task(scheduler._run())
    try:
        for _ in range(200):
            if await _marked(state) == 0:
                break
            await asyncio.sleep(0.02)
        assert await _marked(state) == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_tick_refreshes_within_its_budget_and_leaves_the_rest(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client: Any = await make_client()
    state: AppState = client.server.app[AppState.KEY]
    await _incidents(client, 5)
    monkeypatch.setattr(service_insights, "REFRESH_CHUNK", 2)
    monkeypatch.setattr(service_insights, "REFRESH_BUDGET_S", 0.0)
    # a storm's tick: one chunk, the webhooks come first; the rest at the next tick
    assert await service_insights.refresh_aggregates(state) == 2
    assert await _marked(state) == 3
    # an answer refreshes all that is marked before it reads
    resp = await client.get("/api/v1/insights", headers=WRITE)
    assert resp.status == 200, await resp.text()
    assert await _marked(state) == 0
