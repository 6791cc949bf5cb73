"""A request's query parameters, read strictly: every handler that takes some names the ones it
knows and reads numbers in plain digits, and a bad one is a 400 naming the parameter."""

from __future__ import annotations

from aiohttp import web

from bridge.http.errors import HTTPError


def bad_param(field: str, message: str) -> HTTPError:
    return HTTPError(400, message, field=field)


def known_params(request: web.Request, known: tuple[str, ...]) -> None:
    """A misspelt filter would silently list everything: name it instead."""
    for name in request.query:
        if name not in known:
            raise bad_param(name, f"unknown query parameter; known: {', '.join(known)}")


def int_param(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    """A whole number in plain ASCII digits, from ``lo`` to ``hi``. Not ``int()`` alone: it
    takes other scripts' digits, signs, spaces and underscores (``١٢``, ``+5``, `` 5``, ``1_0``)
    and raises on thousands of digits."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise bad_param(name, f"{raw!r} is not a whole number in plain digits")
    if len(raw.lstrip("0")) > len(str(hi)) or not lo <= int(raw) <= hi:
        raise bad_param(name, f"must be between {lo} and {hi}")
    return int(raw)
