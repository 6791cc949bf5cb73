"""Incidents people start, through the API (docs/api.md, docs/incidents.md):
``POST /api/v1/incidents`` declares one, ``POST /api/v1/incidents/{id}/link`` links an
Alertmanager group into one, ``POST /api/v1/incidents/{id}/merge`` merges one into another.

As the actions (``http/actions.py``): write scope, a small JSON body read into its pydantic model
(a 400 naming the field), the Idempotency-Key honoured, one transaction through
``service/declare.py``, the same call the pages and chat make.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, field_validator

from bridge.core.actions import MAX_TEXT
from bridge.core.declare import MAX_LABELS, DeclareError
from bridge.core.policy import Severity
from bridge.http import auth
from bridge.http.actions import ActionBody, Name, Reason, idempotency, read_body
from bridge.http.api import path_id
from bridge.http.errors import HTTPError, store_unavailable
from bridge.http.models import Id
from bridge.service import AppState
from bridge.service import declare as declaring
from bridge.store.interface import ActionAnswer, StoreUnavailable

# Alertmanager's (Prometheus's) label names.
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TITLE_MAX = 500  # as a rendered title is cut (delivery/budget.TITLE_MAX)


class DeclareBody(ActionBody):
    title: Annotated[str, Field(min_length=1, max_length=TITLE_MAX)] = Field(
        description="what is wrong, as the incident's title"
    )
    severity: Severity = Field(description="sev1 (worst) to sev4")
    team: Name | None = Field(
        default=None,
        description="the team: a label `team` the routes match on (with no `route`, the "
        "route its labels select)",
    )
    route: Name | None = Field(
        default=None, description="the route of the rules by name (else chosen by the labels)"
    )
    description: Annotated[str, Field(max_length=MAX_TEXT)] = Field(
        default="", description="what is known so far; kept with the incident's source"
    )
    commander: Name | None = Field(
        default=None,
        description="who commands it (when the rules name people: one of them); default: the "
        "route's commander, if it has one",
    )
    labels: dict[str, Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict,
        description=f"labels as an alert's (at most {MAX_LABELS}): they select the route, "
        "the title and the search see them",
    )

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("title: must not be blank")
        return value.strip()

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_LABELS:
            raise ValueError(f"labels: at most {MAX_LABELS}")
        for name in value:
            if not _LABEL_NAME.fullmatch(name) or len(name) > 100:
                raise ValueError(
                    f"labels: {name[:100]!r} is not a label name ([A-Za-z_][A-Za-z0-9_]*)"
                )
        return value


class LinkBody(ActionBody):
    group_key: Annotated[str, Field(min_length=1, max_length=4096)] = Field(
        description="the Alertmanager group's `groupKey` (as its webhooks carry it)"
    )


class MergeBody(ActionBody):
    into: Id = Field(description="the incident that stays: this one is closed as its duplicate")
    reason: Reason = Field(default="", description="why, recorded on both timelines")


def _answer(answer: ActionAnswer, headers: dict[str, str] | None = None) -> web.Response:
    headers = dict(headers or {})
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.json_response(dict(answer.body), status=answer.status, headers=headers or None)


async def declare_incident(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    token = auth.authorize(request, state.api, write=True)
    body, raw = await read_body(request, DeclareBody)
    assert isinstance(body, DeclareBody)
    idem = idempotency(request, token, raw)
    who = auth.actor(request, state.api, token, body.actor)
    try:
        answer = await declaring.declare(
            state,
            actor=who,
            title=body.title,
            severity=body.severity,
            description=body.description,
            commander=body.commander,
            labels=body.labels,
            route=body.route,
            team=body.team,
            idempotency=idem,
        )
    except DeclareError as exc:
        raise HTTPError(400, exc.message, field=exc.field) from None
    except StoreUnavailable:
        raise store_unavailable() from None
    headers = None
    incident = answer.body.get("incident")
    if answer.status == 201 and isinstance(incident, dict):
        headers = {"Location": f"/api/v1/incidents/{incident['id']}"}
    return _answer(answer, headers)


async def link_group(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    token = auth.authorize(request, state.api, write=True)
    incident_id = path_id(request, "incident")
    body, raw = await read_body(request, LinkBody)
    assert isinstance(body, LinkBody)
    idem = idempotency(request, token, raw)
    who = auth.actor(request, state.api, token, body.actor)
    try:
        answer = await declaring.link(
            state, incident_id, group_key=body.group_key, actor=who, idempotency=idem
        )
    except StoreUnavailable:
        raise store_unavailable() from None
    return _answer(answer)


async def merge_incident(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    token = auth.authorize(request, state.api, write=True)
    incident_id = path_id(request, "incident")
    body, raw = await read_body(request, MergeBody)
    assert isinstance(body, MergeBody)
    idem = idempotency(request, token, raw)
    who = auth.actor(request, state.api, token, body.actor)
    try:
        answer = await declaring.merge(
            state, incident_id, into=body.into, actor=who, reason=body.reason, idempotency=idem
        )
    except StoreUnavailable:
        raise store_unavailable() from None
    return _answer(answer)


# path -> (summary, request model, handler): app.py serves them, the OpenAPI document lists them.
ROUTES: dict[str, tuple[str, type[ActionBody], Callable[[web.Request], Any]]] = {
    "/api/v1/incidents": (
        "Declare an incident by hand (routed by the rules as its labels select)",
        DeclareBody,
        declare_incident,
    ),
    "/api/v1/incidents/{id}/link": (
        "Link an Alertmanager group into the incident: its next webhooks update it",
        LinkBody,
        link_group,
    ),
    "/api/v1/incidents/{id}/merge": (
        "Merge the incident into another: closed as its duplicate, its entries referenced",
        MergeBody,
        merge_incident,
    ),
}


def routes() -> list[tuple[str, Callable[[web.Request], Any]]]:
    return [(path, handler) for path, (_summary, _model, handler) in ROUTES.items()]
