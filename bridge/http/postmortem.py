"""The postmortem's API (``/api/v1/incidents/{id}/postmortem...``) and the published postmortem
for people (``/incidents/{id}/postmortem``, where "seen this before" links to).

Reads are authorized like the read API, changes (save, publish) need a write token. A save's
body is a pydantic model that forbids unknown fields and sections; its Idempotency-Key works as
for actions. What they do is ``bridge/kb/postmortems.py``'s; docs/postmortems.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge.core.jsontext import without_nul
from bridge.core.postmortem import MAX_SECTION, SECTIONS
from bridge.http import auth, pages
from bridge.http.actions import ActionBody, error_field, idempotency
from bridge.http.api import path_id
from bridge.http.errors import HTTPError, store_unavailable
from bridge.http.models import (
    Answer,
    IncidentSummary,
    PostmortemFacts,
    TimelineEntry,
    Timestamp,
    json_answer,
)
from bridge.http.params import int_param, known_params
from bridge.kb import postmortems
from bridge.kb.postmortems import PostmortemError
from bridge.service import AppState
from bridge.store.interface import StoreUnavailable

BASE = "/api/v1/incidents/{id}/postmortem"
PAGE = "/incidents/{id}/postmortem"
# Six sections of at most MAX_SECTION characters, escaped, fit.
MAX_BODY = 1024 * 1024
MAX_VERSION = 2**63 - 1
VIEW_PARAMS = ("version",)
DIFF_PARAMS = ("from", "to")

SectionText = Annotated[
    str,
    Field(max_length=MAX_SECTION, description="Markdown; an empty text clears the section"),
]


# --- request bodies ---------------------------------------------------------------------------


class SectionsBody(BaseModel):
    """The sections to change; those left out keep their text."""

    model_config = ConfigDict(extra="forbid")

    summary: SectionText | None = None
    impact: SectionText | None = None
    root_cause: SectionText | None = None
    went_well: SectionText | None = None
    went_badly: SectionText | None = None
    lucky: SectionText | None = None


class SaveBody(ActionBody):
    sections: SectionsBody = Field(
        description=f"section -> its new text; the sections: {', '.join(SECTIONS)}"
    )


class PublishBody(ActionBody):
    pass


# --- answers ----------------------------------------------------------------------------------


class Sections(Answer):
    """Every section's text ("" when not written)."""

    summary: str
    impact: str
    root_cause: str
    went_well: str
    went_badly: str
    lucky: str


class Publication(Answer):
    version: int = Field(description="the narrative's version published")
    path: str = Field(
        description="the file, relative to the knowledge base's folder; empty without one"
    )
    commit: str | None = Field(description="the Git commit that holds it, when there is one")
    published_by: str
    published_at: Timestamp


class PostmortemView(Answer):
    """A version of the narrative (the newest by default) over the facts now, rendered."""

    incident_id: int
    version: int | None = Field(description="the version shown; null: nothing saved yet")
    newest_version: int | None
    author: str | None
    saved_at: Timestamp | None
    sections: Sections
    facts: PostmortemFacts = Field(
        description="`incident`, `impact`, `milestones`, `durations`, `roles`, `handovers`, "
        "`timeline` (corrections applied), `alerts`, `validation`, `action_items`: "
        "docs/postmortems.md"
    )
    markdown: str = Field(description="the postmortem rendered from its template")
    template: str = Field(description="the template used: `postmortem.md.j2` or a route's own")
    policy: Literal["required", "optional", "none"] = Field(
        description="whether the route requires a published postmortem before closing"
    )
    published: Publication | None = Field(description="the latest publication")


class SavedVersion(Answer):
    version: int
    author: str
    saved_at: Timestamp
    sections: Sections


class SaveResult(Answer):
    changed: bool = Field(description="false: the sections already read so; nothing saved")
    version: SavedVersion | None = Field(description="the newest version after the save")
    events: list[TimelineEntry] = Field(description="the timeline entries written")


class VersionSummary(Answer):
    version: int
    author: str
    saved_at: Timestamp
    sections: list[str] = Field(description="the sections written in this version")


class VersionList(Answer):
    incident_id: int
    versions: list[VersionSummary] = Field(description="oldest first")
    publications: list[Publication] = Field(description="oldest first")


class DiffAnswer(Answer):
    incident_id: int
    from_version: int = Field(description="0: the empty narrative")
    to_version: int
    diff: str = Field(description="a unified diff of the narratives' texts; empty when the same")


class PublishedPublication(Publication):
    pushed: bool = Field(description="a push of the knowledge base to --kb-remote is queued")


class PublishResult(Answer):
    changed: bool = Field(description="false: this version was published already, as it is")
    publication: PublishedPublication
    incident: IncidentSummary = Field(description="the incident after it (closed)")
    events: list[TimelineEntry] = Field(description="the timeline entries written")


# --- handlers ---------------------------------------------------------------------------------


def _state(request: web.Request) -> AppState:
    return request.app[AppState.KEY]


async def _call(awaitable: Awaitable[Any]) -> Any:
    try:
        return await awaitable
    except PostmortemError as exc:
        raise HTTPError(exc.status, exc.message, field=exc.field) from None
    except StoreUnavailable:
        raise store_unavailable() from None


def _version(request: web.Request, name: str, low: int) -> int | None:
    return int_param(request, name, None, low, MAX_VERSION)


