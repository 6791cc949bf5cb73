"""The pages people read: the incident list at ``/``, the incident at ``/incidents/{id}``,
and the fragments the live page fetches (``timeline?after=N``, ``summary``), rendered by the
same templates. Uses ``render`` and ``signin``; ``forms`` shows a refusal on the incident page."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlencode

from aiohttp import web

from bridge.core.actions import allowed_moves
from bridge.core.incidents import STATUSES, Incident
from bridge.core.policy import ROLES, SEVERITIES
from bridge.core.values import parse_id
from bridge.http.pages.render import HEADERS, age, error_page, html_response, render
from bridge.http.pages.signin import is_secure, signed_in, viewer, with_csrf_cookie
from bridge.http.session import Viewer
from bridge.kb import postmortems
from bridge.service import AppState
from bridge.store.interface import QueryError, StoreUnavailable

T = TypeVar("T")

PAGE_SIZE = 50


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


# --- the list -------------------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    state, who, nonce = signed_in(request)
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
        row["age"] = age(row.get("opened_at"), now)
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
    response = html_response(page)
    with_csrf_cookie(response, nonce, is_secure(request, state))
    return response


# --- declaring an incident -------------------------------------------------------------------


def declare_context(
    state: AppState, who: Viewer, given: Mapping[str, str] | None = None, error: str = ""
) -> dict[str, Any]:
    """The declaration form: the severities, the rules' routes by name, what was typed (again
    after a refusal, with its message)."""
    return {
        "viewer": who,
        "severities": SEVERITIES,
        "routes": sorted(state.runtime.followups),  # every route of the rules has an entry
        "given": dict(given or {}),
        "error": error,
        "form_key": secrets.token_urlsafe(16),
    }


async def declare_page(request: web.Request) -> web.Response:
    """``GET /declare``: the form (writers only; readers are told they can only look)."""
    state, who, nonce = signed_in(request)
    if not who.can_write:
        return error_page(403, "You can only look: declaring an incident needs a write token.", who)
    response = html_response(render("declare.html.j2", **declare_context(state, who)))
    with_csrf_cookie(response, nonce, is_secure(request, state))
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


async def incident_context(state: AppState, incident_id: int, who: Viewer) -> dict[str, Any] | None:
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
    state, who, nonce = signed_in(request)
    incident_id = incident_id_of(request)
    context = await incident_context(state, incident_id, who)
    if context is None:
        return error_page(404, f"There is no incident {incident_id}.", who)
    response = html_response(render("incident.html.j2", **context))
    with_csrf_cookie(response, nonce, is_secure(request, state))
    return response


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
        return html_response(render("fragments.html.j2", part=part, entries=entries))
    if part == "summary":
        context = await incident_context(state, incident_id, who)
        if context is None:
            raise web.HTTPNotFound(text="no such incident", headers=HEADERS)
        return html_response(render("fragments.html.j2", part=part, **context))
    raise web.HTTPNotFound(text="no such fragment", headers=HEADERS)


# --- who is on call ---------------------------------------------------------------------------


def _local(ns: int | None, timezone: str) -> str:
    """A time as people of the rotation read it: ``2026-12-08 18:00 Europe/Berlin``."""
    if ns is None:
        return "-"
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return f"{datetime.fromtimestamp(ns / 1e9, ZoneInfo(timezone)):%Y-%m-%d %H:%M} {timezone}"


async def oncall_context(
    state: AppState, who: Viewer, given: Mapping[str, str] | None = None, error: str = ""
) -> dict[str, Any]:
    """The on-call page: every rotation's holder and next (overrides applied), the stored
    overrides still holding, the calendars' paths, and the override form (what was typed again
    after a refusal, with its message)."""
    runtime = state.runtime
    zones = {name: r.timezone for name, r in runtime.rotations.items()}
    rows = [
        {
            "rotation": r.rotation,
            "person": r.now.person,
            "since": _local(r.now.start, r.timezone),
            "until": _local(r.now.end, r.timezone),
            "next": r.next.person if r.next is not None else "nobody else",
        }
        for r in runtime.oncall_now(state.clock())
    ]
    stored = await read_or_503(state.store.oncall.list_overrides(after=state.clock()))
    overrides = [
        {
            "id": o.id,
            "rotation": o.rotation,
            "person": o.person,
            "start": _local(o.start_at, zones.get(o.rotation, "UTC")),
            "end": _local(o.effective_end, zones.get(o.rotation, "UTC")),
            "by": o.created_by,
            "reason": o.reason,
        }
        for o in stored
    ]
    people = sorted({m.name for r in runtime.rotations.values() for m in r.members})
    return {
        "viewer": who,
        "rows": rows,
        "overrides": overrides,
        "rotations": sorted(runtime.rotations),
        "zones": zones,
        "people": people,
        "given": dict(given or {}),
        "error": error,
        "form_key": secrets.token_urlsafe(16),
    }


async def oncall_page(request: web.Request) -> web.Response:
    """``GET /oncall``: who is on call, the overrides, and (for writers) the override form."""
    state, who, nonce = signed_in(request)
    response = html_response(render("oncall.html.j2", **await oncall_context(state, who)))
    with_csrf_cookie(response, nonce, is_secure(request, state))
    return response
