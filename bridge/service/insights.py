"""The insights over the running service (docs/insights.md): the store's facts, the active
rules' postmortem policy and rotations' time zones, aggregated by ``core/insights``. The API,
the page and the CSV downloads all ask here, so they show the same numbers.

Answers are kept per (period, labels) (``InsightsCache``): the page and its CSV links are asked
together, and a half-minute-old insight of a 30-day period says the same thing. The period ends
at the request's instant rounded up to a 30 s step, so two asks within it agree exactly; an
answer up to 10 minutes old is served at once while the next one is computed behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bridge.core.insights import Insights, WorkingHours, compute, tables_of
from bridge.runtime import Runtime
from bridge.service import AppState

CACHE_NS = 30 * 1_000_000_000
STALE_NS = 10 * 60 * 1_000_000_000
_CACHE_MAX = 32
# Incidents per write transaction of the scheduler's refresh (a few ms on PostgreSQL)
REFRESH_CHUNK = 50
# what a tick may spend refreshing (a tick is 15 s by default): 1/60 of the writer at most
REFRESH_BUDGET_S = 0.25
log = logging.getLogger("bridge.insights")


def zones_of(runtime: Runtime) -> Mapping[str, str]:
    """Each person's rotation's time zone (the first rotation naming them, by name)."""
    zones: dict[str, str] = {}
    for name in sorted(runtime.rotations):
        rotation = runtime.rotations[name]
        for member in rotation.members:
            zones.setdefault(member.name, rotation.timezone)
    return zones


def working_hours_of(runtime: Runtime) -> Mapping[str, WorkingHours]:
    """Each person's rotation's working hours: the same rotation as ``zones_of`` (the first
    naming them, by name): its ``working_hours``, 09:00-18:00 Monday to Friday by default."""
    hours: dict[str, WorkingHours] = {}
    for name in sorted(runtime.rotations):
        rotation = runtime.rotations[name]
        for member in rotation.members:
            hours.setdefault(member.name, rotation.working_hours)
    return hours


@dataclass
class _Kept:
    until: int
    answer: Insights
    refresh: asyncio.Task[None] | None = None


class InsightsCache:
    """Answers kept per (span, labels). Fresh (the same ``CACHE_NS`` step): served as they are.
    Stale by less than ``STALE_NS``: served at once while one task computes the new answer for
    the next ask (100,000 incidents take seconds to aggregate; a page should not). Older, or
    never asked: computed while the request waits."""

    def __init__(self) -> None:
        self._kept: dict[tuple[int, tuple[tuple[str, str], ...]], _Kept] = {}
        self._lock = asyncio.Lock()

    async def get(
        self, state: AppState, *, span: int, labels: Sequence[tuple[str, str]] = ()
    ) -> Insights:
        # Up to the next step, not down: what already happened is always in the period.
        until = -(-state.clock() // CACHE_NS) * CACHE_NS
        key = (span, tuple(labels))
        kept = self._kept.get(key)
        if kept is not None and kept.until >= until:
            return kept.answer
        if kept is not None and until - kept.until <= STALE_NS:
            if kept.refresh is None or kept.refresh.done():
                kept.refresh = asyncio.create_task(self._refresh(state, key, until))
            return kept.answer
        async with self._lock:  # one computation at a time: they are CPU-bound
            answer = await insights(state, until=until, span=span, labels=labels)
        self._keep(key, until, answer)
        return answer

    async def _refresh(
        self, state: AppState, key: tuple[int, tuple[tuple[str, str], ...]], until: int
    ) -> None:
        try:
            async with self._lock:
                answer = await insights(state, until=until, span=key[0], labels=key[1])
        except Exception:  # the next ask computes it again, or serves the kept answer
            log.warning("insights: refreshing a kept answer failed", exc_info=True)
            return
        self._keep(key, until, answer)

    def _keep(
        self, key: tuple[int, tuple[tuple[str, str], ...]], until: int, answer: Insights
    ) -> None:
        kept = self._kept.get(key)
        if kept is not None and kept.until >= until:
            return
        if kept is None and len(self._kept) >= _CACHE_MAX:
            self._kept.pop(next(iter(self._kept)))
        refresh = kept.refresh if kept is not None else None
        self._kept[key] = _Kept(until, answer, refresh)


async def insights(
    state: AppState, *, until: int, span: int, labels: Sequence[tuple[str, str]] = ()
) -> Insights:
    """The insights of [until - span, until), as the active rules judge them. Without labels,
    from the kept aggregates (fast at any size), refreshed first; a label filter reads the
    period incident by incident (labels are not kept: slower, and rarer)."""
    runtime = state.runtime
    zones, hours_of = zones_of(runtime), working_hours_of(runtime)

    def required(route: str, severity: str) -> bool:
        return runtime.postmortem_policy(route, severity) == "required"

    if not labels:
        # the webhooks' writes only mark what they touched: the aggregates brought up to every
        # commit first (a write; the scheduler's ticks keep what is left small), so an answer
        # is never behind the store
        await state.store.insights.refresh()
        rollup = await state.store.insights.read_rollup(until=until, span=span, required=required)
        return tables_of(rollup, now=until, span=span, zones=zones, hours_of=hours_of)
    facts = await state.store.insights.read(until=until, span=span, labels=labels)
    # The aggregation is CPU work over up to every incident of the period: off the loop.
    return await asyncio.to_thread(
        compute,
        facts,
        now=until,
        span=span,
        required=required,
        zones=zones,
        hours_of=hours_of,
    )


async def refresh_aggregates(state: AppState) -> int:
    """One tick's step of the scheduler: the kept aggregates brought up to the incidents
    written since the last refresh, so that the set an answer refreshes first stays small.
    ``REFRESH_CHUNK`` incidents per write transaction, so that the webhooks' writes queued
    behind each wait briefly, and at most ``REFRESH_BUDGET_S`` of them a tick: in a storm the
    webhooks come first (bench/ingest.py's p99 on PostgreSQL: 335 ms with every mark drained
    each tick in chunks of 500, 92 ms in chunks of 100, 52 ms in chunks of 100 for 0.5 s, 31
    ms in chunks of 50 for 0.25 s, 37 ms without the step), and what is left waits for the
    next tick or the next answer, which refreshes all that is marked before it reads.
    Returns how many incidents were refreshed."""
    total = 0
    started = time.monotonic()
    while True:
        done = await state.store.insights.refresh(limit=REFRESH_CHUNK)
        total += done
        if done < REFRESH_CHUNK or time.monotonic() - started >= REFRESH_BUDGET_S:
            break
    if total:
        log.debug("insights: %d incidents' aggregates refreshed", total)
    return total
