"""What an attacker on the network can do without credentials: nothing that costs log lines."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bridge import logs
from bridge.core.secrets import Secret
from tests.conftest import MakeClient

TOKEN = "hardening-token"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_an_unauthenticated_undecodable_body_is_a_quiet_401(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture, encoding: str
) -> None:
    client: Any = await make_client(webhook_token=Secret(TOKEN))
    logs.quiet_client_errors()  # as `serve` does
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            resp = await client.post(
                "/api/v1/alerts",
                data=b"this is not compressed " * 20,
                headers={"Content-Encoding": encoding, "Content-Type": "application/json"},
            )
            # 401, or aiohttp's own 400 before any handler for an encoding it cannot decode
            # at all (brotli without its package)
            assert resp.status in (400, 401)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not loud, [f"{r.name}: {r.getMessage()}" for r in loud]
    assert not any(r.exc_info for r in caplog.records)
