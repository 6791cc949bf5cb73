"""The insights' API (docs/insights.md): ``GET /api/v1/insights`` (JSON, read scope), and the
parameters the page and its CSV tables (``http/pages/insights.py``) read the same way.

Parameters: ``since`` (a duration: ``30d``, ``12h``, ``8w``; 30 days by default) and ``label``
(``name=value``, repeatable: only incidents with an alert carrying every one); anything else, or
a bad value, is a 400 naming the parameter.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from bridge.core.insights import (
    DEFAULT_SINCE,
    LABEL_NAME,
    Insights,
    InsightsError,
    parse_since,
)
from bridge.core.timeutil import format_ns
from bridge.http import auth
from bridge.http.errors import store_unavailable
from bridge.http.models import Answer, json_answer
from bridge.http.params import bad_param, known_params
from bridge.service import AppState
from bridge.service.insights import InsightsCache
from bridge.store.interface import StoreUnavailable

PARAMS = ("since", "label")
MAX_LABELS = 10
CACHE = web.AppKey("insights_cache", InsightsCache)


class InsightsTable(Answer):
    columns: list[str] = Field(description="the columns' names, in order")
    rows: list[list[str | int | float | None]] = Field(description="one list of values per row")


class InsightsAnswer(Answer):
    since: str = Field(description="the period's start (RFC 3339)")
    until: str = Field(description="the period's end (RFC 3339), excluded")
    working_hours: str = Field(
        description="the working hours of anyone in no rotation (a rotation's own are in the "
        "interruptions table, per person)"
    )
    tables: dict[str, InsightsTable] = Field(
        description="trend, by_week, by_team, by_service, by_route, noisiest, interruptions, "
        "action_items, postmortems_overdue, no_runbook (docs/insights.md)"
    )


def _labels(request: web.Request) -> list[tuple[str, str]]:
    out = []
    values = request.query.getall("label", [])
    if len(values) > MAX_LABELS:
        raise bad_param("label", f"at most {MAX_LABELS} labels")
    for raw in values:
        name, eq, value = raw.partition("=")
        if not eq or not LABEL_NAME.match(name):
            raise bad_param("label", f"{raw!r} is not name=value with a Prometheus label name")
        out.append((name, value))
    return out


def _span(request: web.Request) -> int:
    values = request.query.getall("since", [])
    if len(values) > 1:
        raise bad_param("since", "give since once")
    try:
        return parse_since(values[0] if values else DEFAULT_SINCE)
    except InsightsError as exc:
        raise bad_param(exc.field, str(exc)) from None


async def read(request: web.Request, state: AppState) -> Insights:
    known_params(request, PARAMS)
    span, labels = _span(request), _labels(request)
    try:
        return await request.app[CACHE].get(state, span=span, labels=labels)
    except StoreUnavailable:
        raise store_unavailable() from None


async def get_insights(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api)
    found = await read(request, state)
    answer = InsightsAnswer(
        since=format_ns(found.since) or "",
        until=format_ns(found.until) or "",
        working_hours=found.working_hours,
        tables={
            name: InsightsTable(columns=list(t.columns), rows=[list(r) for r in t.rows])
            for name, t in found.tables.items()
        },
    )
    return json_answer(answer)
