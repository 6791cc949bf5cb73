"""The forms' target, ``/incidents/{id}/do/{action}``: a form is read into the same pydantic
body as the API's action and built into the same command (``http/actions.ACTIONS``), then
``service.act`` runs it with the signed-in person as the actor and the form's one-time key as
its Idempotency-Key (a double submit does it once); the postmortem's save and publish go to
``kb/postmortems``. The answer is a redirect back to the page (POST, redirect, GET), or the
page again with the refusal and its 4xx status. Uses ``render``, ``signin`` and ``views``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from bridge.core.declare import DeclareError
from bridge.core.postmortem import SECTION_INFO
from bridge.http import session
from bridge.http.actions import ACTIONS, ActionBody
from bridge.http.declare import DeclareBody
from bridge.http.pages.render import HEADERS, error_page, html_response, render
from bridge.http.pages.signin import read_form, same_origin, signed_in
from bridge.http.pages.views import (
    declare_context,
    incident_context,
    incident_id_of,
    oncall_context,
)
from bridge.http.session import Viewer
from bridge.kb import postmortems
from bridge.service import AppState, act
from bridge.service import declare as declaring
from bridge.service import oncall as oncall_service
from bridge.store.interface import Idempotency, StoreUnavailable


async def do_action(request: web.Request) -> web.Response:
    """A form's action: the same body model and command as the API's, through service.act."""
    state, who, _ = signed_in(request)
    incident_id = incident_id_of(request)
    name = request.match_info["action"]
    form = await read_form(request)
    if not who.can_write:
        return error_page(403, "You can only look: acting needs a write token.", who)
    if not same_origin(request, state) or not session.csrf_ok(who, form.get("csrf", "")):
        return error_page(
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
        return error_page(404, f"There is no action {name!r}.", who)
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
        return error_page(503, f"The database is not available now ({exc}); try again.", who)
    if answer.status != 200:
        message = str(answer.body.get("error", "refused"))
        return await _refused(state, incident_id, who, answer.status, message)
    anchor = "followup" if name.startswith("followup") else "timeline"
    raise web.HTTPSeeOther(location=f"/incidents/{incident_id}#{anchor}", headers=HEADERS)


async def do_declare(request: web.Request) -> web.Response:
    """``POST /declare``: the API's declaration body from the form (labels one ``name=value``
    a line), through ``service/declare`` with the signed-in person as who declared it and the
    form's one-time key as its Idempotency-Key; the new incident's page, or the form again with
    the refusal naming the field."""
    state, who, _ = signed_in(request)
    form = await read_form(request)
    if not who.can_write:
        return error_page(403, "You can only look: declaring an incident needs a write token.", who)
    if not same_origin(request, state) or not session.csrf_ok(who, form.get("csrf", "")):
        return error_page(
            403, "This form has expired or came from another site: reload the page.", who
        )
    given = {k: v for k, v in form.items() if k not in ("csrf", "form_key", "actor")}
    fields: dict[str, Any] = {k: v for k, v in given.items() if v.strip() != ""}

    def refused(status: int, message: str) -> web.Response:
        page = render("declare.html.j2", **declare_context(state, who, given, message))
        return html_response(page, status)

    labels: dict[str, str] = {}
    for n, line in enumerate(fields.pop("labels", "").splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep:
            return refused(400, f"labels: line {n} is not name=value")
        labels[name.strip()] = value.strip()
    fields["labels"] = labels
    try:
        body = DeclareBody.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "form"
        return refused(400, f"{where}: {str(first['msg']).removeprefix('Value error, ')}")
    key = form.get("form_key", "")[:100]
    digest = hashlib.sha256(
        json.dumps(sorted(given.items()), separators=(",", ":")).encode()
    ).hexdigest()
    idempotency = Idempotency(who.name, f"web:{key}", f"web declare {digest}") if key else None
    try:
        answer = await declaring.declare(
            state,
            actor=who.name,
            title=body.title,
            severity=body.severity,
            description=body.description,
            commander=body.commander,
            labels=body.labels,
            route=body.route,
            team=body.team,
            idempotency=idempotency,
        )
    except DeclareError as exc:
        return refused(400, f"{exc.field}: {exc.message}")
    except StoreUnavailable as exc:
        return error_page(503, f"The database is not available now ({exc}); try again.", who)
    incident = answer.body.get("incident")
    if answer.status != 201 or not isinstance(incident, Mapping):
        return refused(answer.status, str(answer.body.get("error", "refused")))
    raise web.HTTPSeeOther(location=f"/incidents/{incident['id']}", headers=HEADERS)


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
    context = await incident_context(state, incident_id, who)
    if context is None:
        return error_page(404, f"There is no incident {incident_id}.", who)
    context["error"] = message
    return html_response(render("incident.html.j2", **context), status)


# --- on-call overrides --------------------------------------------------------------------------


def _wall_clock(text: str, timezone: str) -> int | None:
    """A form's ``datetime-local`` (``2026-12-08T18:00``) in the rotation's time zone, or an
    RFC 3339 time; None when it is neither."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from bridge.core.timeutil import parse_rfc3339

    try:
        local = datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M")
    except ValueError:
        try:
            return parse_rfc3339(text.strip())
        except ValueError:
            return None
    return int(local.replace(tzinfo=ZoneInfo(timezone)).timestamp()) * 10**9


