"""The read API: incidents, newest first, with their alerts and timeline."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiohttp import web

from bridge.core import jsontext
from bridge.core.incidents import STATUSES
from bridge.core.policy import SEVERITIES
from bridge.core.timeutil import parse_rfc3339
from bridge.core.values import parse_id
from bridge.http import auth, models
from bridge.http.errors import HTTPError, store_unavailable
from bridge.http.params import bad_param, int_param, known_params
from bridge.service import AppState
from bridge.store.interface import STATES, StoreUnavailable

MAX_LIMIT = 500


def _multi(request: web.Request, name: str, allowed: tuple[str, ...]) -> list[str]:
    values = [v for raw in request.query.getall(name, []) for v in raw.split(",") if v]
    for value in values:
        if value not in allowed:
            raise bad_param(name, f"{value!r} is not one of {', '.join(allowed)}")
    return values


INCIDENT_PARAMS = (
    "status", "severity", "team", "route", "service", "since", "until", "limit", "before",
)  # fmt: skip
NOTIFICATION_PARAMS = ("state", "limit", "before")
MAX_VALUES = 50


def _texts(request: web.Request, name: str) -> list[str]:
    values = [v for raw in request.query.getall(name, []) for v in raw.split(",") if v]
    if len(values) > MAX_VALUES or any(len(v) > 200 for v in values):
        raise bad_param(name, f"at most {MAX_VALUES} values of at most 200 characters")
    return values


def _time(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        value = parse_rfc3339(raw)
    except ValueError as exc:
        raise bad_param(name, f"{raw!r}: {exc} (RFC 3339, e.g. 2026-11-28T06:00:00Z)") from None
    return value


async def incidents(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api)
    known_params(request, INCIDENT_PARAMS)
    query = state.store.queries.list_incidents(
        statuses=_multi(request, "status", STATUSES),
        severities=_multi(request, "severity", SEVERITIES),
        teams=_texts(request, "team"),
        routes=_texts(request, "route"),
        services=_texts(request, "service"),
        since=_time(request, "since"),
        until=_time(request, "until"),
        before=int_param(request, "before", None, 1, 2**63 - 1),
        limit=(limit := int_param(request, "limit", 50, 1, MAX_LIMIT) or 50),
    )
    try:
        rows = await query
    except StoreUnavailable:
        raise store_unavailable() from None
    last = rows[-1]["id"] if len(rows) == limit else None
    # pydantic-core writes a page of incidents several times faster than json.dumps
    return web.json_response(
        {"incidents": rows, "next": _next_page(request, last)}, dumps=jsontext.dumps
    )


def _next_page(request: web.Request, last_id: int | None) -> str | None:
    """The same query continued below ``last_id`` (keyset pagination); None on the last page."""
    if last_id is None:
        return None
    query: dict[str, Any] = dict(request.query)
    query["before"] = str(last_id)
    return str(request.rel_url.with_query(query))


def _not_found(what: str) -> HTTPError:
    return HTTPError(404, f"no such {what}")


def path_id(request: web.Request, what: str) -> int:
    """The ``{id}`` of the path; anything but an id (plain ASCII digits, 1 to 2**63-1:
    ``values.parse_id``) is simply not found, as no row can have it."""
    found = parse_id(request.match_info["id"])
    if found is None:
        raise _not_found(what)
    return found


async def incident(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api)
    incident_id = path_id(request, "incident")
    try:
        found = await state.store.queries.get_incident(incident_id)
    except StoreUnavailable:
        raise store_unavailable() from None
    if found is None:
        raise _not_found("incident")
    return web.json_response(found, dumps=jsontext.dumps)


class _Queue(Protocol):
    """The outbox or the channel messages, as their API pages and retries them."""

    async def list_rows(
        self, *, state: str | None, before: int | None, limit: int
    ) -> Sequence[_Listed]: ...
    async def get_row(self, row_id: int) -> _Listed | None: ...
    async def retry(self, row_id: int, *, now: int) -> bool: ...


class _Listed(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def state(self) -> str: ...

    def as_json(self) -> dict[str, Any]: ...


async def _queue_page(
    request: web.Request, queue: Callable[[AppState], _Queue], name: str
) -> dict[str, Any]:
    """A page of a queue's rows, newest first (``state``, ``limit``, ``before``), as
    ``{name: [...], "next": url}``."""
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api)
    known_params(request, NOTIFICATION_PARAMS)
    wanted = _multi(request, "state", STATES)
    if len(wanted) > 1:
        raise bad_param("state", "give one state")
    limit = int_param(request, "limit", 50, 1, MAX_LIMIT) or 50
    before = int_param(request, "before", None, 1, 2**63 - 1)
    try:
        rows = await queue(state).list_rows(
            state=wanted[0] if wanted else None, before=before, limit=limit
        )
    except StoreUnavailable:
        raise store_unavailable() from None
    last = rows[-1].id if len(rows) == limit else None
    return {name: [r.as_json() for r in rows], "next": _next_page(request, last)}


async def _queue_retry(
    request: web.Request, queue: Callable[[AppState], _Queue], name: str
) -> dict[str, Any]:
    """A dead row of a queue due again; 404 without it, 409 when it is not dead."""
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api, write=True)
    row_id = path_id(request, name)
    try:
        done = await queue(state).retry(row_id, now=state.clock())
        row = await queue(state).get_row(row_id)
    except StoreUnavailable:
        raise store_unavailable() from None
    if row is None:
        raise _not_found(name)
    if not done:
        raise HTTPError(409, f"{name} {row_id} is {row.state}, only dead ones can be retried")
    state.committed(notifications=1)  # pending again: wake the worker
    return row.as_json()


def _outbox(state: AppState) -> _Queue:
    return state.store.outbox


def _messages(state: AppState) -> _Queue:
    return state.store.messages


async def notifications(request: web.Request) -> web.Response:
    page = await _queue_page(request, _outbox, "notifications")
    return models.json_answer(models.NotificationPage.model_validate(page))


async def messages(request: web.Request) -> web.Response:
    """Channel messages (tied to no incident: hand-offs, drill announcements), newest first."""
    page = await _queue_page(request, _messages, "messages")
    return models.json_answer(models.ChannelMessagePage.model_validate(page))


async def retry_message(request: web.Request) -> web.Response:
    row = await _queue_retry(request, _messages, "message")
    return models.json_answer(models.ChannelMessage.model_validate(row))


async def retry_notification(request: web.Request) -> web.Response:
    """With the rows its message carried (``outbox.retry``)."""
    row = await _queue_retry(request, _outbox, "notification")
    return models.json_answer(models.Notification.model_validate(row))
