"""The public status page (docs/status-page.md): ``GET /status`` (HTML), ``/status/feed.atom``
(Atom, RFC 4287) and ``/status/status.css``, served without sign-in on the main listener and,
with ``--status-listen``, alone on a listener of their own.

What they show is decided by ``core/status.py`` from ``store/status.py``'s read: the
components of the rules with their states, and the updates marked public with their public
text and title. Nothing else of an incident reaches these handlers, so nothing else can leak.
No cookie is read or set; the answers may be cached for a short while by anyone.
"""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from aiohttp import web

from bridge.core.status import ComponentState, ShownUpdate, State, shown_updates, states
from bridge.core.timeutil import NS, format_ns
from bridge.http.pages.render import CSP, render, templates_dir
from bridge.service import AppState
from bridge.store.interface import StoreUnavailable

PAGE_PATH = "/status"
FEED_PATH = "/status/feed.atom"
CSS_PATH = "/status/status.css"
# The newest public updates shown (older ones stay in the database).
MAX_UPDATES = 50
# Shared caches may keep the answer this long: a page many people reload during an outage is
# read from the database at most once per interval per cache.
CACHE = "public, max-age=30"
STATE_NAMES: dict[State, str] = {
    "operational": "Operational",
    "degraded": "Degraded performance",
    "outage": "Outage",
}
OVERALL: dict[State, str] = {
    "operational": "All systems operational",
    "degraded": "Some systems are degraded",
    "outage": "Some systems are down",
}
ATOM = "http://www.w3.org/2005/Atom"
_FEED_NAMESPACE = uuid.UUID("8f0c6a52-35d6-4b33-9a52-1d8f0e6a5b10")
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": CACHE,
}


async def _read(state: AppState) -> tuple[list[ComponentState], list[ShownUpdate]]:
    try:
        read = await state.store.status.read(limit=MAX_UPDATES)
    except StoreUnavailable:
        raise web.HTTPServiceUnavailable(
            text="the status is unavailable for a moment; try again",
            headers={"Retry-After": "5", "Cache-Control": "no-store"},
        ) from None
    components = state.runtime.components
    return (
        states(components, read.open_incidents()),
        shown_updates(read.updates, read.by_id(), components),
    )


def _overall(component_states: list[ComponentState]) -> State:
    order: tuple[State, ...] = ("operational", "degraded", "outage")
    return max((c.state for c in component_states), key=order.index, default="operational")


def _human(ns: int) -> str:
    return datetime.fromtimestamp(ns // NS, UTC).strftime("%Y-%m-%d %H:%M UTC")


async def status_page(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    component_states, updates = await _read(state)
    overall = _overall(component_states)
    text = render(
        "status.html.j2",
        title=state.settings.status_title,
        components=component_states,
        state_names=STATE_NAMES,
        overall=overall,
        overall_text=OVERALL[overall],
        updates=[
            {
                "title": u.title,
                "text": u.text,
                "components": u.components,
                "at_text": format_ns(u.at),
                "at_human": _human(u.at),
            }
            for u in updates
        ],
    )
    return web.Response(text=text, content_type="text/html", headers=_HEADERS)


def _base(request: web.Request, state: AppState) -> str:
    """Where the public reaches the page: ``--external-url`` when set (behind a proxy), else
    the URL this request came to."""
    if state.settings.external_url:
        return state.settings.external_url.rstrip("/")
    return str(request.url.origin())


def _urn(base: str, what: str) -> str:
    """A stable id: the same for the same service address and thing, on every replica."""
    return uuid.uuid5(_FEED_NAMESPACE, f"{base}\n{what}").urn


def feed_xml(title: str, base: str, updates: list[ShownUpdate]) -> bytes:
    """The Atom document (RFC 4287): the feed's and each entry's id, title, updated; the
    author at the feed's level; a link to the page."""
    ET.register_namespace("", ATOM)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: Any) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM}}}{tag}", {k: str(v) for k, v in attrs.items()})
        if text is not None:
            el.text = text
        return el

    feed = ET.Element(f"{{{ATOM}}}feed")
    sub(feed, "id", _urn(base, "status"))
    sub(feed, "title", title)
    newest = max((u.at for u in updates), default=0)
    sub(feed, "updated", format_ns(newest - newest % NS))
    author = sub(feed, "author")
    sub(author, "name", title)
    sub(feed, "link", rel="alternate", type="text/html", href=f"{base}{PAGE_PATH}")
    sub(feed, "link", rel="self", type="application/atom+xml", href=f"{base}{FEED_PATH}")
    for u in updates:
        entry = sub(feed, "entry")
        sub(entry, "id", _urn(base, f"update {u.entry_id}"))
        sub(entry, "title", u.title)
        stamp = format_ns(u.at - u.at % NS)
        sub(entry, "updated", stamp)
        sub(entry, "published", stamp)
        sub(entry, "link", rel="alternate", type="text/html", href=f"{base}{PAGE_PATH}")
        for name in u.components:
            sub(entry, "category", term=name)
        sub(entry, "content", u.text, type="text")
    document: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return document


async def status_feed(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    _component_states, updates = await _read(state)
    body = feed_xml(state.settings.status_title, _base(request, state), updates)
    return web.Response(
        body=body,
        content_type="application/atom+xml",
        charset="utf-8",
        headers={"Cache-Control": CACHE, "X-Content-Type-Options": "nosniff"},
    )


@functools.cache
def _css() -> bytes:
    path: Path = templates_dir() / "static" / "status.css"
    return path.read_bytes()


async def status_css(request: web.Request) -> web.Response:
    return web.Response(
        body=_css(),
        content_type="text/css",
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


ROUTES = [(PAGE_PATH, status_page), (FEED_PATH, status_feed), (CSS_PATH, status_css)]


def add_routes(app: web.Application) -> None:
    for path, handler in ROUTES:
        app.router.add_get(path, handler)


def create_status_app(state: AppState) -> web.Application:
    """The routes of ``--status-listen``: the status page, its feed and stylesheet, nothing
    else (every other path is a 404), so that it can be exposed where the rest is not."""
    app = web.Application(client_max_size=1024)
    app[AppState.KEY] = state
    add_routes(app)
    return app
