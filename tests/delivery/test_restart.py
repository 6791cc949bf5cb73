"""Notifications survive a crash of the bridge and an outage of their target (real processes)."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import fixture_body
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
