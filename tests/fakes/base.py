"""The common part of every fake: a real HTTP server on a free loopback port that records
requests and can be scripted to fail the next N of them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
F = TypeVar("F", bound="FakeServer")


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Failure:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    path: str | None = None


class FakeServer:
    """Subclasses add routes in ``routes()`` and may override ``rate_limit_body``."""

    max_body = 1 << 20

    def __init__(self) -> None:
        self.app = web.Application(middlewares=[self._middleware], client_max_size=self.max_body)
        self.requests: list[Recorded] = []
        self.failures: deque[Failure] = deque()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.routes()

    def routes(self) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeServer:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def rate_limit_body(self, retry_after: float | None) -> Any:
        return {"message": "rate limited"}

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 429,
        retry_after: float | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        path: str | None = None,
    ) -> None:
        """The next ``n`` requests (to ``path``, if given) get ``status`` (429: with
        Retry-After and the vendor's rate-limit body) instead of reaching the handler."""
        hdrs = dict(headers or {})
        if retry_after is not None:
            hdrs.setdefault("Retry-After", f"{retry_after:g}")
        if body is None:
            body = self.rate_limit_body(retry_after) if status == 429 else {"error": "scripted"}
        if isinstance(body, str | bytes):
            raw = body.encode() if isinstance(body, str) else body
            ctype = "text/plain"
        else:
            raw, ctype = json.dumps(body).encode(), "application/json"
        for _ in range(n):
            self.failures.append(Failure(status, raw, hdrs, ctype, path))

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        f = next((f for f in self.failures if f.path in (None, request.path)), None)
        if f is not None:
            self.failures.remove(f)
            return web.Response(
                status=f.status, body=f.body, headers=f.headers, content_type=f.content_type
            )
        return await handler(request)


def json_body(request_body: bytes) -> Any:
    try:
        return json.loads(request_body)
    except ValueError:
        return None


async def read_json(request: web.Request) -> Any:
    return json_body(await request.read())


def answer_lost(lose: list[str], request: web.Request) -> bool:
    """The next of the scripted losses of an answer (the work behind it done): ``close`` drops
    the connection (raises), any other is True, for an error answer instead; False when none
    is scripted."""
    if not lose:
        return False
    how = lose.pop(0)
    if how == "close" and request.transport is not None:
        request.transport.close()
        raise ConnectionResetError("the fake drops the answer")
    return True


@contextlib.contextmanager
def in_a_thread(*servers: FakeServer) -> Iterator[None]:
    """The fakes started on an event loop in a thread of their own, for a test that talks to
    the bridge with blocking calls; closed, and the loop ended, at the end."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        for server in servers:
            loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield
    finally:
        for server in servers:
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextlib.asynccontextmanager
async def serving(server: F) -> AsyncIterator[F]:
    """``server`` started, and closed at the end (a fixture's whole life of a fake)."""
    await server.start()
    try:
        yield server
    finally:
        await server.close()
