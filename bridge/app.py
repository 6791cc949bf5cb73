"""Wiring and lifecycle: the aiohttp application's routes, and the process from start to stop
(store, worker, rules, signals, background loops)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import resource
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bridge.config import Settings
from bridge.core.timeutil import Clock
from bridge.delivery.templates import Renderer
from bridge.delivery.worker import OutboxWorker
from bridge.http import (
    actions,
    api,
    callbacks,
    chat,
    declare,
    drills,
    errors,
    followup,
    heartbeats,
    insights,
    live,
    oncall,
    openapi,
    ops,
    pages,
    postmortem,
    receiver,
    search,
    session,
    status,
)
from bridge.http.errors import json_errors
from bridge.http.live import source_of, source_of_peer
from bridge.http.pages.signin import SESSION_KEY
from bridge.indexer import Indexer
from bridge.kb import postmortems
from bridge.kb.reviews import WeeklyReview
from bridge.metrics import Metrics
from bridge.reconciler import Reconciler
from bridge.runtime import RulesError
from bridge.service import (
    AppState,
    BackgroundLoop,
    ReplicaHeartbeat,
    activate,
    load_runtime,
    reload,
)
from bridge.service.access import ApiAccess, api_access, ensure_api_token
from bridge.service.database import describe as describe_db
from bridge.service.database import new_store
from bridge.service.insights import InsightsCache
from bridge.service.oncall import OverridesRefresh
from bridge.service.scheduler import ReminderScheduler
from bridge.store.interface import StoreError, StoreUnavailable
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


def create_app(state: AppState, deps: TargetDeps | None = None) -> web.Application:
    """The routes: every handler gets ``state``; ``deps`` are what reloaded targets get."""
    if deps is not None:
        state.deps = deps
    # The receiver enforces its own limit while streaming; this only caps other endpoints.
    app = web.Application(client_max_size=state.settings.max_body_bytes)
    app[AppState.KEY] = state
    # The delivered counters of every target (the rules' and the built-in senders, after a
    # reload too) exist at 0 from the scrape before their first notification.
    state.metrics.follow_targets(
        lambda: state.worker.targets if state.worker is not None else state.runtime.targets
    )
    _webhook_routes(app)
    app.router.add_get("/api/v1/incidents", json_errors(api.incidents))
    app.router.add_get("/api/v1/incidents/{id}", json_errors(api.incident))
    app.router.add_get("/api/v1/search", json_errors(search.search_incidents))
    # insights (http/insights.py; the page and its CSV tables are pages', docs/insights.md)
    app[insights.CACHE] = InsightsCache()
    app.router.add_get("/api/v1/insights", json_errors(insights.get_insights))
    # the dead man's switch (http/heartbeats.py, docs/heartbeats.md)
    app.router.add_get(heartbeats.LIST_PATH, json_errors(heartbeats.list_heartbeats))
    app.router.add_post(heartbeats.BEAT_PATH, json_errors(heartbeats.beat))
    # who is on call, overrides, calendars (http/oncall.py, docs/oncall.md)
    for verb, oncall_path, oncall_handler in oncall.ROUTES:
        if verb == "GET":  # with HEAD, as every GET
            app.router.add_get(oncall_path, json_errors(oncall_handler))
        else:
            app.router.add_route(verb, oncall_path, json_errors(oncall_handler))
    app.router.add_get("/api/v1/incidents/{id}/followup", json_errors(followup.get_followup))
    # The postmortem (bridge/kb, http/postmortem.py): its API, the published page, and the
    # built-in sender that pushes the knowledge base (with --kb-dir and --kb-remote).
    for method, path, handler, _summary in postmortem.ROUTES:
        if method == "GET":
            app.router.add_get(path, json_errors(handler))
        else:
            app.router.add_post(path, json_errors(handler))
    postmortems.install(state)
    for path, handler in actions.routes():
        app.router.add_post(path, json_errors(handler))
    for path, declaring in declare.routes():  # declare, link, merge (http/declare.py)
        app.router.add_post(path, json_errors(declaring))
    for method, path, drilling, _summary in drills.ROUTES:  # drills (http/drills.py)
        app.router.add_route(method, path, json_errors(drilling))
    app.router.add_get("/api/v1/notifications", json_errors(api.notifications))
    app.router.add_post("/api/v1/notifications/{id}/retry", json_errors(api.retry_notification))
    app.router.add_get("/api/v1/messages", json_errors(api.messages))
    app.router.add_post("/api/v1/messages/{id}/retry", json_errors(api.retry_message))
    app.router.add_get("/api/v1/rules", json_errors(ops.rules))
    app.router.add_get(openapi.PATH, json_errors(openapi.serve))
    # The web pages (http/pages.py, docs/web.md): the list, the incident, sign-in, live updates.
    key = session.signing_key(state.settings)
    pages.install(app, key or b"")
    if key is None:  # PostgreSQL: the replicas' one key, read before the first request

        async def shared_key(app_: web.Application) -> None:
            app_[SESSION_KEY] = await session.database_key(state.store)

        app.on_startup.append(shared_key)
    status.add_routes(app)  # the public status page, no sign-in (http/status.py)
    live.install(app)  # /incidents/{id}/live (http/live.py): the pages' live streams, counted
    app.router.add_post("/-/reload", json_errors(ops.reload_rules))
    app.router.add_get("/-/healthy", ops.healthy)
    app.router.add_get("/-/ready", ops.ready)
    app[ops.STOPPING] = asyncio.Event()  # set at SIGTERM (run's stop sequence)
    app.router.add_get("/metrics", ops.metrics)
    chat.install(app, state)  # /api/v1/chat/...: only those whose secret is configured
    # the paging targets' acknowledgement from a phone (http/callbacks.py)
    app.router.add_post(callbacks.PATH, json_errors(callbacks.page_callback))
    app.router.add_route("*", r"/api/{tail:[\s\S]*}", errors.unmatched)  # last; newlines too
    return app


def _webhook_routes(app: web.Application) -> None:
    for path in ("/api/v1/alerts", "/api/v1/alerts/"):
        app.router.add_post(path, receiver.receive_alerts)  # answers its own errors, fast


def create_webhook_app(state: AppState) -> web.Application:
    """The routes of ``--webhook-listen``: the webhook and the liveness probe, nothing that a
    page, a stream or a script could hold its connections with."""
    app = web.Application(client_max_size=state.settings.max_body_bytes)
    app[AppState.KEY] = state
    _webhook_routes(app)
    app.router.add_get("/-/healthy", ops.healthy)
    return app


def incident_links(settings: Settings) -> Callable[[int], str] | None:
    """The link to an incident's page that messages carry, or None (with a warning) when the
    service cannot know a URL people can open."""
    base = settings.base_url
    if base is None:
        log.warning(
            "messages will carry no link: %s is a wildcard address; set --external-url to the "
            "URL people use to reach this service",
            settings.listen,
        )
        return None
    return lambda incident_id: f"{base}/incidents/{incident_id}"


def describe_access(api: ApiAccess, settings: Settings) -> str:
    """What the start-up log says of the API's doors."""
    if not api.open_reads:
        reads = "API reads need a token"
    elif settings.insecure_open_read_api:
        reads = "API reads are open to anyone who can connect (--insecure-open-read-api)"
    else:
        reads = "API reads are open on this loopback address"
    where = f"the token in {api.token_file}" if api.token_file else "the configured API token"
    return f"{reads}; changes (reload, retry) need {where}; /metrics and /-/* are open"


