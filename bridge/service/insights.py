"""The insights over the running service (docs/insights.md): the store's facts, the active
rules' postmortem policy and rotations' time zones, aggregated by ``core/insights``. The API,
the page, the CSV downloads and the weekly review all ask here, so they show the same numbers.

Answers are cached for ``CACHE_NS`` per (period, labels): the page and its CSV links are asked
together, and a half-minute-old insight of a 30-day period says the same thing. The period ends
at the request's instant rounded up to the cache's step, so two asks within it agree exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from bridge.core.insights import Insights, compute
from bridge.runtime import Runtime
from bridge.service import AppState

CACHE_NS = 30 * 1_000_000_000
_CACHE_MAX = 32


def zones_of(runtime: Runtime) -> Mapping[str, str]:
    """Each person's rotation's time zone (the first rotation naming them, by name)."""
    zones: dict[str, str] = {}
    for name in sorted(runtime.rotations):
        rotation = runtime.rotations[name]
        for member in rotation.members:
            zones.setdefault(member.name, rotation.timezone)
    return zones


class InsightsCache:
    """Answers kept for a short while, keyed by (period end, span, labels)."""

    def __init__(self) -> None:
        self._answers: dict[tuple[int, int, tuple[tuple[str, str], ...]], Insights] = {}
        self._lock = asyncio.Lock()

    async def get(
        self, state: AppState, *, span: int, labels: Sequence[tuple[str, str]] = ()
    ) -> Insights:
        # Up to the next step, not down: what already happened is always in the period.
        until = -(-state.clock() // CACHE_NS) * CACHE_NS
        key = (until, span, tuple(labels))
        async with self._lock:
            found = self._answers.get(key)
            if found is not None:
                return found
            answer = await insights(state, until=until, span=span, labels=labels)
            if len(self._answers) >= _CACHE_MAX:
                self._answers.clear()
            self._answers[key] = answer
            return answer


async def insights(
    state: AppState, *, until: int, span: int, labels: Sequence[tuple[str, str]] = ()
) -> Insights:
    """The insights of [until - span, until), as the active rules judge them."""
    runtime = state.runtime
    facts = await state.store.insights.read(until=until, span=span, labels=labels)

    def required(route: str, severity: str) -> bool:
        return runtime.postmortem_policy(route, severity) == "required"

    # The aggregation is CPU work over up to every incident of the period: off the loop.
    return await asyncio.to_thread(
        compute, facts, now=until, span=span, required=required, zones=zones_of(runtime)
    )
