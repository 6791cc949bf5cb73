"""Connections one source holds must not keep Alertmanager out: idle connections, live streams,
refusals that cost log lines (bench/flood.py measures the same at full size)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import resource
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge import app as app_module
from bridge.app import ConnectionLimit, create_app, run, runner_options
from bridge.config import ApiToken, ConfigError, Settings, add_serve_arguments, settings_from
from bridge.core.secrets import Secret
from bridge.store import Store
from tests.conftest import Clock, MakeClient, app_state, fixture_bytes

TOKEN = "flood-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FLOOD = "127.0.0.2"  # another loopback address: another source for the service
WEBHOOKS = "127.0.0.1"


OPENED: list[asyncio.StreamWriter] = []  # every connection a test opens, closed after it


@pytest.fixture(autouse=True)
async def connections() -> AsyncIterator[None]:
    """A few hundred connections, both ends in this process: enough file descriptors, and every
    client end closed at the end whatever the test's outcome."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        target = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    yield
    for writer in OPENED:
        writer.close()
    OPENED.clear()
    await asyncio.sleep(0)


Serve = Callable[..., Any]


@pytest.fixture
async def serve(aiohttp_client: Any, tmp_path: Path, clock: Clock) -> AsyncIterator[Serve]:
    """The app as ``serve`` runs it: every connection setting applied (``make_client`` applies
    only --max-connections)."""
    stores: list[Store] = []

    async def make(**overrides: Any) -> TestClient[Any, Any]:
        settings = Settings(db=tmp_path / f"flood{len(stores)}.db", **overrides)
        state = app_state(settings, clock=clock)
        stores.append(state.store)
        server = TestServer(create_app(state), host="127.0.0.1")
        await server.start_server(**runner_options(settings))
        assert server.runner is not None and server.runner.server is not None
        ConnectionLimit.from_settings(server.runner.server, settings)
        client: TestClient[Any, Any] = await aiohttp_client(server)
        return client

    yield make
    for s in stores:
        s.close()