def runner_options(settings: Settings) -> dict[str, Any]:
    """How the HTTP server treats connections (tests start theirs with the same options)."""
    return {
        "access_log": None,
        "handle_signals": False,
        "shutdown_timeout": settings.shutdown_timeout_s,
        # A body a handler did not read (unauthenticated, too large, undecodable) is not read
        # afterwards to keep the connection open: the connection is closed instead.
        "lingering_time": 0,
        # A connection with no request in progress (a new one still sending its headers, or a
        # kept-alive one between requests) is closed after this.
        "keepalive_timeout": settings.idle_timeout_s,
    }


class ConnectionLimit:
    """What connections may hold, so that Alertmanager always finds room:

    - at most ``limit`` open connections (each takes a file descriptor); at the limit a new one
      closes an idle connection (no request in progress: a silent new one, or a kept-alive
      one between requests) of the address holding the most, and is closed itself only when
      every connection is busy;
    - at most ``per_source`` from one address (0: no cap); one more is closed at once;
    - a new connection has ``header_timeout_s`` for its first request line and headers.

    Closing a connection costs no log line of its own: what was closed and why is summed up in
    one warning at most every ``LOG_EVERY_S``, said once the interval is over.
    """

    LOG_EVERY_S = 60.0
    FIRST_REPORT_S = 1.0  # after a quiet spell: long enough to sum up a burst in one line

    def __init__(
        self,
        server: web.Server,
        limit: int,
        *,
        per_source: int = Settings.max_connections_per_source,
        header_timeout_s: float = Settings.header_timeout_s,
    ) -> None:
        self.server = server
        self.limit = limit
        self.per_source = per_source
        self.header_timeout_s = header_timeout_s
        # open connections by address, oldest first (dicts keep insertion order)
        self.sources: dict[str, dict[web.RequestHandler, asyncio.TimerHandle | None]] = {}
        self.open: dict[web.RequestHandler, str] = {}
        # let in by the Listener, not yet made (``connection_made`` comes a turn later): they
        # count, or one accept batch could pass a cap 64 times over
        self.pending: collections.Counter[str] = collections.Counter()
        # the address each of those was let in for: a peer that resets before its connection
        # is made has no address to ask for any more, and its room must still be given back
        self.reserved: dict[web.RequestHandler, str] = {}
        # closed to make room, not yet gone: they no longer count, or each would make room twice
        self.closing: set[web.RequestHandler] = set()
        self.counts: collections.Counter[str] = collections.Counter()
        self.by_source: collections.Counter[str] = collections.Counter()
        self._logged_at = -self.LOG_EVERY_S
        self._since = 0.0  # when what the next report sums up began
        self._report: asyncio.TimerHandle | None = None
        self._accept = server.connection_made
        self._lost = server.connection_lost
        server.connection_made = self.connection_made  # type: ignore[method-assign]
        server.connection_lost = self.connection_lost  # type: ignore[method-assign]

    @classmethod
    def from_settings(cls, server: web.Server, settings: Settings) -> ConnectionLimit:
        return cls(
            server,
            settings.max_connections,
            per_source=settings.max_connections_per_source,
            header_timeout_s=settings.header_timeout_s,
        )

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        source = self.reserved.pop(handler, None)
        if source is not None:
            self.release(source)  # admitted as it was accepted
        else:
            source = source_of(transport)
            if (refused := self.admit(source)) is not None:
                self._refuse(handler, transport, source, refused)
                return
        loop = asyncio.get_running_loop()
        deadline = loop.call_later(self.header_timeout_s, self._header_deadline, handler)
        self.sources.setdefault(source, {})[handler] = deadline
        self.open[handler] = source
        self._accept(handler, transport)

    def admit(self, source: str, *, reserve: bool = False) -> str | None:
        """Room for one more connection from ``source`` (None), or why not. At the limit, the
        room is made here: an idle connection is closed. ``reserve``: the room is held until
        ``connection_made`` (or ``release``)."""
        # An address at its cap gets no more: a client that reuses its kept-alive connections
        # (Alertmanager does) opens a new one only when all of them are busy. Refusing is the
        # cheapest answer to one that opens connections as fast as they are closed.
        held = len(self.sources.get(source, ())) + self.pending[source]
        if self.per_source and held >= self.per_source:
            return f"refused at --max-connections-per-source {self.per_source}"
        # At the limit, an idle connection of the address holding the most makes room; only
        # when every one is busy is the new one refused.
        if len(self.open) - len(self.closing) + self.pending.total() >= self.limit:
            biggest = sorted(self.sources, key=lambda s: len(self.sources[s]), reverse=True)
            if not self._close_idle(biggest, "idle closed to make room"):
                return f"refused at --max-connections {self.limit}"
        if reserve:
            self.pending[source] += 1
        return None

    def release(self, source: str) -> None:
        self.pending[source] -= 1
        if self.pending[source] <= 0:
            del self.pending[source]

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        source = self.open.pop(handler, None)
        self.closing.discard(handler)
        if source is not None:
            held = self.sources[source]
            deadline = held.pop(handler, None)
            if deadline is not None:
                deadline.cancel()
            if not held:
                del self.sources[source]
        self._lost(handler, exc)

    @staticmethod
    def _idle(handler: web.RequestHandler) -> bool:
        """No request in progress: waiting for one (aiohttp's own test, in its keep-alive
        timer). A connection whose handler has not started yet is not idle: it is new."""
        waiter = handler._waiter
        return waiter is not None and not waiter.done() and not handler._request_in_progress

    def _close_idle(self, sources: list[str], why: str) -> bool:
        for source in sources:
            for handler in self.sources.get(source, {}):
                if self._idle(handler):
                    handler.force_close()  # connection_lost follows, which forgets it
                    self.closing.add(handler)
                    self.count(why, source)
                    return True
        return False

    def _header_deadline(self, handler: web.RequestHandler) -> None:
        source = self.open.get(handler)
        if source is None:
            return
        self.sources[source][handler] = None
        if handler._request_count == 0 and self._idle(handler):
            handler.force_close()
            self.closing.add(handler)
            self.count(f"no headers within --header-timeout {self.header_timeout_s:g}s", source)

    def _refuse(
        self, handler: web.RequestHandler, transport: asyncio.Transport, source: str, why: str
    ) -> None:
        # The handler's start() is already scheduled, and it asserts that the connection is
        # still there: with the close flag set it ends at once, and the transport is aborted
        # only after that (a traceback per refusal otherwise). Nothing it sends is read.
        handler._force_close = True
        transport.pause_reading()
        asyncio.get_running_loop().call_soon(transport.abort)
        self.count(why, source)

    def count(self, what: str, source: str) -> None:
        """One connection closed or refused, for the next summary."""
        self.counts[what] += 1
        self.by_source[source] += 1
        if self._report is None:
            loop = asyncio.get_running_loop()
            now = self._since = loop.time()
            at = max(self._logged_at + self.LOG_EVERY_S, now + self.FIRST_REPORT_S)
            self._report = loop.call_at(at, self.report)

    def report(self) -> None:
        """One warning for what happened since the last one: at the end of an interval, the
        first after a quiet spell a moment after it started."""
        self._report = None
        if not self.counts:
            return
        self._logged_at = asyncio.get_running_loop().time()
        total = self.counts.total()
        what = ", ".join(f"{n} {why}" for why, n in self.counts.most_common())
        source, most = self.by_source.most_common(1)[0]
        log.warning(
            "connections: %d closed in %.0fs (%s); the most from %s (%d); open now %d",
            total,
            self._logged_at - self._since,
            what,
            source,
            most,
            len(self.open),
        )
        self.counts.clear()
        self.by_source.clear()


