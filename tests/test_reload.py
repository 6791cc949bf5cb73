"""Hot reload of the rules: swapped whole, kept when invalid, never half-applied."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from bridge import service
from bridge.app import create_app
from bridge.config import Settings
from bridge.service import AppState, activate, load_runtime
from bridge.targets.base import TargetDeps
from tests.conftest import WRITE, app_state, fixture_body
from tests.integration.procs import Bridge, http, wait_for

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


async def make(
    aiohttp_client: Any, tmp_path: Path, rules: Path, db: dict[str, Any] | None = None
) -> tuple[Any, AppState]:
    """The service over ``rules`` on ``db`` (``db_settings``; SQLite's ``r.db`` without)."""
    settings = Settings(**(db or {"db": tmp_path / "r.db"}), rules=(rules,))
    deps = TargetDeps()
    state = app_state(settings, runtime=load_runtime(settings, deps))
    activate(state, state.runtime)
    app = create_app(state, deps)

    async def close(_app: Any) -> None:
        await asyncio.to_thread(state.store.close)

    app.on_cleanup.append(close)
    return await aiohttp_client(app), state


async def served(
    aiohttp_client: Any, tmp_path: Path, text: str, db: dict[str, Any] | None = None
) -> tuple[Any, AppState, Path]:
    """``make`` over a rules file written with ``text``; the file too, to write again."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(text)
    client, state = await make(aiohttp_client, tmp_path, rules, db)
    return client, state, rules


async def test_reload_swaps_and_keeps_old_rules_when_invalid(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client, _state, rules = await served(aiohttp_client, tmp_path, RULES_A)
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
    client, _state, rules = await served(aiohttp_client, tmp_path, RULES_A)
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


DEEP = RULES_A + "  team: " + "[" * 3000 + "]" * 3000 + "\n"
BOMB_LINES = ["  x0: &x0 [a, b, c, d, e, f, g, h, i, j]"] + [
    f"  x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]" for i in range(1, 9)
]
BOMB = RULES_A.replace("route:", "templates:\n" + "\n".join(BOMB_LINES) + "\nroute:")


async def reload_metric(client: Any) -> str:
    text: str = await (await client.get("/metrics")).text()
    return next(
        line
        for line in text.splitlines()
        if line.startswith("incident_bridge_rules_last_reload_successful ")
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (DEEP, "nesting deeper than 64"),
        (BOMB, "aliases expand to more than 100000 nodes"),
    ],
    ids=["deep", "alias-bomb"],
)
async def test_a_hostile_file_is_a_422_and_the_old_rules_stay(
    aiohttp_client: Any, tmp_path: Path, text: str, error: str
) -> None:
    client, _state, rules = await served(aiohttp_client, tmp_path, RULES_A)
    before = (await (await client.get("/api/v1/rules")).json())["config_hash"]
    rules.write_text(text)
    started = time.perf_counter()
    resp = await client.post("/-/reload", headers=WRITE)
    assert resp.status == 422, await resp.text()
    assert time.perf_counter() - started < 5
    errors = (await resp.json())["errors"]
    assert len(errors) == 1 and errors[0].startswith(f"{rules}:") and error in errors[0], errors
    assert await reload_metric(client) == "incident_bridge_rules_last_reload_successful 0.0"
    assert (await (await client.get("/api/v1/rules")).json())["config_hash"] == before
    ok = await client.post(
        "/api/v1/alerts", data=json.dumps(fixture_body("ha-pair-single-delivery.json"))
    )
    assert ok.status == 200


async def test_a_loader_that_fails_or_hangs_is_a_422_not_a_500(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the loader does (a bug raising, a file it takes too long on), a reload ends
    with the old rules, the metric at 0 and an error naming the rule files."""
    client, _state, rules = await served(aiohttp_client, tmp_path, RULES_A)

    def crash(*_args: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(service, "load_runtime", crash)
    resp = await client.post("/-/reload", headers=WRITE)
    assert resp.status == 422
    assert (await resp.json())["errors"] == [
        f"{rules}: the rules could not be loaded (RecursionError)"
    ]
    assert await reload_metric(client) == "incident_bridge_rules_last_reload_successful 0.0"

    def slow(*_args: Any) -> Any:
        time.sleep(1.0)
        raise AssertionError("the reload should have given up before")

    monkeypatch.setattr(service, "load_runtime", slow)
    monkeypatch.setattr(service, "RELOAD_TIMEOUT_S", 0.2)
    resp = await client.post("/-/reload", headers=WRITE)
    assert resp.status == 422
    assert (await resp.json())["errors"] == [f"{rules}: loading took longer than 0.2 s"]
    assert (await (await client.get("/api/v1/rules")).json())["rules"]["route"]["name"] == "root-a"
    await asyncio.sleep(1.0)  # the abandoned thread ends before the test's loop closes


def test_sighup_with_a_deep_file_logs_the_error_and_keeps_the_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_A)
    bridge = Bridge(tmp_path / "b", args=["--rules", str(rules)])
    bridge.start()
    try:
        rules.write_text(DEEP)
        assert bridge.proc is not None
        bridge.proc.send_signal(signal.SIGHUP)
        wait_for(
            "failed reload logged",
            lambda: "nesting deeper than 64" in bridge.logs() or None,
            timeout=15,
        )
        assert bridge.get_json("/api/v1/rules")["rules"]["route"]["name"] == "root-a"
        metrics = http("GET", bridge.url + "/metrics").body.decode()
        assert "incident_bridge_rules_last_reload_successful 0.0" in metrics
        assert "Task exception was never retrieved" not in bridge.logs()
        assert "RecursionError" not in bridge.logs()
    finally:
        assert bridge.stop() == 0


async def test_a_link_out_of_the_rules_folder_is_refused_without_its_content(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "rules.yaml").write_text(RULES_A)
    secret = tmp_path / "secret.env"
    secret.write_text("DB_PASSWORD: hunter2-very-long-secret-value\n")
    client, _state = await make(aiohttp_client, tmp_path, folder)
    link = folder / "zz-leak.yaml"
    link.symlink_to(secret)
    resp = await client.post("/-/reload", headers=WRITE)
    assert resp.status == 422
    text = await resp.text()
    assert "hunter2" not in text and "DB_PASSWORD" not in text
    assert (await resp.json())["errors"] == [
        f"{link}:0:0: a symbolic link to a file outside the rules folder: not read"
    ]
    assert (await (await client.get("/api/v1/rules")).json())["rules"]["route"]["name"] == "root-a"
