"""The running service as its handlers and its lifecycle share it: settings, store, metrics,
the clock, the active rules (``Runtime``) and the outbox worker (``AppState``), what a writer
says after its commit (``AppState.committed``), the one way to swap the rules while it runs
(``reload``), used by SIGHUP, ``POST /-/reload`` and ``--watch-rules``, the one way a person's
command reaches the store (``act``), and the base of the background loops. The scheduler of
reminders and the follow-up is ``bridge.service.scheduler``; who may use the API,
``bridge.service.access``.

Replicas on one database (docs/postgresql.md#replicas) coordinate through it alone. A loop that
must run once cluster-wide (``BackgroundLoop.LEASE``: the scheduler, the indexer, the
reconciler) runs only while this replica holds its lease (``store/coordination.py``): the lease
lasts one of the loop's lease ticks, its holder renews it every half tick, the others look every
half tick, so a dead holder's loop resumes on another replica within one and a half ticks, and a
clean stop releases it for the next look. ``ReplicaHeartbeat`` writes this replica's row every
``HEARTBEAT_S`` and reads the others' (``/-/ready``, the metrics)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from aiohttp import web

from bridge.config import ConfigError, Settings, reread_tokens
from bridge.core.actions import Command
from bridge.core.followup import FollowUpCommand
from bridge.core.oncall import OverrideSpan
from bridge.core.timeutil import Clock
from bridge.delivery.worker import OutboxWorker
from bridge.metrics import Metrics
from bridge.runtime import RulesError, Runtime, builtin_runtime, rules_runtime
from bridge.service.access import (
    ApiAccess,
    access_fingerprints,
    api_access,
    ensure_api_token,
    token_fingerprint,
)
from bridge.store.interface import (
    ActionAnswer,
    ActionRequest,
    Idempotency,
    Replica,
    StoreError,
    StoreInterface,
    StoreUnavailable,
)
from bridge.targets.base import TargetDeps

# The access names stay reachable here too: the state holds an ApiAccess (``api``), and the
# callers that make one (the start, the tests) import them with it.
__all__ = [
    "RELOAD_TIMEOUT_S",
    "ApiAccess",
    "AppState",
    "BackgroundLoop",
    "ReplicaHeartbeat",
    "access_fingerprints",
    "act",
    "activate",
    "api_access",
    "ensure_api_token",
    "load_runtime",
    "reload",
    "reload_tokens",
    "rules_differ",
    "token_fingerprint",
]

log = logging.getLogger("bridge.service")


@dataclass
class AppState:
    KEY: ClassVar[web.AppKey[AppState]]

    settings: Settings
    store: StoreInterface
    metrics: Metrics
    runtime: Runtime  # swapped whole on reload; a handler reads it once per request
    clock: Clock = field(default=time.time_ns)
    worker: OutboxWorker | None = None
    # what the targets of a reloaded runtime get injected (HTTP session, renderer)
    deps: TargetDeps = field(default_factory=TargetDeps)
    api: ApiAccess = field(default_factory=ApiAccess)
    # the receiver's budget of webhook bodies held at once (http/receiver.BodyBudget; this
    # layer, below http, holds it without its type), made at the first webhook
    bodies: object = field(default=None, init=False)
    # set by a change that calls for the scheduler before its next tick (a mitigated incident's
    # follow-up opens at once); the scheduler waits on it between ticks
    scheduler_due: asyncio.Event = field(default_factory=asyncio.Event)
    # the reconciler's line for /-/ready (with --alertmanager-url; bridge/reconciler.py)
    reconcile_detail: Callable[[], str] | None = None
    # the loops whose lease this replica holds now (BackgroundLoop.LEASE), for /-/ready
    leading: set[str] = field(default_factory=set)
    # the live replicas on the database at the last heartbeat (this one among them), by id
    replicas: tuple[Replica, ...] = ()
    # set by a reload: the heartbeat writes the new rules' hash now, not at its next beat
    heartbeat_due: asyncio.Event = field(default_factory=asyncio.Event)
    # the stored on-call overrides still holding (service/oncall.py), newest first: merged into
    # every runtime made active, so a reload keeps them
    oncall_overrides: tuple[OverrideSpan, ...] = ()

    def committed(
        self, *, notifications: int, mitigated: bool = False, beaten: bool = False
    ) -> None:
        """What a transaction wrote, said once after its commit; whoever must look is woken:
        the outbox worker when it wrote ``notifications`` (outbox rows to send), the scheduler
        when an incident became mitigated (its follow-up opens now, not at the next tick) or a
        heartbeat beat (a late one's incident is mitigated now)."""
        if notifications and self.worker is not None:
            self.worker.notify()  # "look at the outbox now"
        if mitigated or beaten:
            self.scheduler_due.set()


AppState.KEY = web.AppKey("state", AppState)


def load_runtime(settings: Settings, deps: TargetDeps) -> Runtime:
    """The rules named in the settings, or the built-in policy when there are none."""
    if not settings.rules:
        return builtin_runtime(settings.reopen_window_s, deps)
    return rules_runtime(settings.rules, deps)


# How long loading new rules may take before the reload gives up (the old rules stay). The
# loader bounds each file's size, nodes and nesting (bridge/rules/source.py), so real rules load
# in well under a second; this is the last guard, for SIGHUP, /-/reload and --watch-rules.
RELOAD_TIMEOUT_S = 30.0


async def reload(state: AppState) -> list[str]:
    """Load the rules aside and swap them in whole; on errors keep the old ones. Returns errors.

    Never raises: a reload runs from SIGHUP (a task nobody awaits), /-/reload (a 422) and the
    file watcher, and a bad file must leave the service as it was, the metric at 0."""
    token_errors = await reload_tokens(state)  # first: a removed token stops working at once
    loading = asyncio.to_thread(load_runtime, state.settings, state.deps)
    try:
        runtime = await asyncio.wait_for(loading, RELOAD_TIMEOUT_S)
    except RulesError as exc:
        errors = list(exc.errors)
    except TimeoutError:
        # The loading thread cannot be stopped; it ends on its own and its result is dropped.
        errors = [f"{_rule_paths(state)}: loading took longer than {RELOAD_TIMEOUT_S:g} s"]
    except Exception as exc:  # a loader bug (RecursionError, MemoryError...): not the service's end
        log.error("rules reload: the loader failed", exc_info=exc)
        # The type only: an exception's message may quote the file.
        errors = [f"{_rule_paths(state)}: the rules could not be loaded ({type(exc).__name__})"]
    else:
        activate(state, runtime)
        log.info(
            "rules reloaded: %s (%s)",
            ", ".join(runtime.files) or "built-in",
            runtime.config_hash[:12],
        )
        return token_errors
    state.metrics.rules_reload_ok.set(0)
    for line in errors:
        log.error("rules reload failed: %s", line)
    log.error(
        "rules reload failed: keeping the rules loaded before (%s)",
        state.runtime.config_hash[:12],
    )
    return token_errors + errors


async def reload_tokens(state: AppState) -> list[str]:
    """Read the API tokens again from their files (``--api-token-file``,
    ``--api-read-token-file``, ``--api-tokens-file``) and use them from the next request: a
    token removed or changed there no longer reads or writes through the API, and the web
    sessions made with it end, in the database too (every process on it, and after a restart).
    A file that cannot be read keeps the tokens as they were; its error is returned."""
    if not state.settings.token_files:
        return []
    try:
        settings = await asyncio.to_thread(reread_tokens, state.settings)
    except ConfigError as exc:
        log.error("API tokens reload failed: %s; keeping the tokens loaded before", exc)
        return [str(exc)]
    generated = state.api.write if state.settings.api_token is None else None
    before = access_fingerprints(state.api)
    state.settings = settings
    state.api = api_access(settings, generated)
    gone = before - access_fingerprints(state.api)
    if not gone:
        return []
    try:
        ended = await state.store.sessions.end_of(
            fingerprints=sorted(gone), now=time.time_ns(), why="token removed"
        )
    except StoreUnavailable as exc:
        # This process refuses those sessions anyway (their token is not configured any more).
        log.error(
            "API tokens reloaded, but their sessions could not be ended in the store: %s", exc
        )
        return []
    log.info(
        "API tokens reloaded: %d removed or changed; %d web session(s) made with them ended",
        len(gone),
        ended,
    )
    return []


def _rule_paths(state: AppState) -> str:
    return ", ".join(str(p) for p in state.settings.rules) or "<rules>"


def activate(state: AppState, runtime: Runtime) -> None:
    """Make ``runtime`` the active one: for the next webhook, the worker and the metrics (and
    the other replicas, at once through the heartbeat)."""
    state.runtime = runtime.with_overrides(state.oncall_overrides)
    state.heartbeat_due.set()
    if state.worker is not None:
        state.worker.set_targets(runtime.targets)
    state.metrics.rules_reload_ok.set(1)
    state.metrics.rules_reload_time.set(time.time())
    state.metrics.rules_hash.set(int(runtime.config_hash[:12] or "0", 16))


async def act(
    state: AppState,
    incident_id: int,
    command: Command | FollowUpCommand,
    *,
    idempotency: Idempotency | None = None,
) -> ActionAnswer:
    """A person's command on an incident: the one way in for the API, the CLI (through the
    API), the web page and chat commands. One transaction with its timeline events, its outbox
    rows and the answer kept for its Idempotency-Key; the outbox is woken after the commit."""
    request = ActionRequest(
        incident_id=incident_id,
        command=command,
        now=state.clock(),
        idempotency=idempotency,
        directory=state.runtime.people,
        postmortem_policy=state.runtime.postmortem_policy,
        # a silence on acknowledge needs an Alertmanager to make it in
        silence_on_ack=state.runtime.silence_on_ack if state.settings.alertmanager_urls else None,
    )
    answer = await state.store.actions.apply_action(request)
    incident = answer.body.get("incident") if answer.changed else None
    mitigated = isinstance(incident, dict) and incident.get("status") == "mitigated"
    state.committed(notifications=answer.notifications, mitigated=mitigated)
    return answer


# A lease tick shorter than this would make a write of its own every few milliseconds.
MIN_LEASE_TICK_S = 0.2


class BackgroundLoop:
    """A task the service runs from start to stop (the scheduler, the indexer, the
    reconciler): ``start`` creates it, ``stop`` cancels it and waits for it to end.

    With ``LEASE`` set, the loop's body (``_run``) runs on one replica at a time: only while
    this replica holds the lease of that name. The lease is taken or renewed every half
    ``lease_tick_s`` and lasts one ``lease_tick_s``: a holder that stops renewing (killed,
    partitioned from the database) loses it at most one tick after, and another replica, which
    looks every half tick, takes it then. While the database cannot be reached, a replica keeps
    doing what it did (the loop's own reads and writes fail too, so it writes nothing meanwhile)
    and learns at its first renewal after whether another took the lease over. Two replicas may
    thus both run a tick at a lease's edge; what the loops write is safe for that (a reminder's
    due-time key, the indexer's watermarks and the reconciler's plans are decided again in the
    writer's serial transactions). ``stop`` releases the lease."""

    NAME = "loop"
    LEASE: ClassVar[str] = ""  # "": runs on every replica
    state: AppState
    _task: asyncio.Task[None] | None = None
    _work: asyncio.Task[None] | None = None

    @property
    def lease_tick_s(self) -> float:
        """The loop's tick, as its lease counts it (a subclass with a lease says)."""
        raise NotImplementedError

    @property
    def leading(self) -> bool:
        return self._work is not None

    def start(self) -> None:
        body = self._lead() if self.LEASE else self._run()
        self._task = asyncio.create_task(body, name=self.NAME)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self.LEASE:
            await self._release()

    async def _release(self) -> None:
        """A clean stop hands the lease over at once (the next replica's look takes it)."""
        try:
            await self.state.store.coordination.release_lease(
                name=self.LEASE, holder=self.state.settings.replica_id
            )
        except (StoreError, StoreUnavailable) as exc:
            log.warning("%s: lease not released (it expires on its own): %s", self.LEASE, exc)

    async def _lead(self) -> None:
        coordination = self.state.store.coordination
        me = self.state.settings.replica_id
        failing = False  # said once per outage of the database
        try:
            while True:
                tick = max(self.lease_tick_s, MIN_LEASE_TICK_S)
                asked = time.monotonic()
                now = time.time_ns()
                leads = self._work is not None
                try:
                    free = True
                    if self._work is None:  # a look first: a held lease costs no write
                        found = await coordination.lease(name=self.LEASE)
                        free = found is None or found.holder == me or found.expires_at < now
                    leads = False
                    if free:
                        lease = await coordination.take_lease(
                            name=self.LEASE, holder=me, now=now, until=now + int(tick * 1e9)
                        )
                        # an answer later than the lease's length: it may have run out already
                        leads = lease.holder == me and time.monotonic() < asked + tick
                    failing = False
                except (StoreError, StoreUnavailable) as exc:
                    if not failing:
                        log.warning("%s: lease not renewed: %s; trying again", self.LEASE, exc)
                    failing = True
                self._follow(leads)
                await asyncio.sleep(tick / 2)
        finally:
            await self._follow_stop()

    def _follow(self, leads: bool) -> None:
        """Start the loop's body on becoming the leader, cancel it on losing the lease."""
        if self._work is not None and self._work.done():  # the body ended on its own
            with contextlib.suppress(asyncio.CancelledError):
                if self._work.exception() is not None:
                    log.error("%s ended", self.NAME, exc_info=self._work.exception())
            self._work = None
        if leads and self._work is None:
            log.info("%s: this replica leads (%s)", self.LEASE, self.state.settings.replica_id)
            self._work = asyncio.create_task(self._run(), name=f"{self.NAME} (leader)")
            self._said(True)
        elif not leads and self._work is not None:
            log.warning("%s: lease lost; another replica leads", self.LEASE)
            self._work.cancel()
            self._work = None
            self._said(False)

    async def _follow_stop(self) -> None:
        work, self._work = self._work, None
        if work is not None:
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            self._said(False)

    def _said(self, leads: bool) -> None:
        metrics = self.state.metrics
        metrics.child(metrics.leader, self.LEASE).set(1 if leads else 0)
        if leads:
            self.state.leading.add(self.LEASE)
        else:
            self.state.leading.discard(self.LEASE)

    async def _run(self) -> None:
        raise NotImplementedError


# Seconds between two heartbeats of a replica; a replica not seen for LIVE_BEATS of them is not
# counted live; its row is deleted after PRUNE_AFTER_S (what stopped is there to look at a while).
HEARTBEAT_S = 5.0
LIVE_BEATS = 3
PRUNE_AFTER_S = 3600.0


class ReplicaHeartbeat(BackgroundLoop):
    """Every ``every_s``, and at once after a reload of the rules (``AppState.heartbeat_due``):
    this replica's row (id, the active rules' hash, when it started, now), the rows of
    replicas gone for ``PRUNE_AFTER_S`` deleted, and the live ones read into ``state.replicas``
    and the metrics (how many, whether their rules differ from this one's). A clean stop
    deletes this replica's row."""

    NAME = "heartbeat"

    def __init__(self, state: AppState, every_s: float = HEARTBEAT_S) -> None:
        self.state = state
        self.every_s = every_s
        self.started_at = time.time_ns()

    async def beat(self) -> tuple[Replica, ...]:
        state = self.state
        now = time.time_ns()
        mine = state.runtime.config_hash
        live = await state.store.coordination.heartbeat(
            replica=state.settings.replica_id,
            rules_hash=mine,
            started_at=self.started_at,
            now=now,
            live_after=now - int(LIVE_BEATS * self.every_s * 1e9),
            prune_before=now - int(PRUNE_AFTER_S * 1e9),
        )
        state.replicas = tuple(live)
        metrics = state.metrics
        metrics.replicas.set(len(live))
        metrics.rules_hash_mismatch.set(1 if rules_differ(state) else 0)
        return state.replicas

    async def _run(self) -> None:
        metrics = self.state.metrics
        metrics.child(metrics.replica_info, self.state.settings.replica_id).set(1)
        while True:
            try:
                await self.beat()
            except (StoreError, StoreUnavailable) as exc:
                log.warning("replica heartbeat: %s; trying again", exc)
            except Exception:
                log.exception("replica heartbeat: unexpected error; trying again")
            due = self.state.heartbeat_due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(due.wait(), self.every_s)
            due.clear()

    async def stop(self) -> None:
        await super().stop()
        try:
            await self.state.store.coordination.leave(replica=self.state.settings.replica_id)
        except (StoreError, StoreUnavailable) as exc:
            log.warning("replica heartbeat: row not removed (pruned later): %s", exc)


def rules_differ(state: AppState) -> list[Replica]:
    """The live replicas whose rules are not this one's (a rules change half rolled out)."""
    mine = state.runtime.config_hash
    me = state.settings.replica_id
    return [r for r in state.replicas if r.id != me and r.rules_hash != mine]
