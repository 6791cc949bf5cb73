"""Who looks at a page, and signing in and out (docs/web.md): the session cookie checked
against the database by the middleware, the trusted proxy's header, the CSRF cookie of a
header-named viewer, a form's origin, the ``next`` path kept inside the site, and the forms'
body read within its bound. Uses ``render``; the views and the forms use it."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn
from urllib.parse import unquote, urlencode

from aiohttp import web

from bridge.http import auth, session
from bridge.http.pages.render import HEADERS, error_page, html_response, render
from bridge.http.session import Viewer
from bridge.service import AppState
from bridge.service.access import token_fingerprint
from bridge.store.interface import NewSession, StoreUnavailable

log = logging.getLogger("bridge.pages")  # one logger for the pages, whichever module

MAX_FORM = 64 * 1024
SESSION_KEY: web.AppKey[bytes] = web.AppKey("session_key", bytes)
CSRF_COOKIE = "ib_csrf"


def is_secure(request: web.Request, state: AppState) -> bool:
    return request.secure or state.settings.external_url.lower().startswith("https://")


def _key(request: web.Request) -> bytes:
    return request.app[SESSION_KEY]


def _header_user(request: web.Request, state: AppState) -> str | None:
    """The person the trusted proxy names (the middleware has refused the header twice or
    from elsewhere); a name the service or a token already uses is refused (403)."""
    name = state.settings.web_user_header
    if not name:
        return None
    value = request.headers.get(name, "").strip()
    if not value or len(value) > 200 or not value.isprintable():
        return None
    if session.reserved_name(value, state.api):
        log.warning(
            "web: %s names %r, a name of the service or of an API token: refused", name, value
        )
        raise web.HTTPForbidden(
            text=f"{value!r} is a name of the service or of an API token; the proxy must not "
            "give it (docs/web.md)",
            headers=HEADERS,
        )
    return value


def viewer(request: web.Request, state: AppState) -> tuple[Viewer | None, str | None]:
    """Who looks (None: nobody may read without signing in), and a CSRF cookie nonce to set
    when a header-named viewer has none yet."""
    user = _header_user(request, state)
    if user is not None:
        nonce = request.cookies.get(CSRF_COOKIE, "")
        fresh = None
        if not re.fullmatch(r"[A-Za-z0-9_-]{32,64}", nonce):
            nonce = fresh = secrets.token_urlsafe(32)
        scope = state.settings.web_user_header_scope
        csrf = session.header_csrf(_key(request), user, nonce)
        return Viewer(user, scope, csrf, "header"), fresh
    found = session.viewer_from_cookie(request, _key(request), state.api, time.time())
    if found is not None:
        return found, None
    token = auth.bearer(request)
    known = auth.identify(token, state.api) if token else None
    if known is not None:
        # A script or a monitor reading a page with an API token: it sees, it never posts (no
        # CSRF token: a form needs a browser's session).
        return Viewer(known[0], known[1], "", "token"), None
    if state.api.open_reads:
        return Viewer("anonymous", session.READ, "", "open"), None
    return None, None


def with_csrf_cookie(response: web.StreamResponse, nonce: str | None, secure: bool) -> None:
    if nonce:
        response.set_cookie(
            CSRF_COOKIE, nonce, path="/", httponly=True, samesite="Strict", secure=secure
        )


def to_login(request: web.Request) -> NoReturn:
    target = request.path_qs if request.method == "GET" else "/"
    raise web.HTTPSeeOther(location="/login?" + urlencode({"next": target}), headers=HEADERS)


def signed_in(request: web.Request) -> tuple[AppState, Viewer, str | None]:
    """A page's state, who looks and the CSRF cookie nonce to set (``viewer``); nobody who
    may read is sent to the sign-in page."""
    state: AppState = request.app[AppState.KEY]
    who, nonce = viewer(request, state)
    if who is None:
        to_login(request)
    return state, who, nonce


def same_origin(request: web.Request, state: AppState) -> bool:
    """A form's POST from another site is refused even with a valid cookie (SameSite=Strict
    already keeps the cookie from it): the Origin, when the browser sends one, must be ours."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    allowed = {f"{request.scheme}://{request.host}"}
    if state.settings.external_url:
        parts = state.settings.external_url.split("/")
        allowed.add("/".join(parts[:3]))
    return origin in allowed


# --- sign in and out ------------------------------------------------------------------------


