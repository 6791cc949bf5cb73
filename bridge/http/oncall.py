"""Who is on call (docs/oncall.md): ``GET /api/v1/oncall`` (read: every rotation's holder now
and next, with the hand-off times; ``?at=`` another instant), the overrides of a rotation
(``GET``; ``POST`` and ``DELETE`` with the write scope), and the iCalendar feeds of a rotation
and of a person, which calendar apps fetch with a read-only token in the URL (``?token=``:
they cannot send headers). The query string is never logged or said back."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from bridge.core.actions import MAX_TEXT
from bridge.core.oncall import RotationNow, ShiftRecord, calendar
from bridge.core.timeutil import format_ns, parse_rfc3339
from bridge.core.values import parse_id
from bridge.http import auth
from bridge.http.actions import MAX_IDEMPOTENCY_KEY, ActionBody, read_body
from bridge.http.errors import HTTPError, store_unavailable
from bridge.http.models import Answer, Timestamp, json_answer
from bridge.http.params import bad_param, known_params
from bridge.service import AppState
from bridge.service import oncall as service
from bridge.store.interface import StoredOverride, StoreUnavailable

PATH = "/api/v1/oncall"
OVERRIDES_PATH = "/api/v1/oncall/{rotation}/overrides"
OVERRIDE_PATH = "/api/v1/oncall/{rotation}/overrides/{id}"
ROTATION_ICS = "/api/v1/oncall/{rotation}.ics"
PERSON_ICS = "/api/v1/oncall/people/{person}.ics"
NAME_SHOWN = 100  # characters of an unknown name said back
DAY_NS = 86400 * 10**9
# The calendars' window: the shifts of the last 8 weeks and the next 26.
ICS_BACK_NS = 8 * 7 * DAY_NS
ICS_AHEAD_NS = 26 * 7 * DAY_NS


class ShiftView(Answer):
    person: str
    start: Timestamp = Field(description="when this person's shift began (RFC 3339, UTC)")
    end: Timestamp = Field(description="the hand-off to the next person")


class RotationView(Answer):
    rotation: str
    timezone: str = Field(description="the rotation's time zone (its hand-offs' wall clock)")
    now: ShiftView = Field(description="who holds it at the instant asked")
    next: ShiftView | None = Field(description="who holds it after; null: nobody else")
    handoff_at: Timestamp = Field(description="when `now` hands to `next`")


class OnCallAnswer(Answer):
    at: Timestamp = Field(description="the instant asked about")
    rotations: list[RotationView] = Field(description="every rotation of the rules, by name")


class OverrideView(Answer):
    id: int
    rotation: str
    person: str = Field(description="who holds the rotation for the span")
    start: Timestamp
    end: Timestamp = Field(description="the end asked for (exclusive)")
    ends_at: Timestamp = Field(description="where it stops holding: `end`, or when it was ended")
    reason: str
    created_by: str
    created_at: Timestamp
    ended_at: Timestamp | None = Field(description="when someone ended it early; null: not")
    ended_by: str | None


class OverrideList(Answer):
    overrides: list[OverrideView] = Field(description="by start")


class OverrideBody(ActionBody):
    """An override: ``person`` holds the rotation from ``start`` to ``end``."""

    person: str = Field(min_length=1, max_length=200, description="a member of a rotation")
    start: str | None = Field(
        default=None, description="RFC 3339; default now (a start in the past counts from now)"
    )
    end: str = Field(description="RFC 3339, after start")
    reason: str = Field(default="", max_length=MAX_TEXT, description="why (kept and shown)")


def _shift(s: ShiftRecord) -> ShiftView:
    return ShiftView(person=s.person, start=_ts(s.start), end=_ts(s.end))


def _ts(ns: int) -> str:
    text = format_ns(ns)
    assert text is not None
    return text


def rotation_view(r: RotationNow) -> RotationView:
    return RotationView(
        rotation=r.rotation,
        timezone=r.timezone,
        now=_shift(r.now),
        next=None if r.next is None else _shift(r.next),
        handoff_at=_ts(r.now.end),
    )


def override_view(o: StoredOverride) -> OverrideView:
    return OverrideView(
        id=o.id,
        rotation=o.rotation,
        person=o.person,
        start=_ts(o.start_at),
        end=_ts(o.end_at),
        ends_at=_ts(o.effective_end),
        reason=o.reason,
        created_by=o.created_by,
        created_at=_ts(o.created_at),
        ended_at=format_ns(o.ended_at),
        ended_by=o.ended_by,
    )


def _time(raw: str, field: str) -> int:
    try:
        value = parse_rfc3339(raw)
    except ValueError as exc:
        raise bad_param(
            field, f"{raw[:40]!r}: {exc} (RFC 3339, e.g. 2026-12-08T18:00:00Z)"
        ) from None
    if value is None:
        raise bad_param(field, "not a time")
    return value


def _rotation(state: AppState, request: web.Request) -> str:
    name = request.match_info["rotation"]
    known = state.runtime.yaml_rotations or state.runtime.rotations
    if name not in known:
        raise HTTPError(404, f"no rotation {name[:NAME_SHOWN]!r} in the rules", field="rotation")
    return name


def _error(exc: service.OnCallError) -> HTTPError:
    return HTTPError(exc.status, exc.message, field=exc.field)


async def oncall(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api)
    known_params(request, ("at",))
    raw = request.query.get("at")
    at = None if not raw else _time(raw, "at")
    try:
        found = await service.now_and_next(state, at)
    except StoreUnavailable:
        raise store_unavailable() from None
    answer = OnCallAnswer(
        at=_ts(state.clock() if at is None else at), rotations=[rotation_view(r) for r in found]
    )
    return json_answer(answer)


async def list_overrides(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api)
    known_params(request, ("all",))
    rotation = _rotation(state, request)
    every = request.query.get("all", "") in ("1", "true")
    try:
        rows = await state.store.oncall.list_overrides(
            rotation=rotation, after=0 if every else state.clock()
        )
    except StoreUnavailable:
        raise store_unavailable() from None
    return json_answer(OverrideList(overrides=[override_view(o) for o in rows]))


def _key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (
        0 < len(key) <= MAX_IDEMPOTENCY_KEY and key.isascii() and key.isprintable()
    ):
        raise HTTPError(
            400, f"1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters", field="Idempotency-Key"
        )
    return key


async def add_override(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    token = auth.authorize(request, state.api, write=True)
    body, _raw = await read_body(request, OverrideBody)
    assert isinstance(body, OverrideBody)
    key = _key(request)
    who = auth.actor(request, state.api, token, body.actor)
    rotation = request.match_info["rotation"]
    now = state.clock()
    start = now if body.start is None else max(now, _time(body.start, "start"))
    end = _time(body.end, "end")
    try:
        row, made = await service.add_override(
            state,
            rotation=rotation,
            person=body.person,
            start=start,
            end=end,
            reason=body.reason,
            by=who,
            # a key is the token's: two tokens' same key are two requests
            idempotency_key=None if key is None else f"{len(token)}:{token}:{key}",
        )
    except service.OnCallError as exc:
        raise _error(exc) from None
    except StoreUnavailable:
        raise store_unavailable() from None
    if not made and (row.rotation, row.person, row.end_at, row.reason) != (
        rotation,
        body.person,
        end,
        body.reason,
    ):
        raise HTTPError(
            422, "this Idempotency-Key was used for another override", field="Idempotency-Key"
        )
    headers = None if made else {"Idempotent-Replayed": "true"}
    response = json_answer(override_view(row), status=201 if made else 200)
    response.headers.update(headers or {})
    return response


async def end_override(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    token = auth.authorize(request, state.api, write=True)
    rotation = _rotation(state, request)
    override_id = parse_id(request.match_info["id"])
    if override_id is None:
        raise HTTPError(404, "no such override", field="id")
    try:
        rows = await state.store.oncall.list_overrides(rotation=rotation)
        if all(o.id != override_id for o in rows):
            raise HTTPError(404, f"no override {override_id} of this rotation", field="id")
        row = await service.end_override(state, override_id=override_id, by=token)
    except service.OnCallError as exc:
        raise _error(exc) from None
    except StoreUnavailable:
        raise store_unavailable() from None
    return json_answer(override_view(row))


def _feed_reader(request: web.Request, state: AppState) -> None:
    """A calendar's fetch: the token in ``?token=`` (or a bearer header), read-only tokens
    only: a URL ends up in calendar apps, shared calendars and proxies' logs, so a token that
    can change things must never be put there (403). Open reads need none."""
    known_params(request, ("token",))
    token = request.query.get("token", "")
    if not token:
        auth.authorize(request, state.api)
        return
    found = auth.identify(token, state.api)
    if found is None:
        raise HTTPError(
            401,
            "missing or wrong token",
            field="token",
            headers={"WWW-Authenticate": auth.challenge("incident-bridge-api", basic=False)},
        )
    if found[1] != "read":
        raise HTTPError(
            403,
            "a calendar URL takes a read-only token (this one can change things)",
            field="token",
        )


def _ics(text: str, name: str) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/calendar",
        charset="utf-8",
        headers={
            "Content-Disposition": f'inline; filename="{name}.ics"',
            "Cache-Control": "no-store",
        },
    )


async def rotation_feed(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    _feed_reader(request, state)
    rotation = _rotation(state, request)
    now = state.clock()
    try:
        found = await service.shifts(
            state, now - ICS_BACK_NS, now + ICS_AHEAD_NS, rotation=rotation
        )
    except StoreUnavailable:
        raise store_unavailable() from None
    return _ics(calendar(f"On call: {rotation}", found, now=now), rotation)


async def person_feed(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    _feed_reader(request, state)
    person = request.match_info["person"]
    if not state.runtime.known_person(person):
        raise HTTPError(404, f"no person {person[:NAME_SHOWN]!r} in the rotations", field="person")
    now = state.clock()
    try:
        found = await service.shifts(state, now - ICS_BACK_NS, now + ICS_AHEAD_NS, person=person)
    except StoreUnavailable:
        raise store_unavailable() from None
    return _ics(calendar(f"On call: {person}", found, now=now), "oncall")


# (method, path, handler): app.py serves them (wrapped in json_errors), openapi.py documents them.
# The person's feed before the rotation's: ``people/x.ics`` is never a rotation's feed.
ROUTES = (
    ("GET", PATH, oncall),
    ("GET", PERSON_ICS, person_feed),
    ("GET", ROTATION_ICS, rotation_feed),
    ("GET", OVERRIDES_PATH, list_overrides),
    ("POST", OVERRIDES_PATH, add_override),
    ("DELETE", OVERRIDE_PATH, end_override),
)