async def connect(client: Any, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(client.host, client.port, local_addr=(source, 0))
    OPENED.append(writer)
    return reader, writer


async def post_webhook(client: Any, source: str = WEBHOOKS) -> int:
    """A webhook on a fresh connection, as Alertmanager sends one after an idle close: its
    status, 0 when the connection was closed or reset unanswered."""
    body = fixture_bytes("firing-group-bearer.json")
    head = (
        f"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        reader, writer = await connect(client, source)
    except OSError:
        return 0
    try:
        writer.write(head + body)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=5)
        return int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else 0
    except OSError:
        return 0
    finally:
        writer.close()


async def open_stream(
    client: Any, source: str, incident: int, token: str | None = None
) -> tuple[int, asyncio.StreamWriter | None]:
    """A live stream: its status and, when it is held (200), the writer to end it with."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    try:
        reader, writer = await connect(client, source)
        writer.write(f"GET /incidents/{incident}/live HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=10)
    except OSError:
        return 0, None
    status = int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else 0
    if status != 200:
        writer.close()
        return status, None
    return status, writer


async def is_closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), timeout=0.05) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, **overrides: Any) -> AsyncIterator[SimpleNamespace]:
    """The service as ``serve`` runs it (``app.run``: its listeners, every setting); yields
    where to connect."""
    port = free_port()
    settings = Settings(port=port, db=tmp_path / "served.db", shutdown_timeout_s=2.0, **overrides)
    stop = asyncio.Event()
    served = asyncio.create_task(run(settings, stop=stop))
    try:
        async with asyncio.timeout(15):
            while True:
                with contextlib.suppress(OSError):
                    _reader, probe = await asyncio.open_connection("127.0.0.1", port)
                    probe.close()
                    break
                await asyncio.sleep(0.05)
        yield SimpleNamespace(host="127.0.0.1", port=port, settings=settings)
    finally:
        for writer in OPENED:  # the requests in flight end, and with them the shutdown's wait
            writer.close()
        stop.set()
        await asyncio.wait_for(served, 30)


async def opened(client: Any) -> int:
    resp = await client.post(
        "/api/v1/alerts", data=fixture_bytes("firing-group-bearer.json"), headers=AUTH
    )
    assert resp.status == 200
    return int((await resp.json())["incidents"][0]["id"])


# --- 1: idle connections from one source ----------------------------------------------------


async def test_webhooks_get_through_while_one_source_holds_every_connection(
    make_client: MakeClient,
) -> None:
    """The same server options as every other test (``make_client``): the defaults keep room."""
    client: Any = await make_client(webhook_token=Secret(TOKEN), max_connections=150)
    for _ in range(300):  # twice the limit, from one source, never a byte sent
        with contextlib.suppress(OSError):
            await connect(client, FLOOD)
    await asyncio.sleep(0.2)
    statuses = [await post_webhook(client) for _ in range(20)]
    assert statuses == [200] * 20


async def test_one_source_holds_at_most_its_share(serve: Serve) -> None:
    client: Any = await serve(
        webhook_token=Secret(TOKEN), max_connections=100, max_connections_per_source=10
    )
    conns = [await connect(client, FLOOD) for _ in range(40)]
    await asyncio.sleep(0.3)
    still = [c for c in conns if not await is_closed(c[0])]
    assert 1 <= len(still) <= 10
    assert await post_webhook(client) == 200
    for _reader, writer in conns:
        writer.close()


async def test_at_the_limit_an_idle_connection_makes_room(serve: Serve) -> None:
    client: Any = await serve(
        webhook_token=Secret(TOKEN), max_connections=30, max_connections_per_source=0
    )
    conns = [await connect(client, FLOOD) for _ in range(30)]
    await asyncio.sleep(0.2)
    assert [await post_webhook(client) for _ in range(10)] == [200] * 10
    # room was made by closing the oldest idle connection of the address holding the most
    assert await is_closed(conns[0][0])
    assert not await is_closed(conns[-1][0])
    for _reader, writer in conns:
        writer.close()


async def test_a_new_connection_has_a_short_deadline_for_its_headers(serve: Serve) -> None:
    client: Any = await serve(webhook_token=Secret(TOKEN), header_timeout_s=0.5)
    silent = await connect(client, FLOOD)
    slow = await connect(client, FLOOD)
    slow[1].write(b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never ends
    started = time.monotonic()
    for reader, _writer in (silent, slow):
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
    assert time.monotonic() - started < 2.5  # not the 30 s idle timeout
    # kept alive between requests, a connection waits for the idle timeout, not this deadline
    reader, writer = await connect(client, WEBHOOKS)
    writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    await asyncio.sleep(1.2)
    writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
    while (line := await asyncio.wait_for(reader.readline(), 5)) and b"HTTP/1.1" not in line:
        pass
    assert line.startswith(b"HTTP/1.1 200")
    for w in (silent[1], slow[1], writer):
        w.close()


# --- 2: refusals cost one line an interval --------------------------------------------------

# A webhook whose body has not all arrived: a request in progress, nothing to close for room.
BUSY = (
    b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
    + f"Authorization: Bearer {TOKEN}\r\n\r\n{{".encode()
)


@pytest.mark.parametrize("how", ["serve", "make_client"])
async def test_refused_connections_log_one_summary_line_and_no_traceback(
    how: str,
    make_client: MakeClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through ``serve`` (its accept loop) and through aiohttp's own (the tests' servers)."""
    monkeypatch.setattr(ConnectionLimit, "FIRST_REPORT_S", 2.0, raising=False)  # past the burst
    async with contextlib.AsyncExitStack() as stack:
        if how == "serve":
            client: Any = await stack.enter_async_context(
                serving(tmp_path, webhook_token=Secret(TOKEN), max_connections=5)
            )
        else:
            client = await make_client(webhook_token=Secret(TOKEN), max_connections=5)
        held = [await connect(client, WEBHOOKS) for _ in range(5)]
        for _reader, writer in held:  # busy, not idle: nothing can make room
            writer.write(BUSY)
        await asyncio.sleep(0.2)
        with caplog.at_level(logging.DEBUG):
            refused = [await connect(client, FLOOD) for _ in range(200)]
            for reader, _writer in refused:
                assert await asyncio.wait_for(reader.read(), timeout=5) == b""
            gc.collect()  # a task whose exception nobody read is logged when it is collected
            await asyncio.sleep(2.5)  # FIRST_REPORT_S after the first refusal, and a margin
        records = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert not any(r.exc_info for r in caplog.records)
        assert len(records) == 1, [r.getMessage()[:200] for r in records]
        assert "200" in records[0].getMessage()
        assert "--max-connections 5" in records[0].getMessage()
        for writer in OPENED:  # the requests in flight end, and with them the shutdown's wait
            writer.close()


async def test_refusals_are_summed_up_once_an_interval(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ConnectionLimit, "LOG_EVERY_S", 0.5)
    monkeypatch.setattr(ConnectionLimit, "FIRST_REPORT_S", 0.2, raising=False)
    client: Any = await make_client(webhook_token=Secret(TOKEN), max_connections=2)
    held = [await connect(client, WEBHOOKS) for _ in range(2)]
    for _reader, writer in held:
        writer.write(BUSY)
    await asyncio.sleep(0.2)
    with caplog.at_level(logging.WARNING, logger="bridge.app"):
        refused = []
        for burst in (30, 20):
            refused += [await connect(client, FLOOD) for _ in range(burst)]
            await asyncio.sleep(0.6)
        await asyncio.sleep(0.6)  # the last interval's count is said too, without a new refusal
    lines = [r.getMessage() for r in caplog.records if r.name == "bridge.app"]
    assert len(lines) == 2, lines
    counts = [int(line.split(": ", 1)[1].split()[0]) for line in lines]
    assert sum(counts) == 50, lines
    for _reader, writer in held + refused:
        writer.close()


# --- 3: live streams ------------------------------------------------------------------------


NAMED = tuple(
    ApiToken(f"viewer{i}", "read", Secret(f"viewer-token-{i:04d}-long-enough")) for i in range(12)
)


async def streaming(serve: Serve, **caps: Any) -> tuple[Any, int]:
    """The app with the viewers' tokens, no cap per address nor per viewer that matters here,
    and ``caps`` (the connections, the live streams); an incident to watch."""
    client: Any = await serve(
        webhook_token=Secret(TOKEN),
        api_tokens=NAMED,
        max_connections_per_source=0,
        max_live_streams_per_viewer=100,
        **caps,
    )
    return client, await opened(client)


async def test_a_burst_of_live_requests_keeps_to_the_cap(serve: Serve) -> None:
    client, incident = await streaming(serve, max_connections=400, max_live_streams=20)
    burst = await asyncio.gather(
        *(
            open_stream(client, FLOOD, incident, NAMED[i % len(NAMED)].secret.reveal())
            for i in range(120)
        )
    )
    statuses = [s for s, _ in burst]
    assert statuses.count(200) == 20, sorted(statuses)
    assert set(statuses) == {200, 503}
    for _s, writer in burst:
        if writer is not None:
            writer.close()
    await asyncio.sleep(0.3)  # their slots are given back
    again = await open_stream(client, FLOOD, incident, NAMED[0].secret.reveal())
    assert again[0] == 200 and again[1] is not None
    again[1].close()


async def test_one_viewer_holds_at_most_its_share_of_live_streams(serve: Serve) -> None:
    client: Any = await serve(
        webhook_token=Secret(TOKEN), api_tokens=NAMED, max_live_streams_per_viewer=3
    )
    incident = await opened(client)
    alice, bob = NAMED[0].secret.reveal(), NAMED[1].secret.reveal()
    mine = await asyncio.gather(*(open_stream(client, WEBHOOKS, incident, alice) for _ in range(8)))
    assert sorted(s for s, _ in mine) == [200] * 3 + [429] * 5
    # another person is not held back; nor is an anonymous viewer: their source is the key
    theirs = await open_stream(client, WEBHOOKS, incident, bob)
    assert theirs[0] == 200
    for _s, writer in [*mine, theirs]:
        if writer is not None:
            writer.close()


async def test_live_streams_leave_the_webhooks_their_connections(serve: Serve) -> None:
    client, incident = await streaming(serve, max_connections=40, max_live_streams=200)
    streams = await asyncio.gather(
        *(open_stream(client, FLOOD, incident, NAMED[i % 12].secret.reveal()) for i in range(60))
    )
    held = [w for s, w in streams if s == 200]
    assert len(held) <= 20  # at most half the connections, whatever --max-live-streams says
    assert [await post_webhook(client) for _ in range(10)] == [200] * 10
    for writer in held:
        if writer is not None:
            writer.close()


def test_the_live_stream_limits_are_settings() -> None:
    settings = Settings(max_connections=100, max_live_streams=80)
    from bridge.http import live

    assert live.stream_cap(settings) == 50
    assert live.stream_cap(Settings()) == 200


async def test_a_refused_stream_for_a_missing_incident_gives_its_slot_back(serve: Serve) -> None:
    client: Any = await serve(
        webhook_token=Secret(TOKEN), api_tokens=NAMED, max_live_streams_per_viewer=2
    )
    token = NAMED[0].secret.reveal()
    for _ in range(5):
        status, _w = await open_stream(client, WEBHOOKS, 999, token)
        assert status == 404
    await opened(client)
    status, writer = await open_stream(client, WEBHOOKS, 1, token)
    assert status == 200 and writer is not None
    writer.close()  # the stream's slot came back after each 404


# --- a listener of the webhooks' own ----------------------------------------------------------


async def test_the_webhook_listener_has_connections_of_its_own(tmp_path: Path) -> None:
    hooks = free_port()
    async with serving(
        tmp_path,
        webhook_listen=("127.0.0.1", hooks),
        webhook_token=Secret(TOKEN),
        max_connections=10,
        max_connections_per_source=0,
    ) as target:
        for _ in range(10):  # every connection of the main listener busy
            _reader, writer = await connect(target, FLOOD)
            writer.write(BUSY)
        await asyncio.sleep(0.3)
        assert await post_webhook(target) == 0  # no room there
        on_hooks = SimpleNamespace(host="127.0.0.1", port=hooks)
        assert await post_webhook(on_hooks) == 200
        # only the webhook and the liveness probe: nothing else can hold its connections
        reader, writer = await connect(on_hooks, WEBHOOKS)
        writer.write(b"GET /incidents/1/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 404")


def test_the_webhook_listener_is_a_setting_checked_like_listen() -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["--webhook-listen", "127.0.0.1:9097"])
    assert settings_from(args, env={}).webhook_listen == ("127.0.0.1", 9097)
    with pytest.raises(ConfigError, match="--webhook-listen: 'nope' is not HOST:PORT"):
        settings_from(parser.parse_args(["--webhook-listen", "nope"]), env={})
    # a webhook listener others can reach needs credentials, as --listen does
    exposed = parser.parse_args(["--webhook-listen", "0.0.0.0:9097"])
    with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0:9097"):
        settings_from(exposed, env={})


