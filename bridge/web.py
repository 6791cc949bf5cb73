"""The aiohttp application, the operational endpoints, and the process lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge import api, receiver
from bridge.config import Settings
from bridge.metrics import Metrics
from bridge.policy import BuiltinPolicy, Policy
from bridge.state import AppState, Clock
from bridge.store import Store, StoreUnavailable
from bridge.store.queries import open_incident_counts, prune_webhook_bodies

log = logging.getLogger("bridge.web")
PRUNE_EVERY_S = 3600.0


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
    body = generate_latest(state.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """API errors as JSON; aiohttp's defaults are plain text."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or not request.path.startswith("/api/"):
            raise
        return web.json_response(
            {"error": exc.reason},
            status=exc.status,
            headers={
                k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")
            },
        )


def create_app(state: AppState) -> web.Application:
    # The receiver enforces its own limit while streaming; this only caps other endpoints.
    app = web.Application(middlewares=[json_errors], client_max_size=state.settings.max_body_bytes)
    app[AppState.KEY] = state
    for path in ("/api/v1/alerts", "/api/v1/alerts/"):
        app.router.add_post(path, receiver.receive_alerts)
    app.router.add_get("/api/v1/incidents", api.incidents)
    app.router.add_get("/api/v1/incidents/{id}", api.incident)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/metrics", metrics)
    return app


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
    policy: Policy | None = None,
    clock: Clock = time.time_ns,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop``), then finish in-flight writes and return."""
    store = Store(settings.db, synchronous=settings.sqlite_synchronous)  # type: ignore[arg-type]
    applied = store.open()
    if applied:
        log.info("database %s migrated: %s", settings.db, ", ".join(applied))
    state = AppState(
        settings=settings,
        store=store,
        metrics=Metrics.create(),
        policy=policy or BuiltinPolicy(reopen_window_s=settings.reopen_window_s),
        clock=clock,
    )
    app = create_app(state)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=settings.shutdown_timeout_s
    )
    await runner.setup()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True, backlog=1024)
    pruner: asyncio.Task[None] | None = None
    try:
        await site.start()
        log.info(
            "listening on http://%s (database %s, webhook auth %s)",
            settings.listen,
            settings.db,
            "on" if settings.has_webhook_auth else "off",
        )
        if settings.body_retention_s > 0:
            pruner = asyncio.create_task(_prune_loop(state))
        await stop.wait()
        log.info("stopping: no new connections, finishing requests in flight")
    finally:
        if pruner is not None:
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruner
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()  # stops listening, waits for handlers in flight
        store.close()  # commits whatever the writer still holds
        log.info("stopped")
