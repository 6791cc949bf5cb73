"""One HTTP request for the targets: timeouts, no redirects, errors without secrets.

aiohttp's own exceptions name the URL, and a webhook URL or a Telegram bot URL is a secret,
so they are turned into ``RetryableError``/``PermanentError`` with a bare reason and raised
``from None``: neither the message nor the traceback chain carries the URL.
"""

from __future__ import annotations

import asyncio
import contextvars
import json as jsonlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge.delivery.classify import Verdict, classify
from bridge.delivery.protocol import DeliveryResult, PermanentError, RateLimited, RetryableError
from bridge.targets.base import Target, TargetDeps

if TYPE_CHECKING:
    import aiohttp

USER_AGENT = "incident-bridge"
MAX_RESPONSE_BYTES = 1 << 20


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return jsonlib.loads(self.body)
        except ValueError:
            return None


def session_of(deps: TargetDeps) -> aiohttp.ClientSession:
    if deps.session is None:
        raise PermanentError("no_http_session")
    return deps.session


async def post(
    deps: TargetDeps,
    url: str,
    *,
    json: Any = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> Response:
    """POST and read the answer; transport failures become bounded-reason errors."""
    hdrs = dict(headers or {})
    if json is not None:
        data = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":")).encode()
        hdrs.setdefault("Content-Type", "application/json; charset=utf-8")
    return await request(deps, "POST", url, data=data, headers=hdrs, timeout_s=timeout_s)


async def request(
    deps: TargetDeps,
    method: str,
    url: str,
    *,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> Response:
    """Send and read the answer (at most MAX_RESPONSE_BYTES); transport failures become
    bounded-reason errors, raised ``from None``."""
    import aiohttp  # lazily: REGISTRY must import cheaply for config validation

    session = session_of(deps)
    hdrs = {"User-Agent": USER_AGENT, **(headers or {})}
    failure: RetryableError | PermanentError
    try:
        async with session.request(
            method,
            url,
            data=data,
            headers=hdrs,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            # Read to the end (a bounded amount): read(n) may stop at the first chunk.
            body = bytearray()
            async for chunk in resp.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) >= MAX_RESPONSE_BYTES:
                    break
            return Response(resp.status, dict(resp.headers), bytes(body[:MAX_RESPONSE_BYTES]))
    except TimeoutError:
        failure = RetryableError("timeout")
    except aiohttp.InvalidURL:
        failure = PermanentError("invalid_url")
    except aiohttp.ClientSSLError:
        failure = RetryableError("tls")
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError):
        failure = RetryableError("connection")
    except aiohttp.ClientError:
        failure = RetryableError("http_client")
    except asyncio.CancelledError:
        raise
    except ValueError:  # yarl rejects a malformed URL with ValueError
        failure = PermanentError("invalid_url")
    raise failure from None


def check(resp: Response, deps: TargetDeps, *, vendor: str = "") -> Verdict:
    """Classify and raise on failure; returns the (ok) outcome."""
    outcome = classify(resp.status, resp.headers, resp.body, vendor=vendor, now=deps.clock())
    outcome.raise_for()
    return outcome


async def post_message(target: Target, url: str, payload: Any, *, vendor: str) -> DeliveryResult:
    """POST one JSON message to a chat webhook that answers with nothing worth keeping."""
    resp = await post(target.deps, url, json=payload, timeout_s=target.config.timeout_s)
    check(resp, target.deps, vendor=vendor)
    return DeliveryResult()


# A vendor's limit is kept with this margin: it measures the gap between arrivals, which
# jitters by some milliseconds around the gap between sends.
PACE_MARGIN = 0.05
PACE_MARGIN_S = 0.02


# Who is asking for a turn (the incident a send is about): a request refused for a turn too far
# away keeps that turn reserved under it, and takes it when it comes back (``Buckets``).
TICKET: contextvars.ContextVar[str | None] = contextvars.ContextVar("ticket", default=None)


