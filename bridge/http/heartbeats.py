"""The dead man's switch's API (docs/heartbeats.md): ``GET /api/v1/heartbeats`` (read: every
heartbeat of the rules with its last beat and state) and ``POST /api/v1/heartbeats/{name}``
(write scope: a cron job's beat; the body, if any, is not read)."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from bridge.core.heartbeats import Heartbeat, Seen, State, judge
from bridge.core.timeutil import format_ns
from bridge.http import auth
from bridge.http.errors import HTTPError, store_unavailable
from bridge.http.models import Answer, Timestamp, json_answer
from bridge.service import AppState
from bridge.service.heartbeats import record_beats
from bridge.store.interface import StoreUnavailable

LIST_PATH = "/api/v1/heartbeats"
BEAT_PATH = "/api/v1/heartbeats/{name}"
NAME_SHOWN = 100  # characters of an unknown name said back in the 404


class HeartbeatView(Answer):
    """A heartbeat of the rules and what the service knows of it."""

    name: str
    state: State = Field(description="`ok`, or `late`: no beat for more than interval plus grace")
    last_seen: Timestamp | None = Field(description="the last beat; null: never beaten")
    first_seen: Timestamp | None = Field(
        description="when the service first saw it in its rules (the lateness of one never "
        "beaten counts from then); null: not yet (the scheduler's next tick)"
    )
    late_since: Timestamp | None = Field(
        description="the start of the lateness episode whose incident is open; null: none"
    )
    interval_s: float
    grace_s: float
    alertname: str | None = Field(description="the alert that beats it; null: only this API")


class HeartbeatList(Answer):
    heartbeats: list[HeartbeatView] = Field(description="by name")


def view(heartbeat: Heartbeat, seen: Seen | None, now: int) -> HeartbeatView:
    state: State = "ok"
    if seen is not None:
        state = judge(heartbeat, seen, now).state
    return HeartbeatView(
        name=heartbeat.name,
        state=state,
        last_seen=format_ns(seen.last_seen) if seen is not None else None,
        first_seen=format_ns(seen.first_seen) if seen is not None else None,
        late_since=format_ns(seen.late_since) if seen is not None else None,
        interval_s=heartbeat.interval_s,
        grace_s=heartbeat.grace_s,
        alertname=heartbeat.alertname,
    )


async def list_heartbeats(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api)
    heartbeats = state.runtime.heartbeats
    try:
        seen = {s.name: s for s in await state.store.heartbeats.read(names=list(heartbeats))}
    except StoreUnavailable:
        raise store_unavailable() from None
    now = state.clock()
    views = [view(hb, seen.get(name), now) for name, hb in sorted(heartbeats.items())]
    return json_answer(HeartbeatList(heartbeats=views))


async def beat(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api, write=True)
    name = request.match_info["name"]
    heartbeat = state.runtime.heartbeats.get(name)
    if heartbeat is None:
        shown = name if len(name) <= NAME_SHOWN else name[:NAME_SHOWN] + "…"
        known = ", ".join(sorted(state.runtime.heartbeats)) or "none"
        raise HTTPError(404, f"unknown heartbeat {shown!r} (the rules have: {known})", field="name")
    now = state.clock()
    try:
        await record_beats(state, [name], now)
        seen = await state.store.heartbeats.read(names=[name])
    except StoreUnavailable:
        raise store_unavailable() from None
    return json_answer(view(heartbeat, seen[0] if seen else None, now))
