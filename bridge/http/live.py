"""The incident page's live updates (docs/web.md): Server-Sent Events at
``/incidents/{id}/live``, and what they may hold.

A stream holds a connection for as long as the page is open, so streams are counted: at most
``--max-live-streams`` at once and never more than half ``--max-connections`` (the rest stays
for webhooks and requests), at most ``--max-live-streams-per-viewer`` for one signed-in person
(one client address for those not signed in). A stream's slot is taken before the handler's
first ``await``: a burst of requests arriving together cannot all pass the count before any of
them is counted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bridge.config import Settings
from bridge.core.values import parse_id
from bridge.http.pages import HEADERS, incident_id_of, read_or_503, viewer
from bridge.http.session import LIVE_SESSION, Viewer, id_hash
from bridge.service import AppState
from bridge.store.interface import StoreUnavailable

POLL_S = 1.0
HEARTBEAT_S = 15.0
SESSION_CHECK_S = 5.0  # how soon a stream notices that its session was ended
RETRY_AFTER = "30"


def source_of(transport: Any) -> str:
    """The client address a connection counts against (see ``source_of_peer``)."""
    return source_of_peer(transport.get_extra_info("peername") if transport is not None else None)


def source_of_peer(peer: Any) -> str:
    """The client address a peer counts against: the IP address, an IPv6 one by its /64 (one
    host commonly holds a whole /64), an IPv4-mapped one as IPv4 (app.py's connection caps and
    the streams' per-viewer cap use the same)."""
    host = peer[0] if isinstance(peer, tuple) and peer else ""
    try:
        address = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return str(host) or "local"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def stream_cap(settings: Settings) -> int:
    """Streams at once: ``--max-live-streams``, and at most half the connections."""
    return max(1, min(settings.max_live_streams, settings.max_connections // 2))


@dataclass
class Streams:
    """The streams open now: how many, per viewer, and their tasks (ended at shutdown)."""

    open: int = 0
    per_viewer: collections.Counter[str] = field(default_factory=collections.Counter)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def take(self, key: str, settings: Settings) -> web.HTTPException | None:
        """A slot for ``key``, or the refusal to raise. Synchronous: nothing runs between the
        count and the increment."""
        if self.per_viewer[key] >= settings.max_live_streams_per_viewer:
            return web.HTTPTooManyRequests(
                text="too many live pages of yours", headers={**HEADERS, "Retry-After": RETRY_AFTER}
            )
        if self.open >= stream_cap(settings):
            return web.HTTPServiceUnavailable(
                text="too many live pages", headers={**HEADERS, "Retry-After": RETRY_AFTER}
            )
        self.open += 1
        self.per_viewer[key] += 1
        return None

    def give_back(self, key: str) -> None:
        self.open -= 1
        self.per_viewer[key] -= 1
        if self.per_viewer[key] <= 0:
            del self.per_viewer[key]


STREAMS: web.AppKey[Streams] = web.AppKey("live_streams", Streams)


def viewer_key(request: web.Request, who: Viewer) -> str:
    """Whose streams these are: the person's name, or the client's address when nobody is
    signed in (open reads). Behind a reverse proxy every anonymous viewer has its address."""
    if who.via == "open":
        return "address " + source_of(request.transport)
    return "person " + who.name


async def live(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: ``change`` with the newest entry id and the status whenever either
    changes (the store is looked at every second: any writer's change is seen, the webhooks',
    people's, the scheduler's), a comment every 15 s to keep proxies from closing it."""
    state: AppState = request.app[AppState.KEY]
    who, _ = viewer(request, state)
    if who is None:
        raise web.HTTPUnauthorized(text="sign in", headers=HEADERS)
    incident_id = incident_id_of(request)
    streams = request.app[STREAMS]
    key = viewer_key(request, who)
    refusal = streams.take(key, state.settings)
    if refusal is not None:
        raise refusal
    task = asyncio.current_task()
    assert task is not None
    streams.tasks.add(task)
    try:
        return await _stream(request, state, incident_id)
    finally:
        streams.tasks.discard(task)
        streams.give_back(key)


async def _stream(request: web.Request, state: AppState, incident_id: int) -> web.StreamResponse:
    seen = await read_or_503(state.store.queries.last_change(incident_id))
    if seen is None:
        raise web.HTTPNotFound(text="no such incident", headers=HEADERS)
    after = parse_id(request.query.get("after", ""))  # "²" and such: not a time, ignored
    if after is not None:
        seen = (after, "")  # what the page shows: anything newer is news at once
    response = web.StreamResponse(
        headers={
            **HEADERS,
            "Content-Type": "text/event-stream",
            "X-Accel-Buffering": "no",  # nginx: do not hold the events back
        }
    )
    await response.prepare(request)
    # A stream opened with a session cookie ends once that session has: a sign-out, or the
    # reload that removed its token (the database says so, whichever process ended it).
    signed_in = request.get(LIVE_SESSION)
    try:
        await response.write(b"retry: 3000\n\n")
        quiet = since_check = 0.0
        while True:
            await asyncio.sleep(POLL_S)
            since_check += POLL_S
            if signed_in is not None and since_check >= SESSION_CHECK_S:
                since_check = 0.0
                live = await state.store.sessions.is_live(
                    id_hash=id_hash(signed_in), now=time.time_ns()
                )
                if not live:
                    await response.write(b"event: signedout\ndata: {}\n\n")
                    break
            now = await state.store.queries.last_change(incident_id)
            if now is None:
                break
            if now != seen and (now[0] != seen[0] or seen[1]):
                data = json.dumps({"last": now[0], "status": now[1]})
                await response.write(f"event: change\ndata: {data}\n\n".encode())
                quiet = 0.0
            seen = now
            quiet += POLL_S
            if quiet >= HEARTBEAT_S:
                await response.write(b": still here\n\n")
                quiet = 0.0
    except (ConnectionResetError, StoreUnavailable, asyncio.CancelledError):
        pass
    return response


async def stop_live(app: web.Application) -> None:
    """At shutdown: end the live streams (their pages reconnect to the next process)."""
    running = list(app[STREAMS].tasks)
    for task in running:
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.gather(*running, return_exceptions=True)


# A page's, not the API's: the OpenAPI document leaves it out, as it does pages.ROUTES.
ROUTES = [("GET", "/incidents/{id}/live", live)]


def install(app: web.Application) -> None:
    """The live stream's route and its bookkeeping (app.py calls this, after pages.install)."""
    app[STREAMS] = Streams()
    app.on_shutdown.append(stop_live)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