@dataclass
class Buckets:
    """The rate limits of one target's remote API, per scope (a method, one channel's posts).

    Every request of the target takes its scope's turn here just before it goes out, the
    requests of sends already running included: at most ``burst`` requests at once, then one
    per ``interval`` (plus a margin), and none inside a window the vendor gave in a
    rate-limited answer (``block``). After such an answer the scope keeps to one request per
    interval (no burst): the vendor has shown it counts more strictly than assumed.
    A request whose turn is further away than ``max_wait`` is not sent: ``RateLimited`` with
    the time to wait and the scope, which the worker turns into a wait of its row. That turn is
    kept for the request's ``TICKET`` (its incident) until a minute after it: coming back at
    its time it takes it, so a queue of refused requests is served one turn each, in order,
    instead of every one of them asking again at every turn.
    """

    clock: Callable[[], float] = time.monotonic
    # The scope's theoretical next turn when sending steadily (the generic cell rate
    # algorithm): a request may go ``burst - 1`` gaps before it.
    _tat: dict[str, float] = field(default_factory=dict)
    _blocked: dict[str, float] = field(default_factory=dict)
    _strict: set[str] = field(default_factory=set)
    _reserved: dict[tuple[str, str], float] = field(default_factory=dict)  # (scope, ticket)

    @staticmethod
    def gap(interval: float) -> float:
        return interval * (1 + PACE_MARGIN) + PACE_MARGIN_S if interval > 0 else 0.0

    def _slot(self, scope: str, interval: float, burst: int, now: float) -> float:
        burst = 1 if scope in self._strict else max(1, burst)
        early = (burst - 1) * self.gap(interval)
        return max(now, self._tat.get(scope, 0.0) - early, self._blocked.get(scope, 0.0))

    def ready_in(self, scope: str, interval: float, burst: int = 1) -> float:
        """Seconds until ``scope`` may send (0: now)."""
        now = self.clock()
        return self._slot(scope, interval, burst, now) - now

    async def acquire(
        self,
        scope: str,
        interval: float,
        *,
        max_wait: float,
        burst: int = 1,
        reserve: bool = True,
    ) -> None:
        """Wait for ``scope``'s turn (at most ``max_wait``); ``reserve`` False: a refused
        request keeps no turn (a call that is simply left out when it has none)."""
        if len(self._tat) > 1000:  # one scope per dedicated channel: forget the idle ones
            self._forget_idle()
        ticket = TICKET.get() if reserve else None
        held = self._reserved.pop((scope, ticket), None) if ticket is not None else None
        while True:
            now = self.clock()
            kept = held is not None and held + 60.0 > now
            if held is not None and kept:
                slot = max(held, self._blocked.get(scope, 0.0))  # the turn kept for it
            else:
                slot = self._slot(scope, interval, burst, now)
            held = None
            if slot - now > max_wait:
                if ticket is not None:
                    # keep this turn for the request when it comes back
                    self._reserved[(scope, ticket)] = slot
                    if not kept:
                        self._tat[scope] = max(self._tat.get(scope, 0.0), slot) + self.gap(interval)
                raise RateLimited("rate_limited", slot - now, scope=scope)
            if kept:
                if slot > now:
                    await asyncio.sleep(slot - now)
                if self._blocked.get(scope, 0.0) <= self.clock():
                    return
                continue
            # reserved before sleeping: no two requests share a turn
            self._tat[scope] = max(self._tat.get(scope, 0.0), slot) + self.gap(interval)
            if slot > now:
                await asyncio.sleep(slot - now)
            if self._blocked.get(scope, 0.0) <= self.clock():
                return
            # a rate-limited answer came while this one waited: its window holds this too

    def _forget_idle(self) -> None:
        now = self.clock()
        self._reserved = {k: at for k, at in self._reserved.items() if at + 60.0 > now}
        for scope in [s for s, tat in self._tat.items() if tat < now]:
            if self._blocked.get(scope, 0.0) < now:
                self._tat.pop(scope, None)
                self._blocked.pop(scope, None)
                self._strict.discard(scope)

    def block(self, scope: str, seconds: float) -> None:
        """The vendor said to wait ``seconds`` before the next request of ``scope``."""
        until = self.clock() + seconds
        self._strict.add(scope)
        if until > self._blocked.get(scope, 0.0):
            self._blocked[scope] = until
            self._tat[scope] = until
