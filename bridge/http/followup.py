"""``GET /api/v1/incidents/{id}/followup``: the incident's follow-up (checklist, findings,
validation, tickets). Its changes are actions (``actions.ACTIONS``: ``followup/...``)."""

from __future__ import annotations

from aiohttp import web

from bridge.http import auth
from bridge.http.api import path_id
from bridge.http.errors import HTTPError, store_unavailable
from bridge.http.models import FollowUpView, json_answer
from bridge.service import AppState
from bridge.store.interface import StoreUnavailable


async def get_followup(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api)
    incident_id = path_id(request, "incident")
    try:
        exists, view = await state.store.followups.incident_followup(incident_id)
    except StoreUnavailable:
        raise store_unavailable() from None
    if not exists:
        raise HTTPError(404, f"no incident {incident_id}")
    if view is None:
        raise HTTPError(
            404, f"incident {incident_id} has no follow-up: it opens when the incident is mitigated"
        )
    return json_answer(FollowUpView.model_validate(view))
