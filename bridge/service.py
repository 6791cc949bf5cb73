"""What the web handlers share: settings, store, metrics, the clock and the active policy."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from aiohttp import web

from bridge.config import Settings
from bridge.metrics import Metrics
from bridge.runtime import Runtime
from bridge.store import Store

if TYPE_CHECKING:
    from bridge.delivery.worker import OutboxWorker

Clock = Callable[[], int]  # nanoseconds since the epoch


@dataclass
class AppState:
    KEY: ClassVar[web.AppKey[AppState]]

    settings: Settings
    store: Store
    metrics: Metrics
    runtime: Runtime  # swapped whole on reload; a handler reads it once per request
    clock: Clock = field(default=time.time_ns)
    worker: OutboxWorker | None = None


AppState.KEY = web.AppKey("state", AppState)