async def _override_form(
    request: web.Request,
) -> tuple[AppState, Viewer, dict[str, str]] | web.Response:
    """The signed-in writer and the form posted; or the refusal page (a reader, a form from
    another site or expired)."""
    state, who, _ = signed_in(request)
    form = await read_form(request)
    if not who.can_write:
        return error_page(403, "You can only look: overrides need a write token.", who)
    if not same_origin(request, state) or not session.csrf_ok(who, form.get("csrf", "")):
        return error_page(
            403, "This form has expired or came from another site: reload the page.", who
        )
    return state, who, form


async def do_add_override(request: web.Request) -> web.Response:
    """``POST /oncall/overrides``: an override by the signed-in person (the form's times in
    the rotation's time zone; its one-time key as the Idempotency-Key); back to the page, or
    the page again with the refusal naming the field."""
    posted = await _override_form(request)
    if isinstance(posted, web.Response):
        return posted
    state, who, form = posted
    given = {k: v for k, v in form.items() if k in ("rotation", "person", "start", "end", "reason")}

    async def refused(message: str) -> web.Response:
        page = render("oncall.html.j2", **await oncall_context(state, who, given, message))
        return html_response(page, 400)

    rotation = state.runtime.rotations.get(given.get("rotation", ""))
    if rotation is None:
        return await refused("rotation: choose a rotation")
    now = state.clock()
    start = now
    if given.get("start", "").strip():
        parsed = _wall_clock(given["start"], rotation.timezone)
        if parsed is None:
            return await refused("start: not a time (2026-12-08T18:00)")
        start = max(now, parsed)
    end = _wall_clock(given.get("end", ""), rotation.timezone)
    if end is None:
        return await refused("end: not a time (2026-12-08T18:00)")
    key = form.get("form_key", "")[:100]
    try:
        await oncall_service.add_override(
            state,
            rotation=given["rotation"],
            person=given.get("person", ""),
            start=start,
            end=end,
            reason=given.get("reason", "").strip()[:10000],
            by=who.name,
            idempotency_key=f"web:{who.name}:{key}" if key else None,
        )
    except oncall_service.OnCallError as exc:
        return await refused(f"{exc.field}: {exc.message}")
    except StoreUnavailable as exc:
        return error_page(503, f"The database is not available now ({exc}); try again.", who)
    raise web.HTTPSeeOther(location="/oncall", headers=HEADERS)


async def do_end_override(request: web.Request) -> web.Response:
    """``POST /oncall/overrides/{id}/end``: the override ends now; back to the page."""
    posted = await _override_form(request)
    if isinstance(posted, web.Response):
        return posted
    state, who, _form = posted
    from bridge.core.values import parse_id

    override_id = parse_id(request.match_info["id"])
    if override_id is None:
        return error_page(404, "No such override.", who)
    try:
        await oncall_service.end_override(state, override_id=override_id, by=who.name)
    except oncall_service.OnCallError as exc:
        return error_page(exc.status, exc.message, who)
    except StoreUnavailable as exc:
        return error_page(503, f"The database is not available now ({exc}); try again.", who)
    raise web.HTTPSeeOther(location="/oncall", headers=HEADERS)
