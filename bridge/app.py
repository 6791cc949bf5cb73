"""The aiohttp application, the operational endpoints, and the process lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.config import Settings
from bridge.delivery.templates import Renderer
from bridge.delivery.worker import OutboxWorker
from bridge.http import api, receiver
from bridge.metrics import Metrics
from bridge.runtime import RulesError, Runtime, builtin_runtime, rules_runtime
from bridge.service import AppState, Clock
from bridge.store import Store, StoreUnavailable
from bridge.store import outbox as outbox_q
from bridge.store.queries import open_incident_counts, prune_webhook_bodies
from bridge.targets.base import TargetDeps

log = logging.getLogger("bridge.app")
PRUNE_EVERY_S = 3600.0
WATCH_EVERY_S = 2.0
# Young-generation collections every GC_YOUNG_THRESHOLD container allocations instead of
# CPython's 700: every webhook allocates a few hundred short-lived objects.
GC_YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """What exists once the service is up (modules, rules, templates, the app) lives as long as
    the process: ``gc.freeze`` keeps it out of every later collection, so that a full collection
    scans only what requests left behind. With the higher young threshold, collections run a
    few times a second under load instead of hundreds, and their pauses leave the p99."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="OK\n")


async def ready(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    try:
        await state.store.read(lambda conn: conn.execute("SELECT 1 FROM incidents LIMIT 1"))
    except (StoreUnavailable, OSError) as exc:
        return web.Response(status=503, text=f"store not ready: {exc}\n")
    return web.Response(text="OK\n")


async def metrics(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    # Gauges of current state are read from the store, so they are right after a restart.
    with contextlib.suppress(StoreUnavailable):
        state.metrics.set_open(await state.store.read(open_incident_counts))
        stats = await state.store.read(outbox_q.stats)
        state.metrics.outbox_pending.set(stats.pending)
        state.metrics.notifications_dead.set(stats.dead)
        age = (state.clock() - stats.oldest_pending_at) / 1e9 if stats.oldest_pending_at else 0.0
        state.metrics.outbox_oldest_pending_age.set(max(0.0, age))
    body = generate_latest(state.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def reload_handler(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    api.authorize(request, state)
    errors = await reload(state, request.app[DEPS_KEY])
    if errors:
        return web.json_response({"status": "error", "errors": errors}, status=422)
    return web.json_response({"status": "ok", "config_hash": state.runtime.config_hash})


async def rules_handler(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    api.authorize(request, state)
    runtime = state.runtime
    return web.json_response(
        {"config_hash": runtime.config_hash, "files": list(runtime.files), "rules": runtime.shown}
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _as_json(exc: web.HTTPException) -> web.Response:
    return web.json_response(
        {"error": exc.reason},
        status=exc.status,
        headers={
            k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")
        },
    )


def json_errors(handler: Handler) -> Handler:
    """API errors as JSON; aiohttp's defaults are plain text.

    A wrapper of the API handlers rather than an application middleware: a middleware wraps
    every route, the webhook receiver too, whose errors are JSON already and which is the one
    route that has to be fast (two more coroutines to start and resume for every webhook)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.content_type == "application/json":
                raise  # already JSON
            return _as_json(exc)

    return wrapped


async def api_unmatched(request: web.Request) -> web.StreamResponse:
    """Any other /api/ path or method: 405 with ``Allow`` when the path exists, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is request.match_info.route.resource:
            continue
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    if allowed:
        return _as_json(web.HTTPMethodNotAllowed(request.method, sorted(allowed)))
    return _as_json(web.HTTPNotFound())


DEPS_KEY = web.AppKey("target_deps", TargetDeps)


def create_app(state: AppState, deps: TargetDeps | None = None) -> web.Application:
    # The receiver enforces its own limit while streaming; this only caps other endpoints.
    app = web.Application(client_max_size=state.settings.max_body_bytes)
    app[AppState.KEY] = state
    app[DEPS_KEY] = deps or TargetDeps()
    for path in ("/api/v1/alerts", "/api/v1/alerts/"):
        app.router.add_post(path, receiver.receive_alerts)
    app.router.add_get("/api/v1/incidents", json_errors(api.incidents))
    app.router.add_get("/api/v1/incidents/{id}", json_errors(api.incident))
    app.router.add_get("/api/v1/notifications", json_errors(api.notifications))
    app.router.add_post("/api/v1/notifications/{id}/retry", json_errors(api.retry_notification))
    app.router.add_get("/api/v1/rules", json_errors(rules_handler))
    app.router.add_post("/-/reload", reload_handler)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_route("*", "/api/{tail:.*}", api_unmatched)  # last: the others come first
    return app


def load_runtime(settings: Settings, deps: TargetDeps) -> Runtime:
    """The rules named in the settings, or the built-in policy when there are none."""
    if not settings.rules:
        return builtin_runtime(settings.reopen_window_s, deps)
    return rules_runtime(settings.rules, deps)


async def reload(state: AppState, deps: TargetDeps) -> list[str]:
    """Load the rules aside and swap them in whole; on errors keep the old ones. Returns errors."""
    try:
        runtime = await asyncio.to_thread(load_runtime, state.settings, deps)
    except RulesError as exc:
        state.metrics.rules_reload_ok.set(0)
        for line in exc.errors:
            log.error("rules reload failed: %s", line)
        log.error(
            "rules reload failed: keeping the rules loaded before (%s)",
            state.runtime.config_hash[:12],
        )
        return exc.errors
    _activate(state, runtime)
    log.info(
        "rules reloaded: %s (%s)", ", ".join(runtime.files) or "built-in", runtime.config_hash[:12]
    )
    return []


def _activate(state: AppState, runtime: Runtime) -> None:
    state.runtime = runtime
    if state.worker is not None:
        state.worker.set_targets(runtime.targets)
    state.metrics.rules_reload_ok.set(1)
    state.metrics.rules_reload_time.set(time.time())
    state.metrics.rules_hash.set(int(runtime.config_hash[:12] or "0", 16))


def _rule_files_mtimes(paths: tuple[Path, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for path in paths:
        files = [path] if path.is_file() else sorted(path.rglob("*.y*ml")) if path.is_dir() else []
        for f in files:
            with contextlib.suppress(OSError):
                out[str(f)] = f.stat().st_mtime
    return out


async def _watch_rules(state: AppState, deps: TargetDeps) -> None:
    seen = await asyncio.to_thread(_rule_files_mtimes, state.settings.rules)
    while True:
        await asyncio.sleep(WATCH_EVERY_S)
        now = await asyncio.to_thread(_rule_files_mtimes, state.settings.rules)
        if now != seen:
            seen = now
            log.info("rule files changed; reloading")
            await reload(state, deps)


async def _prune_loop(state: AppState) -> None:
    while True:
        cutoff = state.clock() - int(state.settings.body_retention_s * 1e9)
        try:
            pruned = await state.store.write(
                functools.partial(prune_webhook_bodies, older_than=cutoff)
            )
            if pruned:
                log.info("pruned %d webhook bodies past retention", pruned)
        except StoreUnavailable as exc:
            log.warning("pruning webhook bodies failed: %s", exc)
        await asyncio.sleep(PRUNE_EVERY_S)


async def run(
    settings: Settings,
    *,
    clock: Clock = time.time_ns,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop``), then finish in-flight work and return."""
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    deps = TargetDeps(session=session, renderer=Renderer(user_dir=settings.templates))
    try:
        runtime = load_runtime(settings, deps)
    except RulesError as exc:
        await session.close()
        for line in exc.errors:
            log.error("rules: %s", line)
        raise
    store = Store(settings.db, synchronous=settings.sqlite_synchronous)  # type: ignore[arg-type]
    applied = store.open()
    if applied:
        log.info("database %s migrated: %s", settings.db, ", ".join(applied))
    metrics_ = Metrics.create()
    worker = OutboxWorker(
        store,
        runtime.targets,
        metrics_,
        clock=clock,
        incident_url=lambda i: f"{settings.base_url}/api/v1/incidents/{i}",
    )
    state = AppState(
        settings=settings,
        store=store,
        metrics=metrics_,
        runtime=runtime,
        clock=clock,
        worker=worker,
    )
    _activate(state, runtime)
    app = create_app(state, deps)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=settings.shutdown_timeout_s
    )
    await runner.setup()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[list[str]]] = set()  # the loop keeps only weak references

    def on_sighup() -> None:
        task = asyncio.create_task(reload(state, deps))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True, backlog=1024)
    background: list[asyncio.Task[None]] = []
    try:
        await site.start()
        log.info(
            "listening on http://%s (database %s, rules %s, webhook auth %s)",
            settings.listen,
            settings.db,
            ", ".join(str(p) for p in settings.rules) or "built-in",
            "on" if settings.has_webhook_auth else "off",
        )
        worker.start()
        tune_gc()
        if settings.body_retention_s > 0:
            background.append(asyncio.create_task(_prune_loop(state)))
        if settings.watch_rules and settings.rules:
            background.append(asyncio.create_task(_watch_rules(state, deps)))
        await stop.wait()
        log.info("stopping: no new connections, finishing requests in flight")
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await runner.cleanup()  # stops listening, waits for handlers in flight
        await worker.stop()  # sends in flight finish; unsent rows stay pending for next start
        store.close()  # commits whatever the writer still holds
        await session.close()
        log.info("stopped")
