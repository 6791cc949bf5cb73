"""The search indexer and "seen this before": a background loop of the service, started and
stopped by ``app.py`` next to the outbox worker.

Webhooks and people's actions write nothing for search (no trigger, no call on their path:
the ingest path is measured by the instruction). Instead, every tick:

1. ``store/search.index_pending`` in the writer, one transaction: the incidents and timeline
   entries past the watermarks, a bounded batch (a webhook queued behind it waits a few ms);
2. ``store/search.look_up_similar`` on a reader, off the writer: for each incident indexed and
   not yet looked at, its similar past incidents;
3. ``store/search.record_similar`` in the writer: their ``similar_incidents`` entries, outbox
   rows and links, and the watermark; the outbox worker is woken when there are rows to send.

When there is nothing to do it looks again every ``poll_s`` (1 s: a note is searchable and a new
incident names its similar ones about a second after their commit). With a backlog it goes on
at once while the service is otherwise idle, and while webhooks or actions keep arriving it
works at most ``duty`` of the time (a pause after each tick of ``(1 - duty) / duty`` times what
it took, ended early when they stop), so that a storm of new incidents is indexed behind it
without slowing its ingest (docs/performance.md).

With replicas, it runs on the one that holds the ``indexer`` lease (``BackgroundLoop``), of
``LEASE_TICK_S``: its own 1 s tick would renew a lease twice a second for nothing; the leader
finds the other replicas' writes at its next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bridge.service import AppState, BackgroundLoop
from bridge.store.interface import Indexed, Recorded, StoreUnavailable

log = logging.getLogger("bridge.indexer")

POLL_S = 1.0
DUTY = 0.05
# While pacing a backlog: how often it looks whether webhooks and people still write.
PACE_SLICE_S = 0.05
# Incidents looked at for similar ones per tick.
SIMILAR_BATCH = 32
# The indexer's lease (seconds): another replica resumes its work within 1.5 of these.
LEASE_TICK_S = 5.0


NOTHING = Recorded((), (), 0)


@dataclass(frozen=True)
class Tick:
    indexed: Indexed
    recorded: Recorded
    more: bool  # a backlog remains


class Indexer(BackgroundLoop):
    """Runs ``tick`` while the service runs. A store error is logged and the next tick tries
    again; the service does not stop for it."""

    def __init__(
        self,
        state: AppState,
        *,
        incident_url: Callable[[int], str] | None = None,
        poll_s: float = POLL_S,
        duty: float = DUTY,
        similar_batch: int = SIMILAR_BATCH,
        lease_tick_s: float = LEASE_TICK_S,
    ) -> None:
        self.state = state
        self._lease_tick_s = lease_tick_s
        self.incident_url = incident_url
        self.poll_s = poll_s
        self.duty = duty
        self.similar_batch = similar_batch
        self._wake = asyncio.Event()
        self._seen: tuple[int, int] | None = None
        self._written: set[int] = set()

    NAME = "indexer"
    LEASE = "indexer"

    @property
    def lease_tick_s(self) -> float:
        return self._lease_tick_s

    def notify(self) -> None:
        """Look now rather than at the next poll (when not pacing a backlog)."""
        self._wake.set()

    async def tick(self) -> Tick:
        """Index one batch, then look up and record the similar incidents of one batch. An idle
        service costs one read: no write transaction when there is nothing to do."""
        store = self.state.store
        left = await store.search.backlog()
        indexed = Indexed(0, 0, False, left.marks)
        if left.to_index:
            indexed = await store.search.index_pending()
        elif not left.to_look_up:
            return Tick(indexed, NOTHING, more=False)
        ids, upto = await store.search.pending_similar(self.similar_batch)
        recorded = NOTHING
        if ids or upto > indexed.marks.similar:
            found = await store.search.look_up_similar(ids)
            recorded = await store.search.record_similar(
                found, upto=upto, now=self.state.clock(), url=self.incident_url
            )
            # The entries written are timeline entries the next batches read past.
            self._written.update(recorded.event_ids)
        self.state.committed(notifications=recorded.notifications)
        if recorded.linked:
            shown = ", ".join(str(i) for i in recorded.linked[:10])
            more = f" and {len(recorded.linked) - 10} more" if len(recorded.linked) > 10 else ""
            log.info("similar past incidents linked on incident(s) %s%s", shown, more)
        return Tick(indexed, recorded, indexed.more or len(ids) >= self.similar_batch)

    async def _busy(self) -> bool:
        """Whether webhooks or people wrote since the last look (this loop's own entries aside)."""
        seen = await self.state.store.queries.activity()
        before, self._seen = self._seen, seen
        if before is None:
            return True
        ours = sum(1 for i in self._written if before[1] < i <= seen[1])
        self._written = {i for i in self._written if i > seen[1]}
        return seen[0] != before[0] or seen[1] - before[1] > ours

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            started = time.monotonic()
            more = False
            try:
                more = (await self.tick()).more
                if more:
                    await self._pace(time.monotonic() - started)
            except StoreUnavailable as exc:
                log.warning("indexer: store unavailable: %s; trying again", exc)
                more = False
            except Exception:
                log.exception("indexer: unexpected error; trying again")
                more = False
            if not more:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def _pace(self, took: float) -> None:
        """After a tick that left a backlog: on at once while nothing else writes; while
        webhooks or people do, a pause of ``(1 - duty) / duty`` times what the tick took, cut
        short as soon as a look (every ``PACE_SLICE_S``) finds that they stopped."""
        until = time.monotonic() + took * (1 - self.duty) / self.duty
        while await self._busy():
            left = until - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(PACE_SLICE_S, left))