def _next(value: str) -> str:
    """Only a path of this site, else ``/``: an open redirect otherwise. Browsers drop tabs and
    newlines anywhere in a Location, trim controls and spaces and read a backslash as ``/``, so
    ``/<TAB>/evil.example`` would go to ``//evil.example``. The value must be printable ASCII
    without spaces, start with one ``/``, hold no backslash, and still be such a path (controls
    aside: ``%20`` is a space) once percent-decoded, so that nothing in front that decodes it
    makes it another site either."""
    if len(value) > 2000 or _NOT_PLAIN.search(value):
        return "/"
    decoded = value
    for _ in range(3):  # %252f -> %2f -> /
        decoded = unquote(decoded)
    for text in (value, decoded):
        if not text.startswith("/") or text.startswith("//") or _CONTROL.search(text):
            return "/"
    return value


_NOT_PLAIN = re.compile(r"[^\x21-\x7e]")  # anything but printable ASCII: spaces, controls, é
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")  # C0 controls, DEL, and the backslash


async def login_form(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    nxt = _next(request.query.get("next", "/"))
    return html_response(
        render("login.html.j2", next=nxt, error="", viewer=None, header=_header_mode(state))
    )


def _header_mode(state: AppState) -> bool:
    return bool(state.settings.web_user_header)


async def login(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    if not same_origin(request, state):
        return error_page(403, "this form was posted from another site", None)
    form = await read_form(request)
    nxt = _next(form.get("next", "/"))
    token = form.get("token", "").strip()
    found = auth.identify(token, state.api) if token else None
    if found is None:
        log.info("web sign-in refused: wrong or missing token")
        page = render(
            "login.html.j2",
            next=nxt,
            error="That token is not one this service knows.",
            viewer=None,
            header=_header_mode(state),
        )
        return html_response(page, 401)
    name, scope, secret = found
    fp = token_fingerprint(secret)
    # The session is a row first: a sign-out (or the token's removal) ends it there, for
    # every copy of the cookie and every process on the database.
    session_id, now = session.new_session_id(), time.time()
    previous = request.get(session.LIVE_SESSION)  # this browser's session before: it ends
    try:
        await state.store.sessions.start(
            NewSession(
                id_hash=session.id_hash(session_id),
                name=name,
                scope=scope,
                fingerprint=fp,
                now=int(now * 1e9),
                expires_at=int((now + session.MAX_AGE_S) * 1e9),
                replaces=session.id_hash(previous) if previous else None,
            )
        )
    except StoreUnavailable:
        return error_page(503, "signing in needs the database, which cannot be reached now", None)
    response = web.HTTPSeeOther(location=nxt, headers=HEADERS)
    cookie = session.make_cookie(_key(request), name, scope, fp, now, session_id)
    session.set_cookie(response, cookie, secure=is_secure(request, state))
    log.info("web sign-in: %s (%s)", name, scope)
    raise response


async def logout(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    who, _ = viewer(request, state)
    form = await read_form(request)
    if who is None or not who.csrf or not session.csrf_ok(who, form.get("csrf", "")):
        return error_page(403, "sign-out needs the form of a page of this site", who)
    session_id = request.get(session.LIVE_SESSION)
    if who.via == "session" and session_id:
        # Ended on the server: a copy of the cookie (another tab, a stolen one) ends with it.
        try:
            await state.store.sessions.end(
                id_hash=session.id_hash(session_id), now=time.time_ns(), why="signed out"
            )
        except StoreUnavailable:
            return error_page(503, "signing out needs the database; try again", who)
        log.info("web sign-out: %s", who.name)
    response = web.HTTPSeeOther(location="/login", headers=HEADERS)
    session.clear_cookie(response, secure=is_secure(request, state))
    raise response


async def read_form(request: web.Request) -> dict[str, str]:
    if request.content_length is not None and request.content_length > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(MAX_FORM, request.content_length, headers=HEADERS)
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths that are not pages: no session to check there (the API reads Bearer tokens only, the
# stylesheet and the script are the same for everyone), so they pay no database read for it.
_NOT_PAGES = ("/api/", "/-/", "/metrics", "/static/")


@web.middleware
async def check_sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Before a page's handler: whether its session cookie names a live session (one read of
    the database), so that ``viewer`` stays a plain function for every page handler."""
    if not request.path.startswith(_NOT_PAGES):
        state: AppState = request.app[AppState.KEY]
        header = state.settings.web_user_header
        if header and header in request.headers:
            refused = session.header_refusal(
                request, header, state.settings.web_user_header_trusted_proxies
            )
            if refused is not None:
                status, why = refused
                log.warning("web: refused a request from %s: %s", request.remote, why)
                return error_page(status, why, None)
        if session.COOKIE in request.cookies:
            await session.check_session(request, _key(request), state.store, time.time())
    return await handler(request)
