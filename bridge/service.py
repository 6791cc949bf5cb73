"""The running service as its handlers and its lifecycle share it: settings, store, metrics,
the clock, the active rules (``Runtime``) and the outbox worker, and the one way to swap the
rules while it runs (``reload``), used by SIGHUP, ``POST /-/reload`` and ``--watch-rules``."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import ClassVar

from aiohttp import web

from bridge.config import Settings
from bridge.core.timeutil import Clock
from bridge.delivery.worker import OutboxWorker
from bridge.metrics import Metrics
from bridge.runtime import RulesError, Runtime, builtin_runtime, rules_runtime
from bridge.store import Store
from bridge.targets.base import TargetDeps

log = logging.getLogger("bridge.service")


@dataclass
class AppState:
    KEY: ClassVar[web.AppKey[AppState]]

    settings: Settings
    store: Store
    metrics: Metrics
    runtime: Runtime  # swapped whole on reload; a handler reads it once per request
    clock: Clock = field(default=time.time_ns)
    worker: OutboxWorker | None = None
    # what the targets of a reloaded runtime get injected (HTTP session, renderer)
    deps: TargetDeps = field(default_factory=TargetDeps)


AppState.KEY = web.AppKey("state", AppState)


def load_runtime(settings: Settings, deps: TargetDeps) -> Runtime:
    """The rules named in the settings, or the built-in policy when there are none."""
    if not settings.rules:
        return builtin_runtime(settings.reopen_window_s, deps)
    return rules_runtime(settings.rules, deps)


async def reload(state: AppState) -> list[str]:
    """Load the rules aside and swap them in whole; on errors keep the old ones. Returns errors."""
    try:
        runtime = await asyncio.to_thread(load_runtime, state.settings, state.deps)
    except RulesError as exc:
        state.metrics.rules_reload_ok.set(0)
        for line in exc.errors:
            log.error("rules reload failed: %s", line)
        log.error(
            "rules reload failed: keeping the rules loaded before (%s)",
            state.runtime.config_hash[:12],
        )
        return exc.errors
    activate(state, runtime)
    log.info(
        "rules reloaded: %s (%s)", ", ".join(runtime.files) or "built-in", runtime.config_hash[:12]
    )
    return []


def activate(state: AppState, runtime: Runtime) -> None:
    """Make ``runtime`` the active one: for the next webhook, the worker and the metrics."""
    state.runtime = runtime
    if state.worker is not None:
        state.worker.set_targets(runtime.targets)
    state.metrics.rules_reload_ok.set(1)
    state.metrics.rules_reload_time.set(time.time())
    state.metrics.rules_hash.set(int(runtime.config_hash[:12] or "0", 16))
