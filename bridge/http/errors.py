"""The one way every endpoint answers an error: ``{"error": message}`` as JSON, with ``field``
when one input is to blame, and the status and headers the error calls for.

Handlers that return their answer (the receiver, which has to be fast) call ``error_response``;
the others raise ``HTTPError`` and are wrapped by ``json_errors``, which also turns aiohttp's
own errors (plain text by default) into the same JSON.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

log = logging.getLogger("bridge.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# aiohttp's error headers that matter to a client; the rest describe aiohttp's text body.
_KEPT_HEADERS = ("allow", "www-authenticate", "retry-after")


def error_response(
    status: int,
    message: str,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, headers=dict(headers) if headers else None)


class HTTPError(Exception):
    """Raised by a handler wrapped in ``json_errors``; answered with ``error_response``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return error_response(self.status, self.message, field=self.field, headers=self.headers)


def store_unavailable() -> HTTPError:
    """The store cannot answer now (locked, full, closed): a 503 the client may retry."""
    return HTTPError(503, "store unavailable, retry later", headers={"Retry-After": "1"})


def from_aiohttp(exc: web.HTTPException) -> web.Response:
    headers = {k: v for k, v in exc.headers.items() if k.lower() in _KEPT_HEADERS}
    return error_response(exc.status, exc.reason, headers=headers)


def json_errors(handler: Handler) -> Handler:
    """Errors of ``handler`` as JSON.

    A wrapper of each handler rather than an application middleware: a middleware wraps every
    route, the webhook receiver too, whose errors are JSON already and which is the one route
    that has to be fast (two more coroutines to start and resume for every webhook)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except HTTPError as exc:
            return exc.response()
        except web.HTTPException as exc:
            return from_aiohttp(exc)
        except Exception:
            # A bug, not the client's fault: logged with its traceback, answered as JSON like
            # every other error (never aiohttp's plain text), and the service goes on.
            log.exception("%s %s failed", request.method, request.path)
            return error_response(500, "internal error; the service log has the details")

    return wrapped


async def unmatched(request: web.Request) -> web.StreamResponse:
    """Any other /api/ path or method: 405 with ``Allow`` when the path exists, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is request.match_info.route.resource:
            continue
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    if allowed:
        return from_aiohttp(web.HTTPMethodNotAllowed(request.method, sorted(allowed)))
    return from_aiohttp(web.HTTPNotFound())
