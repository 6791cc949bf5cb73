"""``GET /api/v1/search?q=...&limit=``: full-text search over incidents (title, key, team,
service, alert labels), their timelines and postmortems, ranked by bm25, one hit per incident
with a snippet of its best-matching document. Read like the other reads (``api.py``)."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from bridge.core.incidents import Status
from bridge.core.policy import Severity
from bridge.http import auth
from bridge.http.errors import store_unavailable
from bridge.http.models import Answer, Timestamp, json_answer
from bridge.http.params import bad_param, int_param, known_params
from bridge.service import AppState
from bridge.store.interface import QueryError, StoreUnavailable

SEARCH_PARAMS = ("q", "limit")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_QUERY = 500


class SearchHit(Answer):
    """An incident that matches, with the document of it that matches best."""

    incident_id: int
    title: str
    status: Status
    severity: Severity
    opened_at: Timestamp
    kind: str = Field(
        description="what matched: `incident` (title, key, team, service, alert labels), a "
        "timeline kind (`note`, `decision`, `status_update`, `alert_fired`, ...) or "
        "`postmortem`"
    )
    ref: str = Field(description="which one: the incident's or the timeline entry's id, ...")
    snippet: str = Field(description="the match in its context, the words found in « », cut with …")
    score: float = Field(description="bm25 relevance: higher is better")


class SearchAnswer(Answer):
    query: str = Field(description="`q` as it was searched")
    results: list[SearchHit] = Field(description="best first")


def query_text(request: web.Request) -> str:
    values = request.query.getall("q", [])
    if len(values) > 1:
        raise bad_param("q", "give q once")
    text = values[0].strip() if values else ""
    if not text:
        raise bad_param("q", "give words to look for: q=...")
    if len(text) > MAX_QUERY:
        raise bad_param("q", f"at most {MAX_QUERY} characters")
    return text


async def search_incidents(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api)
    known_params(request, SEARCH_PARAMS)
    text = query_text(request)
    limit = int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT) or DEFAULT_LIMIT
    try:
        results = await state.store.search.search(text, limit=limit)
    except QueryError as exc:
        raise bad_param("q", str(exc)) from None
    except StoreUnavailable:
        raise store_unavailable() from None
    answer = SearchAnswer.model_validate({"query": text, "results": results})
    return json_answer(answer)
