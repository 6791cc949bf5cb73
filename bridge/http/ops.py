"""Operational endpoints: liveness, readiness, metrics, the active rules and their reload."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.core.heartbeats import state_of
from bridge.http import auth
from bridge.http.models import Reloaded, ReloadFailed, Rules, json_answer
from bridge.runtime import Runtime
from bridge.service import AppState, reload, rules_differ
from bridge.store.interface import StoreUnavailable

# Set by bridge/app.py at SIGTERM: from then on /-/ready answers 503 "stopping" (the load
# balancer stops sending) while the listeners still serve everything, for --shutdown-delay.
STOPPING = web.AppKey("stopping", asyncio.Event)


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="OK\n")


async def ready(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    stopping = request.app.get(STOPPING)
    if stopping is not None and stopping.is_set():
        return web.Response(status=503, text="stopping\n")
    if state.store.fault is not None:  # damaged while serving: not ready until restored
        return web.Response(status=503, text=f"store not ready: damaged: {state.store.fault}\n")
    try:
        await state.store.queries.ready_check()
    except (StoreUnavailable, OSError) as exc:
        return web.Response(status=503, text=f"store not ready: {exc}\n")
    # Alertmanager's API is a detail, never a reason to refuse traffic: webhooks still count.
    detail = state.reconcile_detail() + "\n" if state.reconcile_detail is not None else ""
    return web.Response(text="OK\n" + detail + replicas_detail(state))


def replicas_detail(state: AppState) -> str:
    """This replica, the loops it leads, the replicas seen; a warning when live replicas run
    other rules. Still 200: during a rolling change of the rules replicas differ for a while,
    and taking every replica out of the load balancer for it would stop the webhooks too (the
    ``IncidentBridgeRulesDiffer`` alert says when it lasts)."""
    me = state.settings.replica_id
    leads = ", ".join(sorted(state.leading)) or "nothing"
    lines = [f"replica {me}: leads {leads}; {len(state.replicas) or 1} replica(s) live"]
    differ = rules_differ(state)
    if differ:
        others = ", ".join(f"{r.id} ({r.rules_hash[:12]})" for r in differ)
        lines.append(
            f"warning: rules differ: this replica runs {state.runtime.config_hash[:12]}, {others}"
        )
    return "".join(line + "\n" for line in lines)


_teams_cache: dict[str, frozenset[str]] = {}


def rule_teams(runtime: Runtime) -> frozenset[str]:
    """The teams the active rules name (each route's ``team``): the only ``team`` label values
    besides ``other`` and ``none``. Worked out once per rules version."""
    found = _teams_cache.get(runtime.config_hash)
    if found is None:
        teams: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, Mapping):
                decides = node.get("decides")
                if isinstance(decides, Mapping) and isinstance(decides.get("team"), str):
                    teams.add(decides["team"])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list | tuple):
                for value in node:
                    walk(value)

        walk(runtime.shown)
        found = _teams_cache[runtime.config_hash] = frozenset(teams)
        if len(_teams_cache) > 16:  # reloads: keep the few newest
            del _teams_cache[next(iter(_teams_cache))]
    return found


async def metrics(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    # Everything about incidents is read from the store (gauges of current state, and the
    # aggregates the incident metrics are computed from), so it is right after a restart. The
    # read runs on the store's read pool, never on the event loop.
    with contextlib.suppress(StoreUnavailable):
        runtime = state.runtime
        teams = rule_teams(runtime)
        counts, stats, agg = await state.store.metrics.scrape(teams)  # one read
        state.metrics.set_open(counts)
        state.metrics.outbox_pending.set(stats.pending)
        state.metrics.notifications_dead.set(stats.dead)
        age = (state.clock() - stats.oldest_pending_at) / 1e9 if stats.oldest_pending_at else 0.0
        state.metrics.outbox_oldest_pending_age.set(max(0.0, age))
        state.metrics.incidents.update(
            agg.histograms,
            agg.counters,
            agg.postmortems,
            agg.followup_items_open,
            lambda route, severity: runtime.postmortem_policy(route, severity) == "required",
            teams,
            agg.drill_histograms,  # drills' own families (docs/drills.md)
            agg.drill_counters,
        )
        await _heartbeat_metrics(state)
    body = generate_latest(state.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _heartbeat_metrics(state: AppState) -> None:
    """The dead man's switch's gauges from the store (a read only with heartbeats in the
    rules)."""
    heartbeats = state.runtime.heartbeats
    if not heartbeats:
        state.metrics.heartbeats.update(())
        return
    seen = {s.name: s for s in await state.store.heartbeats.read(names=list(heartbeats))}
    now = state.clock()
    rows = []
    for name, hb in heartbeats.items():
        kept = seen.get(name)
        last = kept.last_seen / 1e9 if kept is not None and kept.last_seen is not None else None
        rows.append((name, last, state_of(hb, kept, now) == "late"))
    state.metrics.heartbeats.update(rows)


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
