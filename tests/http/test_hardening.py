"""What an attacker on the network can do without credentials: nothing that costs log lines."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from bridge import logs
from bridge.app import ConnectionLimit
from bridge.core.secrets import Secret
from bridge.service import AppState
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


async def _open(client: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(client.host, client.port)


async def test_a_connection_that_never_finishes_its_headers_is_closed(
    make_client: MakeClient,
) -> None:
    client: Any = await make_client(webhook_token=Secret(TOKEN), idle_timeout_s=1.0)
    reader, writer = await _open(client)
    writer.write(b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never ends
    await writer.drain()
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), timeout=10) == b""  # closed by the server
    assert time.monotonic() - started < 5
    writer.close()


async def test_connections_beyond_the_limit_are_closed_with_one_log_line(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client: Any = await make_client(webhook_token=Secret(TOKEN), max_connections=3)
    held = [await _open(client) for _ in range(3)]
    for _reader, writer in held:  # each a webhook whose body is still coming: none is idle
        writer.write(
            b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n\r\n{{".encode()
        )
    await asyncio.sleep(0.1)
    with caplog.at_level(logging.WARNING):
        extra = [await _open(client) for _ in range(5)]
        for reader, _writer in extra:
            assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        await asyncio.sleep(ConnectionLimit.FIRST_REPORT_S + 0.2)  # the burst's summary
    lines = [r for r in caplog.records if "refused at --max-connections 3" in r.getMessage()]
    assert len(lines) == 1
    for _reader, writer in held + extra:
        writer.close()
    await asyncio.sleep(0.1)
    resp = await client.get("/-/healthy")  # room again once they are gone
    assert resp.status == 200


async def test_bodies_beyond_the_memory_budget_are_503_to_retry(make_client: MakeClient) -> None:
    client: Any = await make_client(
        webhook_token=Secret(TOKEN), max_body_bytes=1024, max_bodies_bytes=1500
    )
    _reader, writer = await _open(client)
    head = (
        b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    writer.write(head + b'{"status": ')  # holds 1000 bytes of the budget while it trickles
    await writer.drain()
    await asyncio.sleep(0.2)
    resp = await client.post(
        "/api/v1/alerts",
        data=b"{" + b" " * 998 + b"}",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    writer.close()
    await asyncio.sleep(0.2)
    state: AppState = client.server.app[AppState.KEY]
    assert state.bodies.held == 0  # given back when the first request ended
