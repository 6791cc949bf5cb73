"""Drills through the API (docs/drills.md, docs/api.md):

- ``POST /api/v1/drills`` fires a drill straight into the bridge (service/drills.fire), and with
  ``auto`` walks its four stages (service/drills.auto, the postmortem draft through
  kb/postmortems.save); 201 with the drill's name and incidents;
- ``GET /api/v1/drills?name=N`` finds the incident of a drill by its name (the ``drill_id``
  label: a drill fired through Alertmanager is found so);
- ``POST /api/v1/drills/{id}/auto`` walks an open drill's stages (one fired through
  Alertmanager, found by its name first);
- ``GET /api/v1/drills/{id}/report`` the drill's report (kb/drills.build), JSON with its
  Markdown; ``POST`` the same, written into the knowledge base first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import Field

from bridge.core.policy import Severity
from bridge.http import auth
from bridge.http.actions import ActionBody, Name, read_body
from bridge.http.api import path_id
from bridge.http.errors import HTTPError, store_unavailable
from bridge.kb import drills as reports
from bridge.kb import files, postmortems
from bridge.service import AppState
from bridge.service import drills as drilling
from bridge.store.interface import StoreUnavailable

_NAME = re.compile(r"[0-9a-f]{1,64}")


class DrillBody(ActionBody):
    route: Name | None = Field(
        default=None,
        description="the route of the rules the drill goes to (default: as its "
        "labels select, usually the root)",
    )
    severity: Severity | None = Field(
        default=None, description="sev1 (worst) to sev4; default: as the route decides"
    )
    stakeholders: bool = Field(
        default=False, description="alert the stakeholders tier too (left out by default)"
    )
    auto: bool = Field(
        default=False,
        description="walk the four stages at once (acknowledge, commander, note, status update, "
        "mitigate, follow-up items, postmortem draft) as a smoke test of the configuration",
    )


async def fire_drill(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    token = auth.authorize(request, state.api, write=True)
    body, _raw = await read_body(request, DrillBody)
    assert isinstance(body, DrillBody)
    # --auto acts as `actor` when one is given (checked as the actions check it)
    who = auth.actor(request, state.api, token, body.actor) if body.actor else drilling.AUTO_ACTOR
    try:
        fired = await drilling.fire(
            state, route=body.route, severity=body.severity, stakeholders=body.stakeholders
        )
        if body.auto:
            steps = []
            for incident_id in fired["incidents"]:
                steps += await drilling.auto(
                    state, incident_id, postmortem=_postmortem(state), actor=who
                )
            fired["auto"] = steps
    except drilling.DrillError as exc:
        raise HTTPError(400, exc.message, field=exc.field) from None
    except StoreUnavailable:
        raise store_unavailable() from None
    return web.json_response(fired, status=201)


def _postmortem(state: AppState) -> Any:
    async def draft(incident_id: int, sections: Any, actor: str) -> Any:
        return await postmortems.save(state, incident_id, sections, actor)

    return draft


async def auto_drill(request: web.Request) -> web.Response:
    """``--auto`` for a drill already open (one fired through Alertmanager): its stages walked."""
    state: AppState = request.app[AppState.KEY]
    token = auth.authorize(request, state.api, write=True)
    incident_id = path_id(request, "id")
    body, _raw = await read_body(request, ActionBody)
    who = auth.actor(request, state.api, token, body.actor) if body.actor else drilling.AUTO_ACTOR
    try:
        if await state.store.drills.report_facts(incident_id) is None:
            raise HTTPError(404, f"incident {incident_id} is not a drill (or does not exist)")
        steps = await drilling.auto(state, incident_id, postmortem=_postmortem(state), actor=who)
    except StoreUnavailable:
        raise store_unavailable() from None
    return web.json_response({"incident": incident_id, "auto": steps})


async def find_drill(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api)
    name = request.query.get("name", "")
    if not _NAME.fullmatch(name):
        raise HTTPError(400, "a drill's name: 1 to 64 hex digits", field="name")
    try:
        found = await state.store.drills.find(name)
    except StoreUnavailable:
        raise store_unavailable() from None
    if found is None:
        raise HTTPError(404, f"no drill incident named {name} (yet)")
    return web.json_response({"drill": name, "incident": found})


async def _report(request: web.Request, *, write: bool) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api, write=write)
    incident_id = path_id(request, "id")
    try:
        report = await reports.build(state, incident_id)
        if write:
            report["knowledge_base"] = await reports.write(state, report)
    except reports.NotADrill as exc:
        raise HTTPError(404, str(exc)) from None
    except (files.UnsafePath, OSError) as exc:
        raise HTTPError(409, f"cannot write the report into the knowledge base: {exc}") from None
    except StoreUnavailable:
        raise store_unavailable() from None
    return web.json_response(report)


async def get_report(request: web.Request) -> web.Response:
    return await _report(request, write=False)


async def write_report(request: web.Request) -> web.Response:
    return await _report(request, write=True)


# (method, path, handler, summary): app.py serves them, the OpenAPI document lists them.
ROUTES: list[tuple[str, str, Callable[[web.Request], Any], str]] = [
    ("POST", "/api/v1/drills", fire_drill, "Fire a drill (a synthetic alert) into the bridge"),
    ("GET", "/api/v1/drills", find_drill, "The incident of a drill, by its name"),
    ("POST", "/api/v1/drills/{id}/auto", auto_drill, "Walk an open drill's four stages"),
    ("GET", "/api/v1/drills/{id}/report", get_report, "A drill's report"),
    (
        "POST",
        "/api/v1/drills/{id}/report",
        write_report,
        "A drill's report, written into the knowledge base",
    ),
]
