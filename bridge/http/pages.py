"""The web pages (docs/web.md): the incident list at ``/`` and the incident at
``/incidents/{id}``, server-rendered from ``templates/pages/`` (Jinja2, every value escaped),
with forms for people's actions and live updates.

The pages are one more client of the service: a form is read into the same pydantic body as
the API's action and built into the same command (``http/actions.ACTIONS``), then
``service.act`` runs it with the signed-in person as the actor and the form's one-time key as
its Idempotency-Key (a double submit does it once). The answer is a redirect back to the page
(POST, redirect, GET), or the page again with the refusal and its 4xx status.

Progressive enhancement: everything works without JavaScript. ``static/app.js`` (the only
script, no inline script anywhere: the Content-Security-Policy forbids it) listens to the
incident's Server-Sent Events (``/incidents/{id}/live``) and, when the timeline changes, fetches
the new entries and the status block as HTML fragments rendered by the same templates.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlencode

import jinja2
from aiohttp import web
from markupsafe import Markup, escape
from pydantic import ValidationError

from bridge.core.actions import allowed_moves
from bridge.core.events import TIMELINE_KINDS
from bridge.core.incidents import MILESTONES, STATUSES, Incident
from bridge.core.policy import ROLES, SEVERITIES
from bridge.core.postmortem import SECTION_INFO
from bridge.core.timeutil import NS, parse_rfc3339
from bridge.core.values import parse_id
from bridge.http import auth, session
from bridge.http.actions import ACTIONS, ActionBody
from bridge.http.session import Viewer
from bridge.kb import postmortems
from bridge.service import AppState, act
from bridge.store.interface import Idempotency, QueryError, StoreUnavailable

log = logging.getLogger("bridge.pages")
T = TypeVar("T")

PAGE_SIZE = 50
MAX_FORM = 64 * 1024
# No inline script or style, no plugin, no framing; forms post only here.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
SESSION_KEY: web.AppKey[bytes] = web.AppKey("session_key", bytes)
CSRF_COOKIE = "ib_csrf"


def templates_dir() -> Path:
    from bridge.delivery.templates import default_templates_dir

    return default_templates_dir() / "pages"


def _safe_url(url: Any) -> bool:
    """Only http(s) links: a label or annotation could say ``javascript:``."""
    return isinstance(url, str) and url.lower().startswith(("http://", "https://"))


def _short_time(text: str | None) -> str:
    return (text or "")[11:19]


def _span(seconds: int) -> str:
    """``45s``, ``3m 12s``, ``2h 5m``, ``3d 4h``: an incident's age, a milestone's delay."""
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def _age(text: str | None, now_ns: int) -> str:
    at = parse_rfc3339(text) if text else None
    return "" if at is None else _span(max(0, (now_ns - at) // NS))


def milestone_rows(incident: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(name, when, how long after the first alert started) per milestone: the header's
    durations are the MTTx of this one incident (time to acknowledge, mitigate, resolve)."""
    started = parse_rfc3339(incident["started_at"]) if incident.get("started_at") else None
    rows = []
    for name in MILESTONES:
        text = str(incident.get(name) or "")
        at = parse_rfc3339(text) if text else None
        label = name.removesuffix("_at").replace("_", " ")
        if at is None:
            rows.append((label, "—", ""))
            continue
        when = f"{text[:10]} {text[11:19]} UTC"
        after = (
            ""
            if started is None or name == "started_at"
            else "+" + _span(max(0, (at - started) // NS))
        )
        rows.append((label, when, after))
    return rows


# Markdown's headings below the page's own: the postmortem's ``#`` title sits under the
# section's <h2>, so it is an <h3> (screen readers' heading outline stays in order).
_HEADING_SHIFT = 2


def _table_open(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    """A table in a region that scrolls sideways (on a phone), reachable with Tab and named
    by the heading above it, like the page's other tables; ``(2)`` for a second table under
    the same heading (a region's name must be its own)."""
    heading = "Table"
    for at in range(idx - 1, -1, -1):
        if tokens[at].type == "heading_open":
            words = (c.content for c in tokens[at + 1].children or () if c.type != "softbreak")
            heading = "".join(words).strip() or heading
            break
    seen = env.setdefault("tables", {})
    seen[heading] = seen.get(heading, 0) + 1
    name = heading if seen[heading] == 1 else f"{heading} ({seen[heading]})"
    env["in_table"] = True
    label = escape(f"{name}, scrollable")
    return f'<div class="scroll" tabindex="0" role="region" aria-label="{label}">\n<table>\n'


def _table_close(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    env["in_table"] = False
    return "</table>\n</div>\n"


def _text(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    """Text, escaped; in a table's cell the ``<br>`` the postmortem template puts for a line
    break of a value (a cell is one line) is a line break again, and nothing else is HTML."""
    shown = str(escape(tokens[idx].content))
    return shown.replace("&lt;br&gt;", "<br>") if env.get("in_table") else shown


def _heading(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    level = min(6, int(token.tag[1:]) + _HEADING_SHIFT)
    token.tag = f"h{level}"
    return str(self.renderToken(tokens, idx, options, env))


@functools.cache
def _parser() -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    for rule, fn in (
        ("table_open", _table_open),
        ("table_close", _table_close),
        ("text", _text),
        ("heading_open", _heading),
        ("heading_close", _heading),
    ):
        md.add_render_rule(rule, fn)
    return md


def _markdown(text: str) -> str:
    """Markdown to HTML: CommonMark and tables (GitHub's, as the postmortem's are), with raw
    HTML off and only safe links (markdown-it's validation drops ``javascript:``,
    ``vbscript:``, ``file:`` and ``data:`` links)."""
    return str(_parser().render(text, {}))


_KIND_LABELS = {k: k.replace("_", " ") for k in TIMELINE_KINDS}
_URL = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:)\]]")


def linked(text: str) -> str | Markup:
    """The text with its http(s) URLs as links (the similar incidents' pages, a runbook in a
    note), everything escaped; a text without a URL stays a plain string (escaped by the
    template), so that thousands of entries pay only for the ``in`` test."""
    if "http" not in text:
        return text
    out: list[str] = []
    last = 0
    for m in _URL.finditer(text):
        url = m.group(0)
        out.append(str(escape(text[last : m.start()])))
        out.append(f'<a href="{escape(url)}" rel="noopener noreferrer">{escape(url)}</a>')
        last = m.end()
    out.append(str(escape(text[last:])))
    return Markup("".join(out))  # noqa: S704  (every part escaped above)


def timeline_rows(entries: list[dict[str, Any]], previous_day: str = "") -> list[tuple[Any, ...]]:
    """The entries as the template's loop unpacks them: a day's heading on its first entry."""
    rows = []
    day = previous_day
    for e in entries:
        time_text = str(e["time"] or "")
        today = time_text[:10]
        rows.append(
            (
                e["id"],
                e["kind"],
                _KIND_LABELS.get(e["kind"]) or e["kind"],
                today if today != day else "",
                time_text[11:19],
                e["actor"],
                linked(str(e["text"])),
                e.get("corrected_by"),
                e.get("corrected_text"),
                (e.get("data") or {}).get("corrects"),
            )
        )
        day = today
    return rows


@functools.cache
def environment(path: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(path),
        autoescape=True,
        # optional keys (a correction's, a ticket's) read as empty
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["short_time"] = _short_time
    # markdown-it escapes what it does not render (raw HTML is off): its output is safe HTML
    env.filters["markdown"] = lambda text: Markup(_markdown(text))  # noqa: S704
    env.globals.update(
        timeline_rows=timeline_rows,
        milestone_rows=milestone_rows,
        safe_url=_safe_url,
        milestones=MILESTONES,
        roles=ROLES,
        severities=SEVERITIES,
        statuses=STATUSES,
        sections=SECTION_INFO,
    )
    return env


def render(name: str, **context: Any) -> str:
    return environment(str(templates_dir())).get_template(name).render(**context)


def _html(text: str, status: int = 200, extra: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        text=text, status=status, content_type="text/html", headers={**HEADERS, **(extra or {})}
    )


def _secure(request: web.Request, state: AppState) -> bool:
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


def _with_csrf_cookie(response: web.StreamResponse, nonce: str | None, secure: bool) -> None:
    if nonce:
        response.set_cookie(
            CSRF_COOKIE, nonce, path="/", httponly=True, samesite="Strict", secure=secure
        )


def _to_login(request: web.Request) -> web.Response:
    target = request.path_qs if request.method == "GET" else "/"
    raise web.HTTPSeeOther(location="/login?" + urlencode({"next": target}), headers=HEADERS)


def _same_origin(request: web.Request, state: AppState) -> bool:
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


def _error_page(status: int, message: str, who: Viewer | None) -> web.Response:
    return _html(render("error.html.j2", status=status, message=message, viewer=who), status)


async def read_or_503(pending: Awaitable[T]) -> T:
    """A page's read from the store; a store that cannot answer is a 503 page."""
    try:
        return await pending
    except StoreUnavailable as exc:
        raise web.HTTPServiceUnavailable(
            text=f"store unavailable: {exc}", headers=HEADERS
        ) from None


def incident_id_of(request: web.Request) -> int:
    found = parse_id(request.match_info.get("id", ""))  # as the API reads a path's id
    if found is None:
        raise web.HTTPNotFound(text="no such incident", headers=HEADERS)
    return found


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
    return _html(
        render("login.html.j2", next=nxt, error="", viewer=None, header=_header_mode(state))
    )


def _header_mode(state: AppState) -> bool:
    return bool(state.settings.web_user_header)


async def login(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    if not _same_origin(request, state):
        return _error_page(403, "this form was posted from another site", None)
    form = await _form(request)
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
        return _html(page, 401)
    name, scope, secret = found
    fp = session.fingerprint(secret)
    # The session is a row first: a sign-out (or the token's removal) ends it there, for
    # every copy of the cookie and every process on the database.
    session_id, now = session.new_session_id(), time.time()
    previous = request.get(session.LIVE_SESSION)  # this browser's session before: it ends
    try:
        await state.store.sessions.start(
            id_hash=session.id_hash(session_id),
            name=name,
            scope=scope,
            fingerprint=fp,
            now=int(now * 1e9),
            expires_at=int((now + session.MAX_AGE_S) * 1e9),
            replaces=session.id_hash(previous) if previous else None,
        )
    except StoreUnavailable:
        return _error_page(503, "signing in needs the database, which cannot be reached now", None)
    response = web.HTTPSeeOther(location=nxt, headers=HEADERS)
    cookie = session.make_cookie(_key(request), name, scope, fp, now, session_id)
    session.set_cookie(response, cookie, secure=_secure(request, state))
    log.info("web sign-in: %s (%s)", name, scope)
    raise response


async def logout(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    who, _ = viewer(request, state)
    form = await _form(request)
    if who is None or not who.csrf or not session.csrf_ok(who, form.get("csrf", "")):
        return _error_page(403, "sign-out needs the form of a page of this site", who)
    session_id = request.get(session.LIVE_SESSION)
    if who.via == "session" and session_id:
        # Ended on the server: a copy of the cookie (another tab, a stolen one) ends with it.
        try:
            await state.store.sessions.end(
                id_hash=session.id_hash(session_id), now=time.time_ns(), why="signed out"
            )
        except StoreUnavailable:
            return _error_page(503, "signing out needs the database; try again", who)
        log.info("web sign-out: %s", who.name)
    response = web.HTTPSeeOther(location="/login", headers=HEADERS)
    session.clear_cookie(response, secure=_secure(request, state))
    raise response


async def _form(request: web.Request) -> dict[str, str]:
    if request.content_length is not None and request.content_length > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(MAX_FORM, request.content_length, headers=HEADERS)
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


# --- the list -------------------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    who, nonce = viewer(request, state)
    if who is None:
        return _to_login(request)
    q = request.query
    chosen: dict[str, list[str]] = {
        "status": [s for s in q.getall("status", []) if s in STATUSES],
        "severity": [s for s in q.getall("severity", []) if s in SEVERITIES],
        "team": [t for t in q.getall("team", []) if t][:20],
    }
    if "status" not in q:
        chosen["status"] = ["triggered", "acknowledged", "mitigated"]  # open ones first
    text = q.get("q", "").strip()[:500]
    before_text = q.get("before", "")
    before = parse_id(before_text)  # anything else ("²", 30 digits): the first page
    hits: list[dict[str, Any]] = []
    problem = ""
    rows: list[dict[str, Any]] = []
    if text:
        try:
            hits = await read_or_503(state.store.search.search(text, limit=PAGE_SIZE))
        except QueryError as exc:
            problem = str(exc)
    else:
        rows = await read_or_503(
            state.store.queries.list_incidents(
                statuses=chosen["status"],
                severities=chosen["severity"],
                teams=chosen["team"],
                before=before,
                limit=PAGE_SIZE,
            )
        )
    now = state.clock()
    for row in rows:
        row["age"] = _age(row.get("opened_at"), now)
        held = row.get("roles") or {}
        row["commander"] = ", ".join(held.get("commander") or [])
        row["unassigned"] = [r for r in ROLES if not held.get(r)]
    older = None
    if len(rows) == PAGE_SIZE:
        params = [(k, v) for k, vs in chosen.items() for v in vs] + [
            ("before", str(rows[-1]["id"]))
        ]
        older = "/?" + urlencode(params)
    teams = sorted({str(r["team"]) for r in rows if r.get("team")} | set(chosen["team"]))
    page = render(
        "list.html.j2",
        viewer=who,
        rows=rows,
        hits=hits,
        q=text,
        problem=problem,
        chosen=chosen,
        teams=teams,
        older=older,
    )
    response = _html(page)
    _with_csrf_cookie(response, nonce, _secure(request, state))
    return response


# --- the incident ---------------------------------------------------------------------------


def _moves(incident: Mapping[str, Any]) -> tuple[str, ...]:
    shape = Incident(
        id=int(incident["id"]),
        key=str(incident["key"]),
        title=str(incident["title"]),
        severity=str(incident["severity"]),
        status=incident["status"],
        started_at=0,
        opened_at=0,
        acknowledged_at=1 if incident.get("acknowledged_at") else None,
    )
    return allowed_moves(shape)


async def _context(state: AppState, incident_id: int, who: Viewer) -> dict[str, Any] | None:
    incident, followup, rows = await read_or_503(state.store.queries.incident_page(incident_id))
    if incident is None:
        return None
    pm: dict[str, Any] | None = None
    if incident["status"] in ("mitigated", "resolved", "closed"):
        # Drafted from the record once the incident is mitigated; a page of an incident still
        # being worked does not pay for rendering it.
        try:
            pm = await postmortems.show(state, incident_id)
            pm["history"] = await postmortems.versions(state, incident_id)
        except postmortems.PostmortemError as exc:
            pm = {"error": exc.message}
    return {
        "viewer": who,
        "i": incident,
        "moves": _moves(incident),
        "followup": followup,
        "notifications": [r.as_json() for r in rows],
        "pm": pm,
        "last_id": max((e["id"] for e in incident["timeline"]), default=0),
        "form_key": secrets.token_urlsafe(16),
        "error": "",
    }


async def incident_page(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    who, nonce = viewer(request, state)
    if who is None:
        return _to_login(request)
    incident_id = incident_id_of(request)
    context = await _context(state, incident_id, who)
    if context is None:
        return _error_page(404, f"There is no incident {incident_id}.", who)
    response = _html(render("incident.html.j2", **context))
    _with_csrf_cookie(response, nonce, _secure(request, state))
    return response


async def do_action(request: web.Request) -> web.Response:
    """A form's action: the same body model and command as the API's, through service.act."""
    state: AppState = request.app[AppState.KEY]
    who, _ = viewer(request, state)
    if who is None:
        return _to_login(request)
    incident_id = incident_id_of(request)
    name = request.match_info["action"]
    form = await _form(request)
    if not who.can_write:
        return _error_page(403, "You can only look: acting needs a write token.", who)
    if not _same_origin(request, state) or not session.csrf_ok(who, form.get("csrf", "")):
        return _error_page(
            403, "This form has expired or came from another site: reload the page.", who
        )
    fields = {
        k: v for k, v in form.items() if k not in ("csrf", "form_key", "actor") and v.strip() != ""
    }
    name, fields = _adapt(name, fields)
    key = form.get("form_key", "")[:100]
    digest = hashlib.sha256(
        json.dumps([name, sorted(fields.items())], separators=(",", ":")).encode()
    ).hexdigest()
    idempotency = Idempotency(who.name, f"web:{key}", f"web {name} {digest}") if key else None
    if name == "postmortem":
        return await _save_postmortem(state, incident_id, who, fields, idempotency)
    if name == "publish":
        try:
            await postmortems.publish(state, incident_id, who.name)
        except postmortems.PostmortemError as exc:
            return await _refused(state, incident_id, who, exc.status, exc.message)
        raise web.HTTPSeeOther(location=f"/incidents/{incident_id}#postmortem", headers=HEADERS)
    spec = ACTIONS.get(name)
    if spec is None:
        return _error_page(404, f"There is no action {name!r}.", who)
    _summary, model, build = spec
    try:
        body: ActionBody = model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "form"
        return await _refused(state, incident_id, who, 400, f"{where}: {first['msg']}")
    try:
        answer = await act(state, incident_id, build(body, who.name), idempotency=idempotency)
    except StoreUnavailable as exc:
        return _error_page(503, f"The database is not available now ({exc}); try again.", who)
    if answer.status != 200:
        message = str(answer.body.get("error", "refused"))
        return await _refused(state, incident_id, who, answer.status, message)
    anchor = "followup" if name.startswith("followup") else "timeline"
    raise web.HTTPSeeOther(location=f"/incidents/{incident_id}#{anchor}", headers=HEADERS)


def _adapt(name: str, fields: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The page's forms in the API's shapes: one entry form for notes, decisions and action
    items (its ``kind``), the next update in minutes (the API takes seconds)."""
    out: dict[str, Any] = dict(fields)
    if name == "notes":
        kind = out.pop("kind", "note")
        name = {"decision": "decisions", "action": "actions"}.get(kind, "notes")
        if name != "actions":
            out.pop("owner", None)
    if name == "updates" and "next_update_in_minutes" in out:
        minutes = out.pop("next_update_in_minutes")
        out["next_update_in"] = (
            int(minutes) * 60  # plain ASCII digits only: int() of "²" would raise
            if minutes.isascii() and minutes.isdigit() and len(minutes) < 9
            else minutes
        )
    return name, out


async def _save_postmortem(
    state: AppState,
    incident_id: int,
    who: Viewer,
    fields: Mapping[str, str],
    idempotency: Idempotency | None,
) -> web.Response:
    known = {s.name for s in SECTION_INFO}
    sections = {
        k.removeprefix("section_"): v
        for k, v in fields.items()
        if k.removeprefix("section_") in known
    }
    try:
        answer = await postmortems.save(
            state, incident_id, sections, who.name, idempotency=idempotency
        )
    except postmortems.PostmortemError as exc:
        return await _refused(state, incident_id, who, exc.status, exc.message)
    if answer.status != 200:
        return await _refused(state, incident_id, who, answer.status, str(answer.body.get("error")))
    raise web.HTTPSeeOther(location=f"/incidents/{incident_id}#postmortem", headers=HEADERS)


async def _refused(
    state: AppState, incident_id: int, who: Viewer, status: int, message: str
) -> web.Response:
    context = await _context(state, incident_id, who)
    if context is None:
        return _error_page(404, f"There is no incident {incident_id}.", who)
    context["error"] = message
    return _html(render("incident.html.j2", **context), status)


# --- live -----------------------------------------------------------------------------------


async def fragment(request: web.Request) -> web.Response:
    """``timeline?after=N``: the entries after N; ``summary``: the status block."""
    state: AppState = request.app[AppState.KEY]
    who, _ = viewer(request, state)
    if who is None:
        raise web.HTTPUnauthorized(text="sign in", headers=HEADERS)
    incident_id = incident_id_of(request)
    part = request.match_info["part"]
    if part == "timeline":
        after_text = request.query.get("after", "0")
        after = parse_id(after_text) or 0
        entries = await read_or_503(state.store.queries.timeline_since(incident_id, after))
        return _html(render("fragments.html.j2", part=part, entries=entries))
    if part == "summary":
        context = await _context(state, incident_id, who)
        if context is None:
            raise web.HTTPNotFound(text="no such incident", headers=HEADERS)
        return _html(render("fragments.html.j2", part=part, **context))
    raise web.HTTPNotFound(text="no such fragment", headers=HEADERS)


# --- static files ---------------------------------------------------------------------------


@functools.cache
def _static(path: str) -> bytes:
    return Path(path).read_bytes()


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    suffix = Path(name).suffix
    if not re.fullmatch(r"[a-z0-9-]+\.(css|js|svg)", name) or suffix not in STATIC_TYPES:
        raise web.HTTPNotFound(text="no such file")
    path = templates_dir() / "static" / name
    if not path.is_file():
        raise web.HTTPNotFound(text="no such file")
    return web.Response(
        body=_static(str(path)),
        content_type=STATIC_TYPES[suffix],
        headers={
            "Cache-Control": "public, max-age=300",
            "X-Content-Type-Options": "nosniff",
        },
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The pages are for people, not an API: the OpenAPI document leaves them out (docs/web.md).
# /incidents/{id}, /incidents/{id}/do/{action}, /incidents/{id}/live,
# /incidents/{id}/fragments/{part}, /login, /logout, /static/{name}
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/", index),
    ("GET", "/login", login_form),
    ("POST", "/login", login),
    ("POST", "/logout", logout),
    ("GET", "/incidents/{id}", incident_page),
    ("POST", "/incidents/{id}/do/{action:[a-z/]+}", do_action),
    ("GET", "/incidents/{id}/fragments/{part}", fragment),
    ("GET", "/static/{name}", static),
]


# Paths that are not pages: no session to check there (the API reads Bearer tokens only, the
# stylesheet and the script are the same for everyone), so they pay no database read for it.
_NOT_PAGES = ("/api/", "/-/", "/metrics", "/static/")


@web.middleware
async def _who(request: web.Request, handler: Handler) -> web.StreamResponse:
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
                return _error_page(status, why, None)
        if session.COOKIE in request.cookies:
            await session.check_session(request, _key(request), state.store, time.time())
    return await handler(request)


def install(app: web.Application, session_key: bytes) -> None:
    """The pages' routes (app.py calls this; the live stream's is http/live.py's), and the
    middleware that checks their sessions."""
    app[SESSION_KEY] = session_key
    app.middlewares.append(_who)
    settings = app[AppState.KEY].settings
    if settings.web_user_header:
        trusted = settings.web_user_header_trusted_proxies
        log.info(
            "web pages: people are named by the header %s (scope %s), taken only from %s",
            settings.web_user_header,
            settings.web_user_header_scope,
            ", ".join(trusted) if trusted else "loopback (no --web-user-header-trusted-proxy)",
        )
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
