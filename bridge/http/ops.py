"""Operational endpoints: liveness, readiness, metrics, the active rules and their reload."""

from __future__ import annotations

import contextlib

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.http import auth
from bridge.http.models import Reloaded, ReloadFailed, Rules, json_answer
from bridge.service import AppState, reload
from bridge.store import StoreUnavailable, outbox
from bridge.store.queries import incident_counts, ready_check


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="OK\n")


async def ready(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    if state.store.fault is not None:  # damaged while serving: not ready until restored
        return web.Response(status=503, text=f"store not ready: damaged: {state.store.fault}\n")
    try:
        await state.store.read(ready_check)
    except (StoreUnavailable, OSError) as exc:
        return web.Response(status=503, text=f"store not ready: {exc}\n")
    return web.Response(text="OK\n")


async def metrics(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    # Gauges of current state are read from the store, so they are right after a restart.
    with contextlib.suppress(StoreUnavailable):
        state.metrics.set_open(await state.store.read(incident_counts))
        stats = await state.store.read(outbox.stats)
        state.metrics.outbox_pending.set(stats.pending)
        state.metrics.notifications_dead.set(stats.dead)
        age = (state.clock() - stats.oldest_pending_at) / 1e9 if stats.oldest_pending_at else 0.0
        state.metrics.outbox_oldest_pending_age.set(max(0.0, age))
    body = generate_latest(state.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def reload_rules(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api, write=True)
    errors = await reload(state)
    if errors:
        return json_answer(ReloadFailed(status="error", errors=errors), status=422)
    return json_answer(Reloaded(status="ok", config_hash=state.runtime.config_hash))


async def rules(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api)
    runtime = state.runtime
    return json_answer(
        Rules(config_hash=runtime.config_hash, files=list(runtime.files), rules=dict(runtime.shown))
    )
