"""Hostile labels against the receiver: a valid webhook is never refused because of the rules,
its title is bounded, and rendering titles does not hold up the other webhooks."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fixture_body
from tests.test_reload import make

# timing bounds: run after the parallel run, alone (make test)
pytestmark = pytest.mark.serial

RULES = """\
targets:
  out: {type: console}
route:
  name: root
  group_by: [instance]
  title: "%s"
  tiers: {general: [out]}
"""


def body(labels: list[dict[str, str]], annotations: dict[str, str] | None = None) -> bytes:
    payload = fixture_body("ha-pair-single-delivery.json")
    template = payload["alerts"][0]
    payload["alerts"] = [
        {
            **template,
            "labels": {"alertname": "Hostile", **one},
            "annotations": annotations or {},
            "fingerprint": f"{i:016x}",
        }
        for i, one in enumerate(labels)
    ]
    payload["groupKey"] = f"hostile-{time.monotonic_ns()}"
    return json.dumps(payload).encode()


async def client_with(aiohttp_client: Any, tmp_path: Path, title: str) -> Any:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES % title)
    client, _state = await make(aiohttp_client, tmp_path, rules)
    return client


async def test_a_title_a_label_sizes_is_a_fallback_not_a_refusal(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await client_with(aiohttp_client, tmp_path, "{{ 'x' * (labels.n|int) }}")
    started = time.perf_counter()
    resp = await client.post(
        "/api/v1/alerts", data=body([{"instance": "a", "n": "400000000"}], {"summary": "s" * 9999})
    )
    assert resp.status == 200, await resp.text()
    assert time.perf_counter() - started < 2.0
    incident = await (await client.get("/api/v1/incidents/1")).json()
    assert len(incident["title"]) == 500 and incident["title"].startswith("sss")
    metrics = await (await client.get("/metrics")).text()
    assert 'incident_bridge_rule_render_errors_total{route="root"} 1.0' in metrics


async def test_rendering_titles_does_not_hold_up_other_webhooks(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """2000 groups whose titles each loop 19,000 times: about 38 million steps in all. The
    event loop keeps answering while they render (before: it was blocked for all of them)."""
    client = await client_with(
        aiohttp_client, tmp_path, "{% for i in range(19000) %}{% endfor %}{{ labels.instance }}"
    )
    hostile = body([{"instance": f"host-{i}"} for i in range(2000)])
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            lags.append(now - last - 0.01)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    resp = await client.post("/api/v1/alerts", data=hostile)
    done.set()
    await tick
    assert resp.status == 200
    answer = await resp.json()
    assert len(answer["incidents"]) == 2000
    assert max(lags) < 0.3, max(lags)
