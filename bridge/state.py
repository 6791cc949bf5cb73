"""What the web handlers share: settings, store, metrics, the clock and the active policy."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from aiohttp import web

from bridge.config import Settings
from bridge.metrics import Metrics
from bridge.policy import Policy
from bridge.store import Store

Clock = Callable[[], int]  # nanoseconds since the epoch


@dataclass
class AppState:
    KEY: ClassVar[web.AppKey[AppState]]

    settings: Settings
    store: Store
    metrics: Metrics
    policy: Policy  # swapped as a whole on reload; handlers read it once per request
    clock: Clock = field(default=time.time_ns)


AppState.KEY = web.AppKey("state", AppState)