async def _body(request: web.Request, model: type[ActionBody]) -> tuple[ActionBody, bytes]:
    too_large = HTTPError(413, f"the body is larger than {MAX_BODY} bytes")
    if (request.content_length or 0) > MAX_BODY:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(MAX_BODY + 1 - size):  # a read gives what came
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            raise too_large
    raw = b"".join(chunks)
    try:
        # a NUL in a text is kept as U+FFFD (PostgreSQL's text cannot hold it)
        return model.model_validate_json(without_nul(raw.strip() or b"{}")), raw
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = tuple(err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        field = error_field(loc, message)
        if err["type"] == "json_invalid":
            field, message = "body", f"not valid JSON: {err['ctx'].get('error', message)}"
        elif err["type"] == "model_type" and len(loc) <= 1:
            field = field if loc else "body"
            message = "must be a JSON object"
        elif err["type"] == "extra_forbidden" and loc[:1] == ("sections",):
            message = f"unknown section {loc[-1]!r}; sections: {', '.join(SECTIONS)}"
        elif err["type"] == "extra_forbidden":
            message = f"unknown field; known: {', '.join(model.model_fields)}"
        raise HTTPError(400, message, field=field) from None


def _reading(request: web.Request, params: tuple[str, ...]) -> tuple[AppState, int]:
    """What every read of a postmortem checks first, in this order: the token, the incident's
    id, the query's names."""
    state = _state(request)
    auth.authorize(request, state.api)
    incident_id = path_id(request, "incident")
    known_params(request, params)
    return state, incident_id


async def _writing(
    request: web.Request, model: type[ActionBody]
) -> tuple[AppState, str, int, ActionBody, bytes]:
    """What every change of a postmortem checks first, in this order: a write token, the
    incident's id, the body."""
    state = _state(request)
    token = auth.authorize(request, state.api, write=True)
    incident_id = path_id(request, "incident")
    body, raw = await _body(request, model)
    return state, token, incident_id, body, raw


async def get_postmortem(request: web.Request) -> web.Response:
    state, incident_id = _reading(request, VIEW_PARAMS)
    version = _version(request, "version", 1)
    view = await _call(postmortems.show(state, incident_id, version))
    return json_answer(PostmortemView.model_validate(view))


async def save_postmortem(request: web.Request) -> web.Response:
    state, token, incident_id, body, raw = await _writing(request, SaveBody)
    assert isinstance(body, SaveBody)
    idem = idempotency(request, token, raw)
    sections = body.sections.model_dump(exclude_none=True)
    author = auth.actor(request, state.api, token, body.actor)
    answer = await _call(postmortems.save(state, incident_id, sections, author, idempotency=idem))
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    if answer.status != 200:
        return web.json_response(dict(answer.body), status=answer.status, headers=headers)
    result = json_answer(SaveResult.model_validate(answer.body))
    if headers:
        result.headers.update(headers)
    return result


async def get_versions(request: web.Request) -> web.Response:
    state, incident_id = _reading(request, ())
    found = await _call(postmortems.versions(state, incident_id))
    return json_answer(VersionList.model_validate(found))


async def get_diff(request: web.Request) -> web.Response:
    state, incident_id = _reading(request, DIFF_PARAMS)
    start, end = _version(request, "from", 0), _version(request, "to", 0)
    found = await _call(postmortems.difference(state, incident_id, start, end))
    return json_answer(DiffAnswer.model_validate(found))


async def publish(request: web.Request) -> web.Response:
    state, token, incident_id, body, _ = await _writing(request, PublishBody)
    publisher = auth.actor(request, state.api, token, body.actor)
    done = await _call(postmortems.publish(state, incident_id, publisher))
    return json_answer(PublishResult.model_validate(done))


async def published_page(request: web.Request) -> web.Response:
    """The Markdown last published, as text a browser shows. People follow this link (from
    "seen this before", in chat and on the pages) as they follow the incident's page: it reads
    with the pages' session (or a proxy's user header), and sends someone who is not signed in
    to the sign-in and back (``/login?next=...``) rather than answering a JSON 401. A request
    with an ``Authorization`` header (a script) is checked as the API checks it."""
    state = _state(request)
    who, _nonce = pages.viewer(request, state)
    if who is None:
        if "Authorization" not in request.headers:
            # Returned, not raised: this route's JSON error wrapper makes any raised HTTP
            # exception a JSON error, a redirect too.
            login = "/login?" + urlencode({"next": request.path_qs})
            return web.Response(status=303, headers={**pages.HEADERS, "Location": login})
        auth.authorize(request, state.api)
    incident_id = path_id(request, "incident")
    text = await _call(postmortems.published(state, incident_id))
    return web.Response(
        text=text,
        content_type="text/plain",
        charset="utf-8",
        headers={
            "Content-Security-Policy": "default-src 'none'",
            "X-Content-Type-Options": "nosniff",
        },
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# (method, path, handler, summary): app.py serves them, openapi.py documents them.
ROUTES: list[tuple[str, str, Handler, str]] = [
    ("GET", BASE, get_postmortem, "The postmortem: a version over the facts now, rendered"),
    ("POST", BASE, save_postmortem, "Save the postmortem's narrative sections (a new version)"),
    ("GET", f"{BASE}/versions", get_versions, "The postmortem's versions and publications"),
    ("GET", f"{BASE}/diff", get_diff, "A unified diff of two versions of the narrative"),
    ("POST", f"{BASE}/publish", publish, "Publish the postmortem and close the incident"),
    ("GET", PAGE, published_page, "The published postmortem's Markdown, for people"),
]