class Listener:
    """A listening socket served by the aiohttp ``server``, whose new connections are checked
    against the caps as they are accepted: one refused is closed there, before asyncio or
    aiohttp makes anything of it (no transport, no handler, no task). A client that opens
    connections as fast as they are closed then costs an accept and a close each, and the
    loop accepts at most ``BATCH`` at a time, so the rest of the service keeps its turn.
    ``ConnectionLimit`` still sees every connection let in (it counts, closes idle ones,
    and refuses in a race that this first look could not see)."""

    BATCH = 64
    PAUSE_S = 1.0  # out of file descriptors: accept again after this (as asyncio does)

    def __init__(self, server: web.Server, limit: ConnectionLimit, host: str, port: int) -> None:
        self.server = server
        self.limit = limit
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, port), family=family, backlog=1024)
        self.sock.setblocking(False)
        self.connecting: set[asyncio.Task[Any]] = set()

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self) -> None:
        if self.sock.fileno() >= 0:  # not closed (the shutdown) during a pause
            asyncio.get_running_loop().add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()

    def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.BATCH):
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: wait instead of spinning
                self.limit.count(f"not accepted ({exc.strerror})", "this host")
                loop.remove_reader(self.sock.fileno())
                loop.call_later(self.PAUSE_S, self.start)
                return
            source = source_of_peer(peer)
            refused = self.limit.admit(source, reserve=True)
            if refused is not None:
                conn.close()
                self.limit.count(refused, source)
                continue
            conn.setblocking(False)
            task = loop.create_task(self._serve(conn, source))
            self.connecting.add(task)
            task.add_done_callback(self.connecting.discard)

    async def _serve(self, conn: socket.socket, source: str) -> None:
        made: list[web.RequestHandler] = []

        def handler() -> web.RequestHandler:
            # the address it was let in for goes with it (see ConnectionLimit.reserved)
            made.append(self.server())
            self.limit.reserved[made[-1]] = source
            return made[-1]

        try:
            await asyncio.get_running_loop().connect_accepted_socket(handler, conn)
        except OSError:  # gone before it was made: its room is given back
            conn.close()
            if not made or self.limit.reserved.pop(made[-1], None) is not None:
                self.limit.release(source)


