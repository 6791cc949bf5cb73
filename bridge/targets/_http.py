"""One HTTP request for the targets: timeouts, no redirects, errors without secrets.

aiohttp's own exceptions name the URL, and a webhook URL or a Telegram bot URL is a secret,
so they are turned into ``RetryableError``/``PermanentError`` with a bare reason and raised
``from None``: neither the message nor the traceback chain carries the URL.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.delivery.classify import Verdict, classify
from bridge.delivery.protocol import DeliveryResult, PermanentError, RetryableError
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
