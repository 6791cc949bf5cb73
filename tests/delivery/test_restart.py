"""Notifications survive a crash of the bridge and an outage of their target (real processes)."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bridge.store.outbox import LEASE_NS
from tests.conftest import SECOND, fixture_body
from tests.fakes.base import in_a_thread
from tests.fakes.webhook import PATH, SECRET, WebhookFake
from tests.integration.procs import Bridge, wait_for


class SwitchableFake(WebhookFake):
    """The webhook contract fake, plus an outage switch."""

    down = True

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.down:
            await request.read()
            self.requests.append(None)  # type: ignore[arg-type]
            return web.json_response({"error": "maintenance"}, status=503)
        return await super()._middleware(request, handler)


@pytest.fixture
def fake() -> Iterator[SwitchableFake]:
    """The fake in a thread of its own: the test talks to the bridge with blocking calls."""
    server = SwitchableFake()
    with in_a_thread(server):
        yield server


def test_pending_and_in_flight_notifications_survive_sigkill(
    tmp_path: Path, fake: SwitchableFake
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "targets:\n  hook:\n    type: webhook\n    url: ${HOOK_URL}\n    secret: ${HOOK_SECRET}\n"
        "route:\n  name: default\n  tiers:\n    general: [hook]\n"
    )
    env = {"HOOK_URL": fake.hook_url, "HOOK_SECRET": SECRET}
    bridge = Bridge(tmp_path / "bridge", args=["--rules", str(rules)], env=env)
    bridge.start()
    try:
        for i in range(20):
            body = fixture_body("ha-pair-single-delivery.json")
            body["groupKey"] = f'{{}}:{{alertname="Restart{i}"}}'
            body["alerts"][0]["fingerprint"] = f"{i:016x}"
            assert bridge.post_webhook(body).status == 200
        # The target is down: attempts are being made and failing.
        wait_for("failed attempts", lambda: len(fake.requests) >= 5 or None, timeout=20)
        assert bridge.proc is not None
        bridge.proc.send_signal(signal.SIGKILL)
        bridge.proc.wait(10)
        fake.down = False
        bridge.start()
        wait_for(
            "every notification delivered", lambda: len(fake.deliveries) >= 20 or None, timeout=60
        )
        listed = bridge.get_json("/api/v1/notifications?limit=500")["notifications"]
        wait_for(
            "every row marked delivered",
            lambda: (
                all(
                    n["state"] == "delivered"
                    for n in bridge.get_json("/api/v1/notifications?limit=500")["notifications"]
                )
                or None
            ),
            timeout=20,
        )
        keys = {n["idempotency_key"] for n in listed}
        assert len(keys) == 20
        assert set(fake.deliveries) == keys  # each message under its own stable key
        # Secrets never leave the process: not in logs, not in the API, not in metrics.
        shown = [
            bridge.logs(),
            json.dumps(bridge.get_json("/api/v1/rules")),
            bridge.metrics(),
            json.dumps(listed),
        ]
        for text in shown:
            assert SECRET not in text
            assert PATH not in text
    finally:
        bridge.stop()
    conn = sqlite3.connect(bridge.db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        states = dict(conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
    finally:
        conn.close()
    assert states == {"delivered": 20}


class HangingFake(WebhookFake):
    """Holds every request until ``released`` is set (a send in flight), then answers those
    503 unrecorded: what reaches ``deliveries`` came after."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()  # set by the test's thread
        self.held = 0

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self.released.is_set():
            self.held += 1
            await asyncio.get_running_loop().run_in_executor(None, self.released.wait, 60)
            return web.json_response({"error": "gone"}, status=503)
        return await super()._middleware(request, handler)


def test_a_send_in_flight_at_a_crash_goes_out_at_once_after_the_restart(tmp_path: Path) -> None:
    """The row was claimed by the killed process; on SQLite the restarted one (one process per
    database, so the same replica id) takes it back at once instead of after the lease."""
    server = HangingFake()
    with in_a_thread(server):
        rules = tmp_path / "rules.yaml"
        rules.write_text(
            "targets:\n  hook:\n    type: webhook\n    url: ${HOOK_URL}\n"
            "    secret: ${HOOK_SECRET}\n"
            "route:\n  name: default\n  tiers:\n    general: [hook]\n"
        )
        env = {"HOOK_URL": server.hook_url, "HOOK_SECRET": SECRET}
        bridge = Bridge(tmp_path / "bridge", args=["--rules", str(rules)], env=env)
        bridge.start()
        try:
            assert bridge.post_webhook(fixture_body("ha-pair-single-delivery.json")).status == 200
            wait_for("a send in flight", lambda: server.held >= 1 or None, timeout=20)
            assert bridge.proc is not None
            bridge.proc.send_signal(signal.SIGKILL)
            bridge.proc.wait(10)
            server.released.set()
            started = time.monotonic()
            bridge.start()
            wait_for("the notification delivered", lambda: server.deliveries or None, timeout=40)
            assert time.monotonic() - started < LEASE_NS / SECOND * 0.75  # not the lease
        finally:
            bridge.stop()
    [key] = server.deliveries
    conn = sqlite3.connect(bridge.db)
    try:
        found = conn.execute("SELECT idempotency_key, claimed_by FROM outbox").fetchall()
    finally:
        conn.close()
    assert found == [(key, None)]
