"""Secure by default: nothing changes state without the API token; nothing is readable from the
network without a token unless the operator says so; the quick start stays one command."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Settings, api_token_path
from bridge.core.secrets import Secret
from bridge.service import AppState, api_access
from tests.conftest import WRITE, MakeClient
from tests.integration.procs import Bridge, http

WRITES = [("POST", "/-/reload"), ("POST", "/api/v1/notifications/1/retry")]
READS = ["/api/v1/incidents", "/api/v1/incidents/1", "/api/v1/notifications", "/api/v1/rules"]


@pytest.mark.parametrize(("method", "path"), WRITES)
async def test_changes_need_the_api_token_even_on_loopback(
    make_client: MakeClient, method: str, path: str
) -> None:
    client: Any = await make_client()
    assert (await client.request(method, path)).status == 401
    wrong = await client.request(method, path, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401 and "WWW-Authenticate" in wrong.headers
    assert (await client.request(method, path, headers=WRITE)).status in (200, 404)


async def test_a_read_token_reads_but_cannot_change(make_client: MakeClient) -> None:
    client: Any = await make_client(
        api_token=Secret("writer-token"), api_read_token=Secret("reader-token")
    )
    reader = {"Authorization": "Bearer reader-token"}
    for path in READS[::2]:
        assert (await client.get(path)).status == 401, path
        assert (await client.get(path, headers=reader)).status == 200, path
    denied = await client.post("/-/reload", headers=reader)
    assert denied.status == 403 and "only read" in (await denied.json())["error"]
    ok = await client.post("/-/reload", headers={"Authorization": "Bearer writer-token"})
    assert ok.status == 200


async def test_reads_on_a_network_listener_need_a_token_unless_opened(
    make_client: MakeClient,
) -> None:
    client: Any = await make_client(host="0.0.0.0", webhook_token=Secret("hook"))
    state: AppState = client.server.app[AppState.KEY]
    assert not state.api.open_reads
    for path in READS:
        assert (await client.get(path)).status == 401, path
    assert (await client.get("/api/v1/incidents", headers=WRITE)).status == 200
    assert (await client.get("/metrics")).status == 200  # scrapers and probes stay open
    assert (await client.get("/-/ready")).status == 200
    settings = Settings(host="0.0.0.0", db=state.settings.db, insecure_open_read_api=True)
    opened = api_access(settings, Secret("generated"))
    assert opened.open_reads and opened.write is not None


def test_first_start_generates_a_private_token_the_cli_uses(tmp_path: Path) -> None:
    bridge = Bridge(tmp_path / "b").start()
    try:
        token_file = api_token_path(bridge.db)
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 40
        assert str(token_file) in bridge.logs() and token not in bridge.logs()
        # Reads are open on loopback (the quick start's curl works); changes need the token.
        assert http("GET", bridge.url + "/api/v1/incidents").status == 200
        assert http("POST", bridge.url + "/-/reload", b"").status == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert http("POST", bridge.url + "/-/reload", b"", auth).status == 200
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_BRIDGE_")}
        env["INCIDENT_BRIDGE_DB"] = str(bridge.db)
        retried = subprocess.run(
            [sys.executable, "-m", "bridge", "notifications", "retry", "1", "--url", bridge.url],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        # authenticated with the generated token: the answer is about the row, not a 401
        assert "no such notification" in retried.stderr, retried.stderr
    finally:
        assert bridge.stop() == 0
    again = Bridge(tmp_path / "b").start()  # the same token after a restart
    try:
        assert api_token_path(again.db).read_text().strip() == token
    finally:
        again.stop()