def raise_file_limit(settings: Settings) -> None:
    """Connections and the database each take a file descriptor: raise the soft limit as far as
    the hard one allows, and say so when even that is too low (set LimitNOFILE)."""
    listeners = 1 + bool(settings.webhook_listen) + bool(settings.status_listen)
    need = settings.max_connections * listeners + 128
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < need:
        log.warning(
            "open files limited to %d: fewer than --max-connections %d needs (%d); raise the "
            "limit (systemd LimitNOFILE=%d, ulimit -n) or lower --max-connections",
            soft,
            settings.max_connections,
            need,
            need,
        )


def _rule_files_mtimes(paths: tuple[Path, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for path in paths:
        files = [path] if path.is_file() else sorted(path.rglob("*.y*ml")) if path.is_dir() else []
        for f in files:
            with contextlib.suppress(OSError):
                out[str(f)] = f.stat().st_mtime
    return out


async def _watch_rules(state: AppState) -> None:
    seen = await asyncio.to_thread(_rule_files_mtimes, state.settings.rules)
    while True:
        await asyncio.sleep(WATCH_EVERY_S)
        now = await asyncio.to_thread(_rule_files_mtimes, state.settings.rules)
        if now != seen:
            seen = now
            log.info("rule files changed; reloading")
            await reload(state)


async def _prune_loop(state: AppState) -> None:
    while True:
        cutoff = state.clock() - int(state.settings.body_retention_s * 1e9)
        try:
            pruned = await state.store.queries.prune_webhook_bodies(cutoff)
            if pruned:
                log.info("pruned %d webhook bodies past retention", pruned)
        except StoreUnavailable as exc:
            log.warning("pruning webhook bodies failed: %s", exc)
        await asyncio.sleep(PRUNE_EVERY_S)


def _reconciler(state: AppState, session: aiohttp.ClientSession) -> Reconciler | None:
    """With --alertmanager-url: the reconciler, and the built-in sender ``@alertmanager`` that
    makes and expires the silences of ``silence_on_ack`` (docs/reconcile.md)."""
    settings = state.settings
    if not settings.alertmanager_urls:
        return None
    from bridge.alertmanager_api import AlertmanagerClient
    from bridge.silences import SilenceSender

    client = AlertmanagerClient(
        settings.alertmanager_urls,
        session=session,
        token=settings.alertmanager_token,
        basic_user=settings.alertmanager_basic_user,
        basic_password=settings.alertmanager_basic_password,
        ca_file=settings.alertmanager_ca_file,
        clock=state.clock,
    )
    reconciler = Reconciler(
        state,
        client,
        interval_s=settings.reconcile_interval_s,
        grace_s=settings.alertmanager_grace_s,
        min_age_s=settings.reconcile_min_age_s,
    )
    state.reconcile_detail = reconciler.detail
    if state.worker is not None:
        state.worker.add_builtin(
            SilenceSender(
                client, lambda route: state.runtime.silence_on_ack(route), clock=state.clock
            )
        )
    log.info(
        "reconciling with Alertmanager every %gs: %s",
        settings.reconcile_interval_s,
        ", ".join(client.peers),
    )
    return reconciler


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
    store = new_store(settings)
    try:
        applied = store.open()
    except StoreError as exc:
        await session.close()
        log.error("%s", exc)
        raise
    if applied:
        log.info("database %s migrated: %s", describe_db(settings), ", ".join(applied))
    metrics_ = Metrics.create()
    links = incident_links(settings)
    # The outbox's claims under this replica's id; SQLite is held by one process at a time (its
    # lock file), so one fixed id: a restart takes back at once what a crash left claimed.
    replica = settings.replica_id if settings.database_url is not None else "sqlite"
    worker = OutboxWorker(
        store, runtime.targets, metrics_, clock=clock, incident_url=links, replica=replica
    )
    state = AppState(
        settings=settings,
        store=store,
        metrics=metrics_,
        runtime=runtime,
        clock=clock,
        worker=worker,
        deps=deps,
        api=api_access(settings, ensure_api_token(settings)),
    )
    activate(state, runtime)
    app = create_app(state, deps)
    raise_file_limit(settings)
    runner = web.AppRunner(app, **runner_options(settings))
    await runner.setup()
    assert runner.server is not None
    limit = ConnectionLimit.from_settings(runner.server, settings)
    stop = stop or asyncio.Event()
    hurry = asyncio.Event()  # a second SIGTERM/SIGINT: no more --shutdown-delay
    loop = asyncio.get_running_loop()

    def on_stop_signal() -> None:
        if stop.is_set():
            hurry.set()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop_signal)
    reloads: set[asyncio.Task[list[str]]] = set()  # the loop keeps only weak references

    def on_sighup() -> None:
        task = asyncio.create_task(reload(state))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    # --webhook-listen: a runner of its own, so its own connections, caps and accept queue
    hooks: web.AppRunner | None = None
    listeners: list[Listener] = []
    if settings.webhook_listen is not None:
        hooks = web.AppRunner(create_webhook_app(state), **runner_options(settings))
        await hooks.setup()
        assert hooks.server is not None
        hook_limit = ConnectionLimit.from_settings(hooks.server, settings)
    # --status-listen: the public status page alone, on a runner of its own as well
    public: web.AppRunner | None = None
    if settings.status_listen is not None:
        public = web.AppRunner(status.create_status_app(state), **runner_options(settings))
        await public.setup()
        assert public.server is not None
        public_limit = ConnectionLimit.from_settings(public.server, settings)
    background: list[asyncio.Task[None]] = []
    reminders = ReminderScheduler(state, every_s=settings.scheduler_interval_s)
    indexer = Indexer(state, incident_url=links)
    reconciler = _reconciler(state, session)
    heartbeat = ReplicaHeartbeat(state)  # this replica seen by the others (docs/postgresql.md)
    overrides = OverridesRefresh(state)  # the stored on-call overrides, on every replica
    # --weekly-review: the insights of each week into the knowledge base (kb/reviews.py)
    review = WeeklyReview(state) if settings.weekly_review else None
    try:
        listeners.append(Listener(runner.server, limit, settings.host, settings.port))
        if hooks is not None and settings.webhook_listen is not None:
            assert hooks.server is not None
            hook_host, hook_port = settings.webhook_listen
            listeners.append(Listener(hooks.server, hook_limit, hook_host, hook_port))
            log.info("webhooks also on http://%s", listeners[-1].address)
        if public is not None and settings.status_listen is not None:
            assert public.server is not None
            public_host, public_port = settings.status_listen
            listeners.append(Listener(public.server, public_limit, public_host, public_port))
            log.info("status page also on http://%s/status", listeners[-1].address)
        for listener in listeners:
            listener.start()
        log.info(
            "listening on http://%s (database %s, rules %s, webhook auth %s)",
            settings.listen,
            describe_db(settings),
            ", ".join(str(p) for p in settings.rules) or "built-in",
            "on" if settings.has_webhook_auth else "off",
        )
        log.info("%s", describe_access(state.api, settings))
        worker.start()
        heartbeat.start()
        overrides.start()
        if review is not None:
            review.start()
        reminders.start()
        indexer.start()
        if reconciler is not None:
            reconciler.start()
        tune_gc()
        if settings.body_retention_s > 0:
            background.append(asyncio.create_task(_prune_loop(state)))
        if settings.watch_rules and settings.rules:
            background.append(asyncio.create_task(_watch_rules(state)))
        await stop.wait()
        await _shutdown_delay(app, settings, hurry)
    finally:
        await _stop(
            settings,
            listeners,
            [r for r in (hooks, public, runner) if r is not None],
            background,
            [
                reminders,
                indexer,
                *([reconciler] if reconciler is not None else []),
                heartbeat,
                overrides,
                *([review] if review is not None else []),
            ],
            worker,
        )
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        store.close()  # commits whatever the writer still holds
        await session.close()
        log.info("stopped")


async def _shutdown_delay(app: web.Application, settings: Settings, hurry: asyncio.Event) -> None:
    """The first step of a stop: /-/ready answers 503 at once while everything is still
    served, for --shutdown-delay (or until a second signal). Kubernetes removes a pod that is
    terminating from the Service's endpoints, but every node's proxy and every ingress learns
    it a moment later: closing the listeners at once would refuse what they still send."""
    app[ops.STOPPING].set()
    delay = settings.shutdown_delay_s
    if delay <= 0:
        return
    log.info("stopping: /-/ready answers 503; still serving for --shutdown-delay %gs", delay)
    try:
        await asyncio.wait_for(hurry.wait(), delay)
        log.info("stopping: a second signal ends the delay")
    except TimeoutError:
        pass


DRAIN_POLL_S = 0.05


async def drain(servers: list[web.Server], timeout_s: float) -> int:
    """Waits until no connection of ``servers`` has a request in progress, for at most
    ``timeout_s``, closing each connection once it is idle (kept alive between requests, or
    new and silent). A request in progress is left alone: aiohttp's own shutdown marks every
    connection closing at once, and a closing connection drops what still arrives, so a
    webhook whose body was on its way would wait for the rest in vain (and be answered 503).
    At the deadline, those still in progress are closed: the handler's read fails, and it
    unwinds at once. Returns how many were."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        busy = []
        for server in servers:
            for handler in list(server.connections):
                if ConnectionLimit._idle(handler):
                    handler.close()
                else:
                    busy.append(handler)
        if not busy:
            return 0
        if loop.time() >= deadline:
            for handler in busy:
                handler.force_close()
            return len(busy)
        await asyncio.sleep(DRAIN_POLL_S)


async def _stop(
    settings: Settings,
    listeners: list[Listener],
    runners: list[web.AppRunner],
    background: list[asyncio.Task[None]],
    loops: list[BackgroundLoop],
    worker: OutboxWorker,
) -> None:
    """The stop after the delay, in this order: no new connections, the requests in flight
    finished (webhooks answered and committed), then the loops (each gives up its leadership
    in stop()), then the worker (sends in flight finish). The store closes after this."""
    log.info(
        "stopping: listeners closed; finishing the requests in flight (--shutdown-timeout %gs)",
        settings.shutdown_timeout_s,
    )
    for listener in listeners:
        listener.close()  # no new connections
    for each in runners:
        # The app's on_shutdown, as aiohttp runs it before it waits for handlers: the live
        # streams, which never end on their own, end now (their pages reconnect elsewhere)
        # instead of holding the drain for --shutdown-timeout. Cleanup runs it again: a no-op.
        await each.shutdown()
    servers = [each.server for each in runners if each.server is not None]
    late = await drain(servers, settings.shutdown_timeout_s)
    if late:
        log.warning(
            "stopping: %d request(s) still in flight after --shutdown-timeout %gs: closed",
            late,
            settings.shutdown_timeout_s,
        )
    for each in runners:
        await each.cleanup()  # what is left: idle connections, closed handlers unwinding
    log.info("stopping: background loops")
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    for loop_ in loops:
        # A tick in flight still commits (the writer finishes it); the indexer's remainder is
        # indexed at the next start; the reconciler asks Alertmanager again at the next start.
        await loop_.stop()
    log.info("stopping: outbox worker (sends in flight finish)")
    await worker.stop()  # unsent rows stay pending for the next start (or another replica)
    log.info("stopping: closing the store")
