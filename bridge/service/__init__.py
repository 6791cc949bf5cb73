"""The running service as its handlers and its lifecycle share it: settings, store, metrics,
the clock, the active rules (``Runtime``) and the outbox worker (``AppState``), what a writer
says after its commit (``AppState.committed``), the one way to swap the rules while it runs
(``reload``), used by SIGHUP, ``POST /-/reload`` and ``--watch-rules``, the one way a person's
command reaches the store (``act``), and the base of the background loops. The scheduler of
reminders and the follow-up is ``bridge.service.scheduler``; who may use the API,
``bridge.service.access``."""

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
    "access_fingerprints",
    "act",
    "activate",
    "api_access",
    "ensure_api_token",
    "load_runtime",
    "reload",
    "reload_tokens",
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

    def committed(self, *, notifications: int, mitigated: bool = False) -> None:
        """What a transaction wrote, said once after its commit; whoever must look is woken:
        the outbox worker when it wrote ``notifications`` (outbox rows to send), the scheduler
        when an incident became mitigated (its follow-up opens now, not at the next tick)."""
        if notifications and self.worker is not None:
            self.worker.notify()  # "look at the outbox now"
        if mitigated:
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
    """Make ``runtime`` the active one: for the next webhook, the worker and the metrics."""
    state.runtime = runtime
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


class BackgroundLoop:
    """A task the service runs from start to stop (the scheduler, the indexer, the
    reconciler): ``start`` creates it, ``stop`` cancels it and waits for it to end."""

    NAME = "loop"
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.NAME)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        raise NotImplementedError
