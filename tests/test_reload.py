"""Hot reload of the rules: swapped whole, kept when invalid, never half-applied."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from bridge.app import create_app
from bridge.config import Settings
from bridge.core.secrets import Secret
from bridge.metrics import Metrics
from bridge.service import AppState, activate, api_access, load_runtime
from bridge.store import Store
from bridge.targets.base import TargetDeps
from tests.conftest import GENERATED_API_TOKEN, WRITE, fixture_body
from tests.integration.procs import Bridge, wait_for

RULES_A = """\
targets:
  out: {type: console}
route:
  name: root-a
  severity: sev1
  tiers: {general: [out]}
"""
RULES_B = RULES_A.replace("root-a", "root-b").replace("sev1", "sev3")
BROKEN = RULES_A + "  colour: blue\n"


async def make(aiohttp_client: Any, tmp_path: Path, rules: Path) -> tuple[Any, AppState]:
    settings = Settings(db=tmp_path / "r.db", rules=(rules,))
    store = Store(settings.db)
    store.open()
    deps = TargetDeps()
    state = AppState(
        settings=settings,
        store=store,
        metrics=Metrics.create(),
        runtime=load_runtime(settings, deps),
        api=api_access(settings, Secret(GENERATED_API_TOKEN)),
    )
    activate(state, state.runtime)
    app = create_app(state, deps)

    async def close(_app: Any) -> None:
        await asyncio.to_thread(store.close)

    app.on_cleanup.append(close)
    return await aiohttp_client(app), state


async def test_reload_swaps_and_keeps_old_rules_when_invalid(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_A)
    client, _state = await make(aiohttp_client, tmp_path, rules)
    before = (await (await client.get("/api/v1/rules")).json())["config_hash"]

    rules.write_text(BROKEN)
    resp = await client.post("/-/reload", headers=WRITE)
    assert resp.status == 422
    body = await resp.json()
    assert body["status"] == "error"
    assert any(e.startswith(f"{rules}:7:3:") and "colour" in e for e in body["errors"]), body
    assert (await (await client.get("/api/v1/rules")).json())["config_hash"] == before
    assert (
        "incident_bridge_rules_last_reload_successful 0.0"
        in await (await client.get("/metrics")).text()
    )
    ok = await client.post(
        "/api/v1/alerts", data=json.dumps(fixture_body("ha-pair-single-delivery.json"))
    )
    assert ok.status == 200  # still evaluated under the old rules
    incident = await (await client.get("/api/v1/incidents/1")).json()
    assert (incident["route"], incident["severity"]) == ("root-a", "sev1")

    rules.write_text(RULES_B)
    resp = await client.post("/-/reload", headers=WRITE)
    assert resp.status == 200
    after = (await resp.json())["config_hash"]
    assert after != before
    assert (await (await client.get("/api/v1/rules")).json())["config_hash"] == after
    assert (
        "incident_bridge_rules_last_reload_successful 1.0"
        in await (await client.get("/metrics")).text()
    )


async def test_webhooks_during_reloads_see_old_or_new_rules_never_a_mix(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_A)
    client, _state = await make(aiohttp_client, tmp_path, rules)
    stop = asyncio.Event()

    async def reloader() -> int:
        n = 0
        while not stop.is_set():
            rules.write_text(RULES_B if n % 2 == 0 else RULES_A)
            assert (await client.post("/-/reload", headers=WRITE)).status == 200
            n += 1
            await asyncio.sleep(0)
        return n

    async def sender(i: int) -> int:
        body = fixture_body("ha-pair-single-delivery.json")
        body["groupKey"] = f"load-{i}"
        body["alerts"][0]["fingerprint"] = f"{i:016x}"
        resp = await client.post("/api/v1/alerts", data=json.dumps(body))
        return int(resp.status)

    task = asyncio.create_task(reloader())
    statuses = await asyncio.gather(*(sender(i) for i in range(300)))
    stop.set()
    reloads = await task
    assert set(statuses) == {200}
    assert reloads >= 2
    pairs = set()
    url: str | None = "/api/v1/incidents?limit=500"
    while url:
        page = await (await client.get(url)).json()
        pairs |= {(i["route"], i["severity"]) for i in page["incidents"]}
        url = page["next"]
    assert pairs <= {("root-a", "sev1"), ("root-b", "sev3")}, pairs


def test_sighup_and_file_watcher_reload_a_running_service(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_A)
    bridge = Bridge(tmp_path / "b", args=["--rules", str(rules), "--watch-rules"])
    bridge.start()
    try:
        first = bridge.get_json("/api/v1/rules")["config_hash"]
        rules.write_text(RULES_B)
        assert bridge.proc is not None
        bridge.proc.send_signal(signal.SIGHUP)
        second = wait_for(
            "SIGHUP reload",
            lambda: ((h := bridge.get_json("/api/v1/rules")["config_hash"]) != first and h) or None,
            timeout=10,
        )
        rules.write_text(RULES_A.replace("root-a", "root-c"))  # the watcher notices this one
        wait_for(
            "watcher reload",
            lambda: bridge.get_json("/api/v1/rules")["rules"]["route"]["name"] == "root-c" or None,
            timeout=15,
        )
        rules.write_text(BROKEN)
        wait_for("failed reload logged", lambda: "colour" in bridge.logs() or None, timeout=15)
        assert bridge.get_json("/api/v1/rules")["rules"]["route"]["name"] == "root-c"
        assert second != first
    finally:
        assert bridge.stop() == 0