async def test_the_listener_keeps_the_caps_and_makes_room_once(tmp_path: Path) -> None:
    """``serve``'s own accept loop: a burst from one address keeps to its cap, and a new
    connection at the limit closes one idle connection, not two."""
    async with serving(
        tmp_path, webhook_token=Secret(TOKEN), max_connections=12, max_connections_per_source=10
    ) as target:
        burst = await asyncio.gather(*(connect(target, FLOOD) for _ in range(30)))
        await asyncio.sleep(0.3)
        assert sum([not await is_closed(reader) for reader, _w in burst]) == 10
        others = [await connect(target, "127.0.0.3") for _ in range(2)]  # the limit: 12
        await asyncio.sleep(0.3)
        assert await post_webhook(target) == 200
        await asyncio.sleep(0.3)
        still = [reader for reader, _w in [*burst, *others] if not await is_closed(reader)]
        assert len(still) == 11  # one idle connection made room, of the address with the most


async def test_a_peer_that_resets_before_its_connection_is_made_gives_its_room_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client (or a load balancer's health check) that resets between the accept and the
    connection being made: its transport no longer knows its peer (asyncio keeps None). The
    room it was let in for is given back all the same, or its address would be refused for
    good. Here every transport has lost its peer, as such a reset leaves it."""
    monkeypatch.setattr(app_module, "source_of", lambda _transport: "local")
    async with serving(
        tmp_path, webhook_token=Secret(TOKEN), max_connections=50, max_connections_per_source=3
    ) as target:
        answers = [await post_webhook(target) for _ in range(6)]
    assert answers == [200] * 6
