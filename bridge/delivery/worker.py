"""The delivery worker: takes due outbox rows, sends them through their targets, and records
the outcome. Nothing is lost: a row leaves ``pending`` only as ``delivered`` or ``dead``.

- Order: only the oldest pending row of an (incident, target) is sent, one at a time, so
  "resolved" never overtakes "opened".
- Storms: rows waiting for the same incident, target and tier go out as one message.
- Retries: a few quick ones inside an attempt (tenacity), then a persisted schedule with
  exponential backoff, jitter and a cap, never sooner than the target's Retry-After; permanent
  errors and exhausted retries are dead-lettered with their reason.
- Rate limits: a Retry-After (or a vendor's hint) pauses the whole target until then, not only
  the row that got it; its rows wait in the outbox, other targets go on.
- The store refusing writes (disk full, read-only): an outcome that cannot be recorded is kept
  in memory and written again with a backoff; its row is not sent again meanwhile, so a row
  never goes out faster than its schedule.
- Crashes: a row sent but not yet marked is sent again after a restart with the same
  idempotency key, which the targets pass on where the remote API dedupes.
- Channel messages (tied to no incident: a rotation's hand-off, a drill's announcement;
  ``store/messages.py``) are taken from their own table on each look and go through the same
  send, quick retries, backoff, pauses and dead letter as the outbox's rows, each claimed with
  a lease as a head is; their outcome is recorded in their table (``Attempt.message``).
- Replicas: several workers (``serve`` processes on one PostgreSQL database) share the outbox.
  Each claims the heads it sends under its replica id, with a lease it renews while the sends
  last and releases when it stops; a replica that died holds its heads until the lease runs
  out, then another sends them again (same group, same idempotency key). A target's pause and
  each channel's pace are kept in the database (``store/outbox.py``), so a Retry-After seen by
  one replica holds them all and the replicas together keep one channel's pace. The gate just
  before a request (``_Gate``) stays per process: it only spaces what the claims let through.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from bridge.core.incidents import Event
from bridge.core.timeutil import NS, Clock
from bridge.delivery import snapshot
from bridge.delivery.protocol import (
    DeliveryError,
    DeliveryResult,
    Digest,
    DigestSender,
    Notification,
    PermanentError,
    RateLimited,
    RetryableError,
    Sender,
)
from bridge.metrics import Metrics
from bridge.store.interface import (
    LEASE_NS,
    Attempt,
    Context,
    MessageRow,
    OutboxRow,
    Pace,
    StoreInterface,
    StoreUnavailable,
)

log = logging.getLogger("bridge.delivery.worker")

# The replica id of this process's workers unless the service gives one (``--replica-id``):
# unique to the process, so that a restarted process never takes a dead one's claims for its
# own; the workers of one process (tests) share it, as they share the process.
REPLICA = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 12  # persisted attempts; with the defaults about 5 hours in all
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 1800.0
    quick_attempts: int = 3  # tries inside one attempt for short hiccups
    quick_max_wait_s: float = 2.0
    group_size: int = 20
    concurrency_per_target: int = 4
    due_per_target: int = 100  # rows a target may have in one look, so none crowds out others
    poll_s: float = 5.0
    # An outcome the store refused is written again after this, doubling up to the cap.
    record_retry_s: float = 0.5
    record_retry_cap_s: float = 30.0
    # A rate limit without a hint: the row waits this long (not an attempt).
    rate_limit_wait_s: float = 5.0
    # Pacing keeps this margin over a target's min_interval_s: the vendor measures the gap
    # between arrivals, which jitters by some milliseconds around the gap between sends.
    pace_margin: float = 0.05
    pace_margin_s: float = 0.02
    # Storms: when more general-tier messages wait for one channel than its pace lets out
    # within digest_budget_s, they go out as digests of up to digest_size incidents (for the
    # targets that can send one; 0 or 1 turns digests off).
    digest_budget_s: float = 10.0
    digest_size: int = 20
    # A claim's lease (store/outbox.LEASE_NS), renewed every third of it while its send lasts.
    lease_s: float = LEASE_NS / NS


def paced_interval(interval: float, policy: DeliveryPolicy) -> float:
    """The least gap the worker keeps between two messages to one channel."""
    if interval <= 0:
        return 0.0
    return interval * (1 + policy.pace_margin) + policy.pace_margin_s


def backoff_s(
    attempts: int, policy: DeliveryPolicy, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with full jitter in the upper half: base*2^(n-1), capped."""
    ceiling = min(policy.backoff_cap_s, policy.backoff_base_s * 2.0 ** max(0, attempts - 1))
    return ceiling / 2 + rand() * ceiling / 2


class _WaitRetryAfter:
    """Quick retries: honour a short Retry-After, else a small exponential wait; never before
    the target's pause (``paused()`` seconds) is over."""

    def __init__(self, cap: float, paused: Callable[[], float]) -> None:
        self.cap = cap
        self.paused = paused

    def __call__(self, retry_state: Any) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        after = getattr(exc, "retry_after", None)
        if after is not None:
            wait = float(min(after, self.cap))
        else:
            wait = float(min(self.cap, 0.2 * 2 ** (retry_state.attempt_number - 1)))
        return max(wait, self.paused())


def _quick(exc: BaseException, cap: float) -> bool:
    if isinstance(exc, RateLimited) and exc.scope is not None:
        return False  # the target keeps that window itself and already waited what it could
    return isinstance(exc, RetryableError) and (exc.retry_after is None or exc.retry_after <= cap)


@dataclass
class _Pacer:
    """At most one send per ``interval`` (ns) per channel, across the replicas: the slot is
    taken in the claim's write (``outbox.Pace``, on the wall clock the replicas share). This
    keeps what the replica last learned of each channel's next slot, so that it asks for a slot
    only when one may be free. Rows wait in the outbox (not in memory) until their channel's
    turn, so they stay free to be coalesced with later events."""

    interval: int
    next_at: dict[str, int] = field(default_factory=dict)

    def delay(self, key: str, now: int) -> float:
        """Seconds until ``key`` may send; 0: its slot may be free, and it is kept for the
        caller's claim until ``settle`` says how the claim went."""
        if self.interval <= 0:
            return 0.0
        at = self.next_at.get(key, 0)
        if at > now:
            return (at - now) / NS
        if len(self.next_at) > 1000:  # one key per dedicated channel: forget the idle ones
            self.next_at = {k: v for k, v in self.next_at.items() if v > now}
        self.next_at[key] = now + self.interval
        return 0.0

    def settle(self, key: str, *, taken: bool, slot: int | None) -> None:
        """The claim's answer for ``key``: its slot taken, held by another send until ``slot``,
        or not used (none of its rows could be claimed)."""
        if slot is not None:
            self.next_at[key] = slot
        elif not taken:
            self.next_at.pop(key, None)


@dataclass
class _Gate:
    """The pace of the requests actually sent: a send waits here, just before it goes out, for
    its channel's turn (``interval`` after the previous send started). The ``_Pacer`` decides
    when a row is claimed, which is earlier than its request by a write, a read and a render:
    pacing on the claim alone let two requests to one channel go out closer than the interval.
    """

    interval: float
    next_at: dict[str, float] = field(default_factory=dict)

    async def wait(self, key: str) -> None:
        if self.interval <= 0:
            return
        now = time.monotonic()
        if len(self.next_at) > 1000:  # one key per dedicated channel: forget the idle ones
            self.next_at = {k: at for k, at in self.next_at.items() if at > now}
        slot = max(now, self.next_at.get(key, 0.0))
        self.next_at[key] = slot + self.interval  # reserved before sleeping: no two share it
        if slot > now:
            await asyncio.sleep(slot - now)


class _Paused(Exception):
    """The target asked to wait (Retry-After) while this send queued: nothing was sent, the
    row waits in the outbox for the target's turn."""


# What the retry schedule reads of a row: an outbox head or a channel message.
_Row = OutboxRow | MessageRow
# An outcome held in memory, by ("incident", incident id, target) or ("message", id, target).
_Key = tuple[str, int, str]


def _key(row: _Row) -> _Key:
    if isinstance(row, MessageRow):
        return ("message", row.id, row.target)
    return ("incident", row.incident_id, row.target)


# Channel messages taken in one look at most; more wait for the next.
MESSAGES_PER_LOOK = 50


@dataclass
class _Unrecorded:
    """An outcome the store refused: written again at ``next_try`` (``time.monotonic``); its
    row is not sent again until then."""

    attempt: Attempt
    tries: int
    next_try: float


def _headline(group: list[OutboxRow]) -> str:
    """The event a coalesced message is about: its newest milestone, else "timeline"."""
    return next((r.event for r in reversed(group) if r.event != "timeline"), group[-1].event)


def _channel(row: OutboxRow) -> str:
    """Pacing applies per channel: each incident has its own dedicated channel."""
    return f"incident-{row.incident_id}" if row.tier == "incident" else "general"


class OutboxWorker:
    def __init__(
        self,
        store: StoreInterface,
        targets: Mapping[str, Sender],
        metrics: Metrics,
        *,
        clock: Clock = time.time_ns,
        policy: DeliveryPolicy | None = None,
        incident_url: Callable[[int], str] | None = None,
        replica: str = REPLICA,
    ) -> None:
        self.store = store
        self.replica = replica
        self.targets = dict(targets)
        # senders of the service itself (the knowledge base's push), kept across reloads
        self._builtin: dict[str, Sender] = {}
        self.metrics = metrics
        self.clock = clock
        self.policy = policy or DeliveryPolicy()
        self.incident_url = incident_url
        self._wake = asyncio.Event()
        self._inflight: dict[tuple[int, str], asyncio.Task[None]] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._pacers: dict[str, _Pacer] = {}
        self._gates: dict[str, _Gate] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._paced_until: float | None = None  # seconds until a paced channel may send
        # Target -> when (``clock``, ns) it may be sent to again, after a Retry-After.
        self._paused: dict[str, int] = {}
        # (incident, target) or a channel message -> an outcome the store has not taken yet;
        # the row waits for it.
        self._unrecorded: dict[_Key, _Unrecorded] = {}
        # Leaders this replica claimed whose outcome is not recorded yet (renewed, released).
        self._claimed: set[int] = set()
        # The same for channel messages (their own ids), and their sends in flight.
        self._message_claims: set[int] = set()
        self._message_tasks: dict[int, asyncio.Task[None]] = {}
        self._renew_at = time.monotonic() + self.policy.lease_s / 3
        # Target -> why it asked to wait, for the pauses this replica saw (written to the store
        # with the next outcome recorded, so that every replica holds its sends).
        self._pause_reasons: dict[str, str] = {}
        # The pacing clock: the wall clock, the same for every replica of the database.
        self.wall: Callable[[], int] = time.time_ns

    def set_targets(self, targets: Mapping[str, Sender]) -> None:
        """Swap the targets (after a rules reload); sends in flight finish with the old ones.
        The built-in senders stay."""
        self.targets = {**targets, **self._builtin}
        self._pacers.clear()  # a reload may change a target's pacing
        self._gates.clear()

    def add_builtin(self, sender: Sender) -> None:
        """A sender of the service itself, not of the rules (its name cannot be a rule
        target's): kept whatever the rules become."""
        self._builtin[sender.name] = sender
        self.targets[sender.name] = sender

    def notify(self) -> None:
        """New rows were committed: look now instead of at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-worker")

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop taking rows; let sends in flight finish (their rows stay pending otherwise),
        and release the claims of those that did not: the other replicas take them at once."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        pending = list(self._inflight.values()) + list(self._message_tasks.values())
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._record_held(every=True)
        await self._release(list(self._claimed))
        await self._release_messages(list(self._message_claims))
        if self._unrecorded:
            log.error(
                "outbox: stopping with %d outcome(s) the store did not take; those "
                "notifications go out again after the restart, under the same idempotency keys",
                len(self._unrecorded),
            )

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            next_at: int | None = None
            try:
                await self.run_once()
                after = self.clock()
                times = (
                    await self.store.outbox.next_due_at(after=after, replica=self.replica),
                    await self.store.messages.next_due_at(after=after, replica=self.replica),
                )
                next_at = min((t for t in times if t is not None), default=None)
            except StoreUnavailable as exc:
                log.warning("outbox: store unavailable: %s", exc)
            except Exception:
                log.exception("outbox: unexpected error; continuing")
            delay = self._delay(next_at)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay if delay > 0 else 0.05):
                    await self._wake.wait()

    def _delay(self, next_at: int | None) -> float:
        """Seconds until the next look: when a row's retry is due, a paced channel's or a
        paused target's turn comes, a refused outcome is written again, or this replica's
        claims are renewed; at most ``poll_s``.
        Rows already due that were not started wait for one of these (or for a send in flight,
        whose end wakes the worker): the worker does not look again in a loop meanwhile."""
        now = self.clock()
        delays = [self.policy.poll_s]
        if next_at is not None:
            delays.append((next_at - now) / NS)
        if self._paced_until is not None:
            delays.append(self._paced_until)
        delays.extend((until - now) / NS for until in self._paused.values())
        mono = time.monotonic()
        delays.extend(held.next_try - mono for held in self._unrecorded.values())
        if self._claimed or self._message_claims:  # renewed on time, not up to a poll late
            delays.append(self._renew_at - mono)
        return max(0.0, min(delays))

    async def run_once(self) -> int:
        """Start a send for every due (incident, target) whose channel may send now and that
        is not already sending; return how many."""
        await self._record_held()
        await self._renew()
        now = self.clock()
        # The pauses any replica was asked for; a send queued here checks them before it goes.
        for name, until in (await self.store.outbox.paused_targets(now=now)).items():
            self._paused[name] = max(until, self._paused.get(name, 0))
        self._paused = {name: until for name, until in self._paused.items() if until > now}
        self._pause_reasons = {n: r for n, r in self._pause_reasons.items() if n in self._paused}
        messages = await self._start_messages(now)
        rows = await self.store.outbox.due(
            now=now, limit=1000, per_target=self.policy.due_per_target, replica=self.replica
        )
        wall = self.wall()
        paces: dict[tuple[str, str], list[int]] = {}  # the slots asked for, and their leaders
        leaders: list[int] = []
        # (target, channel) -> the leaders of its digest; None: the channel has no turn now
        digests: dict[tuple[str, str], list[int] | None] = {}
        storming = self._storming(rows)
        self._paced_until = None
        for row in rows:  # most severe first (store/outbox.priority)
            key = (row.incident_id, row.target)
            if key in self._inflight or _key(row) in self._unrecorded:
                continue  # one send at a time; an outcome not yet recorded holds its row
            if row.target in self._paused:
                continue  # the target asked to wait: its rows stay in the outbox, unclaimed
            channel = _channel(row)
            if row.tier == "general" and (row.target, channel) in storming:
                batch = digests.get((row.target, channel), [])
                if not batch and batch is not None:
                    wait = self._pacer(row.target).delay(channel, wall)  # the digest's turn
                    if wait > 0:
                        self._paced_until = min(self._paced_until or wait, wait)
                        batch = None
                    elif self._pacer(row.target).interval > 0:
                        paces[(row.target, channel)] = batch  # one slot for the digest
                    digests[(row.target, channel)] = batch
                if batch is not None and len(batch) < self.policy.digest_size:
                    batch.append(row.id)
                continue
            wait = self._pacer(row.target).delay(channel, wall)
            if wait > 0:
                self._paced_until = min(self._paced_until or wait, wait)
                continue
            if self._pacer(row.target).interval > 0:
                paces[(row.target, channel)] = [row.id]
            leaders.append(row.id)
        batches = [batch for batch in digests.values() if batch]
        claimed = leaders + [leader for batch in batches for leader in batch]
        if not claimed:
            return messages
        # One write claims every group (and takes the paced channels' slots), one read loads
        # what their messages need.
        groups = await self.store.outbox.claim_groups(
            leader_ids=claimed,
            max_group=self.policy.group_size,
            replica=self.replica,
            now=now,
            lease_ns=int(self.policy.lease_s * NS),
            paces=[
                Pace(target, channel, self._pacer(target).interval, tuple(ids))
                for (target, channel), ids in paces.items()
            ],
            pace_now=wall,
        )
        self._claimed.update(groups)
        for (target, channel), ids in paces.items():
            slot = groups.paced.get((target, channel))
            taken = any(i in groups for i in ids)
            self._pacer(target).settle(channel, taken=taken, slot=slot)
            if slot is not None:
                wait = max(0.0, (slot - wall) / NS)
                self._paced_until = min(self._paced_until or wait, wait)
        contexts = await self.store.outbox.contexts(
            groups=list(groups.values()), max_alerts=snapshot.MAX_ALERTS
        )
        started = 0
        for leader_id in leaders:
            if (group := groups.get(leader_id)) is not None:
                self._start(self._deliver(group, contexts.get(leader_id)), [group])
                started += 1
        for batch in batches:
            members = [groups[leader] for leader in batch if leader in groups]
            if len(members) == 1:
                self._start(self._deliver(members[0], contexts.get(members[0][0].id)), members)
            elif members:
                self._start(self._deliver_digest(members, contexts), members)
            started += len(members)
        return started + messages

    async def _start_messages(self, now: int) -> int:
        """Claim the channel messages due (not those of a paused target, nor one already
        sending or whose outcome waits to be recorded) and start their sends; how many."""
        rows = await self.store.messages.due(now=now, limit=MESSAGES_PER_LOOK, replica=self.replica)
        wanted = [
            row.id
            for row in rows
            if row.id not in self._message_tasks
            and row.target not in self._paused
            and _key(row) not in self._unrecorded
        ]
        if not wanted:
            return 0
        claimed = await self.store.messages.claim(
            ids=wanted, replica=self.replica, now=now, lease_ns=int(self.policy.lease_s * NS)
        )
        for row in claimed:
            self._message_claims.add(row.id)
            task = asyncio.create_task(self._deliver_message(row))
            self._message_tasks[row.id] = task
            task.add_done_callback(functools.partial(self._message_done, row))
        return len(claimed)

    def _message_done(self, row: MessageRow, task: asyncio.Task[None]) -> None:
        self._message_tasks.pop(row.id, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error(
                "outbox: a channel message to %s failed unexpectedly", row.target, exc_info=exc
            )
        self._wake.set()

    def _message(self, row: MessageRow) -> Notification:
        """A channel message as its target is handed it: no incident, the ``message`` (its
        kind and data; the inherited incidents' links when the service knows its URL)."""
        data: dict[str, Any] = {**row.data, "kind": row.kind}
        incidents = data.get("incidents")
        if self.incident_url is not None and isinstance(incidents, list):
            data["incidents"] = [
                {**i, "url": self.incident_url(int(i["id"]))} if "id" in i else i for i in incidents
            ]
        return Notification(
            id=row.id,
            idempotency_key=row.idempotency_key,
            target=row.target,
            tier="general",
            event="timeline",
            incident={},
            message=data,
            sequence=row.id,
        )

    async def _deliver_message(self, row: MessageRow) -> None:
        """One channel message through ``_send`` (the target's turn, quick retries, a pause),
        its outcome through the same schedule as an outbox row's (``_fail``, ``_record``)."""
        target = self.targets.get(row.target)
        if target is None:
            await self._fail(row, PermanentError("unknown_target"))
            return
        started = time.perf_counter()
        try:
            result = await self._send(row.target, target, self._message(row), "general")
        except _Paused:
            await self._release_messages([row.id])
            return
        except DeliveryError as exc:
            self._observe(row.target, started)
            await self._fail(row, exc)
            return
        except Exception as exc:  # a bug in a target must not kill the worker
            self._observe(row.target, started)
            log.exception("outbox: target %s raised unexpectedly", row.target)
            await self._fail(row, RetryableError(f"internal_{type(exc).__name__}"))
            return
        self._observe(row.target, started)
        attempt = Attempt(row.id, self.clock(), provider_ids=dict(result.provider_ids))
        await self._record(row, dataclasses.replace(attempt, message=True))
        self.metrics.notifications.labels(row.target, row.kind).inc()

    def _start(self, send: Any, groups: list[list[OutboxRow]]) -> None:
        keys = [(g[0].incident_id, g[0].target) for g in groups]
        task = asyncio.create_task(send)
        for key in keys:
            self._inflight[key] = task
        task.add_done_callback(functools.partial(self._done_all, keys))

    def _done_all(self, keys: list[tuple[int, str]], task: asyncio.Task[None]) -> None:
        for key in keys:
            self._done(key, task)

    def _storming(self, rows: list[OutboxRow]) -> set[tuple[str, str]]:
        """The (target, channel)s whose waiting general-tier messages are more than the
        channel's pace lets out within ``digest_budget_s``, for targets that send digests."""
        waiting: dict[tuple[str, str], int] = {}
        for row in rows:
            if row.tier == "general" and (row.incident_id, row.target) not in self._inflight:
                key = (row.target, _channel(row))
                waiting[key] = waiting.get(key, 0) + 1
        out: set[tuple[str, str]] = set()
        if self.policy.digest_size < 2:
            return out
        for (name, channel), count in waiting.items():
            target = self.targets.get(name)
            if not isinstance(target, DigestSender):
                continue
            interval = paced_interval(target.pacing_s, self.policy)
            if interval > 0 and count > max(1.0, self.policy.digest_budget_s / interval):
                out.add((name, channel))
        return out

    def _pacer(self, name: str) -> _Pacer:
        pacer = self._pacers.get(name)
        if pacer is None:
            target = self.targets.get(name)
            interval = target.pacing_s if target is not None else 0.0
            pacer = self._pacers[name] = _Pacer(int(paced_interval(interval, self.policy) * NS))
        return pacer

    def _gate(self, name: str, target: Sender) -> _Gate:
        gate = self._gates.get(name)
        if gate is None:
            gate = self._gates[name] = _Gate(paced_interval(target.pacing_s, self.policy))
        return gate

    def _done(self, key: tuple[int, str], task: asyncio.Task[None]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("outbox: a send to %s failed unexpectedly", key[1], exc_info=exc)
        self._wake.set()  # the next row of this incident and target may be due

    async def drain(self) -> None:
        """Wait until the sends in flight are done (tests and shutdown)."""
        while self._inflight or self._message_tasks:
            sends = [*self._inflight.values(), *self._message_tasks.values()]
            await asyncio.gather(*sends, return_exceptions=True)

    # -- a target's pause (Retry-After) -----------------------------------------------------

    def _pause(self, name: str, seconds: float, reason: str) -> None:
        until = self.clock() + int(seconds * NS)
        if until > self._paused.get(name, 0):
            self._paused[name] = until
            self._pause_reasons[name] = reason
            log.info(
                "outbox: %s asked to wait %.1fs (%s); nothing is sent to it until then",
                name,
                seconds,
                reason,
            )

    def _pause_left(self, name: str) -> float:
        """Seconds until ``name`` may be sent to again (0: now)."""
        until = self._paused.get(name)
        return 0.0 if until is None else max(0.0, (until - self.clock()) / NS)

    # -- one message ----------------------------------------------------------------------

    async def _deliver(self, group: list[OutboxRow], ctx: Context | None) -> None:
        leader = group[0]
        target = self.targets.get(leader.target)
        if target is None:
            await self._fail(leader, PermanentError("unknown_target"))
            return
        if ctx is None:
            await self._fail(leader, PermanentError("incident_missing"))
            return
        try:
            notification = self._notification(group, ctx)
        except Exception as exc:  # a bug, not the target's fault: retried on the schedule
            log.exception("outbox: cannot build notification %d", leader.id)
            await self._fail(leader, RetryableError(f"internal_{type(exc).__name__}"))
            return
        started = time.perf_counter()
        try:
            result = await self._send(leader.target, target, notification, _channel(leader))
        except _Paused:
            log.debug("outbox: notification %d waits for %s's pause", leader.id, leader.target)
            await self._release([leader.id])
            return
        except DeliveryError as exc:
            self._observe(leader.target, started)
            await self._fail(leader, exc)
            return
        except Exception as exc:  # a bug in a target must not kill the worker
            self._observe(leader.target, started)
            log.exception("outbox: target %s raised unexpectedly", leader.target)
            await self._fail(leader, RetryableError(f"internal_{type(exc).__name__}"))
            return
        self._observe(leader.target, started)
        await self._record(
            leader,
            Attempt(
                leader.id,
                self.clock(),
                state=dict(result.state) if result.state else None,
                provider_ids=dict(result.provider_ids),
                timeline=tuple(
                    Event(n.kind, n.text, dict(n.data), actor=n.actor) for n in result.timeline
                ),
            ),
        )
        for member in group:
            self.metrics.notifications.labels(member.target, member.event).inc()

    def _notification(self, group: list[OutboxRow], ctx: Context) -> Notification:
        leader = group[0]
        return Notification(
            id=leader.id,
            idempotency_key=leader.idempotency_key,
            target=leader.target,
            tier=leader.tier,  # type: ignore[arg-type]
            event=_headline(group),  # type: ignore[arg-type]
            incident=snapshot.from_store(ctx.incident, self.incident_url),
            events=tuple(ctx.events),
            state=ctx.state,
            sequence=leader.id,
        )

    async def _deliver_digest(
        self, groups: list[list[OutboxRow]], contexts: Mapping[int, Context]
    ) -> None:
        """Several incidents' messages to one channel as one digest; delivered, each of their
        rows is marked delivered (with the digest's ids) and none is sent again alone."""
        first = groups[0][0]
        target = self.targets.get(first.target)
        if target is not None and not isinstance(target, DigestSender):
            # a reload made it a target that sends no digests: one message each, as usual
            for group in groups:
                await self._deliver(group, contexts.get(group[0].id))
            return
        items: list[Notification] = []
        members: list[list[OutboxRow]] = []
        for group in groups:
            ctx = contexts.get(group[0].id)
            if target is None:
                await self._fail(group[0], PermanentError("unknown_target"))
            elif ctx is None:
                await self._fail(group[0], PermanentError("incident_missing"))
            else:
                try:
                    items.append(self._notification(group, ctx))
                except Exception as exc:  # a bug: retried on the schedule, the others go on
                    log.exception("outbox: cannot build notification %d", group[0].id)
                    await self._fail(group[0], RetryableError(f"internal_{type(exc).__name__}"))
                    continue
                members.append(group)
        if target is None or not members:
            return
        digest = Digest(first.target, first.tier, tuple(items))  # type: ignore[arg-type]
        started = time.perf_counter()
        try:
            result = await self._send_digest(first.target, target, digest, _channel(first))
        except _Paused:
            await self._release([group[0].id for group in members])
            return
        except DeliveryError as exc:
            self._observe(first.target, started)
            for group in members:
                await self._fail(group[0], exc)
            return
        except Exception as exc:
            self._observe(first.target, started)
            log.exception("outbox: target %s raised unexpectedly on a digest", first.target)
            for group in members:
                await self._fail(group[0], RetryableError(f"internal_{type(exc).__name__}"))
            return
        self._observe(first.target, started)
        log.info(
            "outbox: %d incidents to %s went out as one digest (a storm: more waited for the "
            "channel than it takes one by one)",
            len(members),
            first.target,
        )
        ids = {**result.provider_ids, "digest": str(members[0][0].id)}
        now = self.clock()
        await asyncio.gather(
            *(
                self._record(group[0], Attempt(group[0].id, now, provider_ids=ids))
                for group in members
            )
        )
        for group in members:
            for member in group:
                self.metrics.notifications.labels(member.target, member.event).inc()

    async def _send_digest(
        self, name: str, target: DigestSender, digest: Digest, channel: str
    ) -> DeliveryResult:
        limit = self._limits.setdefault(name, asyncio.Semaphore(self.policy.concurrency_per_target))
        await self._gate(name, target).wait(channel)
        async with limit:
            if self._pause_left(name) > 0:
                raise _Paused
            try:
                result: DeliveryResult = await target.send_digest(digest)
            except RetryableError as exc:
                scoped = isinstance(exc, RateLimited) and exc.scope is not None
                if exc.retry_after is not None and exc.retry_after > 0 and not scoped:
                    self._pause(name, exc.retry_after, exc.reason)
                raise
            return result

    def _observe(self, target: str, started: float) -> None:
        self.metrics.notification_duration.labels(target).observe(time.perf_counter() - started)

    async def _send(
        self, name: str, target: Sender, n: Notification, channel: str
    ) -> DeliveryResult:
        limit = self._limits.setdefault(name, asyncio.Semaphore(self.policy.concurrency_per_target))
        await self._gate(name, target).wait(channel)
        cap = self.policy.quick_max_wait_s
        paused = functools.partial(self._pause_left, name)

        def quick(exc: BaseException) -> bool:
            return _quick(exc, cap) and paused() <= cap

        async with limit:
            if paused() > 0:
                raise _Paused
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.policy.quick_attempts),
                wait=_WaitRetryAfter(cap, paused),
                retry=retry_if_exception(quick),
                reraise=True,
            ):
                with attempt:
                    try:
                        return await target.send(n)
                    except RetryableError as exc:
                        scoped = isinstance(exc, RateLimited) and exc.scope is not None
                        if exc.retry_after is not None and exc.retry_after > 0 and not scoped:
                            # A window of the whole target; a scoped one (a Slack method, a
                            # channel) is kept by the target and holds only that scope.
                            self._pause(name, exc.retry_after, exc.reason)
                        if exc.state is not None:
                            # Progress made before the failure (a channel created, a ticket
                            # opened): the quick retry must see it, or it does it again.
                            n = dataclasses.replace(n, state=exc.state)
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _wait(self, leader: _Row, exc: RateLimited) -> None:
        """A rate limit: the row waits for the window's end (or ``rate_limit_wait_s`` without
        a hint); not an attempt, so it never comes nearer to the dead letter."""
        if exc.retry_after is not None:
            wait = exc.retry_after
        else:
            wait = max(self.policy.rate_limit_wait_s, backoff_s(leader.attempts + 1, self.policy))
        if exc.scope is None:
            wait = max(wait, self._pause_left(leader.target))
        retry_at = self.clock() + int(wait * NS)
        log.info(
            "notification %d to %s rate-limited%s; waiting %.1fs (not counted as an attempt)",
            leader.id,
            leader.target,
            f" ({exc.scope})" if exc.scope else "",
            wait,
        )
        await self._failed(leader, exc, exc.reason, retry_at, counts=False)

    async def _failed(
        self,
        leader: _Row,
        exc: DeliveryError,
        error: str,
        retry_at: int | None,
        *,
        counts: bool = True,
    ) -> None:
        """A failed send counted and recorded with the state the target left (``counts``
        False: a rate limit's wait, not an attempt)."""
        self.metrics.notifications_failed.labels(leader.target, exc.reason).inc()
        await self._record(
            leader,
            Attempt(
                leader.id,
                self.clock(),
                error=error,
                retry_at=retry_at,
                state=dict(exc.state) if exc.state is not None else None,
                counts=counts,
                message=isinstance(leader, MessageRow),
            ),
        )

    async def _fail(self, leader: _Row, exc: DeliveryError) -> None:
        if isinstance(exc, RateLimited):
            await self._wait(leader, exc)
            return
        attempts = leader.attempts + 1
        retry_at: int | None = None
        if isinstance(exc, RetryableError) and attempts < self.policy.max_attempts:
            wait = backoff_s(attempts, self.policy)
            if exc.retry_after is not None:
                wait = max(wait, exc.retry_after)
            wait = max(wait, self._pause_left(leader.target))
            retry_at = self.clock() + int(wait * NS)
        error = (
            exc.reason
            if retry_at is not None or not exc.retryable
            else f"retries_exhausted: {exc.reason}"
        )
        level = logging.WARNING if retry_at is not None else logging.ERROR
        log.log(
            level,
            "notification %d to %s failed (%s)%s",
            leader.id,
            leader.target,
            exc.reason,
            f", retrying in {(retry_at - self.clock()) / NS:.1f}s"
            if retry_at
            else ", dead-lettered",
        )
        await self._failed(leader, exc, error, retry_at)

    # -- claims -----------------------------------------------------------------------------

    async def _renew(self) -> None:
        """Every third of the lease, extend this replica's claims (its sends go on: one may
        wait for its target's turn, its pace or its quick retries longer than a lease)."""
        mono = time.monotonic()
        if mono < self._renew_at:
            return
        self._renew_at = mono + self.policy.lease_s / 3
        until = self.clock() + int(self.policy.lease_s * NS)
        if self._message_claims:
            try:
                await self.store.messages.renew(
                    self.replica, sorted(self._message_claims), until=until
                )
            except Exception as exc:
                log.warning("outbox: cannot renew the channel messages' claims: %s", exc)
        if not self._claimed:
            return
        try:
            await self.store.outbox.renew(self.replica, sorted(self._claimed), until=until)
        except Exception as exc:
            log.warning(
                "outbox: cannot renew %d claim(s): %s; another replica may send them again "
                "(same idempotency keys) when their lease runs out",
                len(self._claimed),
                exc,
            )

    async def _release(self, leader_ids: list[int]) -> None:
        """End this replica's claims on ``leader_ids`` (nothing was sent, or sending stops)."""
        ids = sorted(i for i in leader_ids if i in self._claimed)
        if not ids:
            return
        self._claimed.difference_update(ids)
        try:
            await self.store.outbox.release(self.replica, ids)
        except Exception as exc:
            log.warning(
                "outbox: cannot release %d claim(s): %s; they are free when their lease runs out",
                len(ids),
                exc,
            )

    async def _release_messages(self, ids: list[int]) -> None:
        """End this replica's claims on channel messages ``ids``."""
        mine = sorted(i for i in ids if i in self._message_claims)
        if not mine:
            return
        self._message_claims.difference_update(mine)
        try:
            await self.store.messages.release(self.replica, mine)
        except Exception as exc:
            log.warning("outbox: cannot release %d message claim(s): %s", len(mine), exc)

    def _unclaim(self, attempt: Attempt) -> None:
        """The outcome written ended the claim of its row."""
        claims = self._message_claims if attempt.message else self._claimed
        claims.discard(attempt.leader_id)

    # -- recording outcomes ---------------------------------------------------------------

    async def _record(self, leader: _Row, attempt: Attempt) -> None:
        """Record an outcome (with the pause its target asked this replica for, if any); when
        the store refuses it (disk full, read-only), keep it in memory and hold the row: it is
        not sent again before the outcome is written."""
        until = self._paused.get(leader.target)
        if leader.target in self._pause_reasons and until is not None and until > attempt.now:
            attempt = dataclasses.replace(
                attempt, pause_until=until, pause_reason=self._pause_reasons[leader.target]
            )
        try:
            await self._write(attempt)
            self._unclaim(attempt)  # the outcome ended the claim
        except Exception as exc:
            key = _key(leader)
            held = _Unrecorded(attempt, 1, 0.0)
            self._unrecorded[key] = held
            self._refused(leader.target, held, exc)

    async def _write(self, attempt: Attempt) -> None:
        # Outcomes of concurrent sends share one write (batched): one call, one commit.
        await self.store.outbox.record(attempt)

    def _refused(self, target: str, held: _Unrecorded, exc: BaseException) -> None:
        wait = min(
            self.policy.record_retry_cap_s, self.policy.record_retry_s * 2 ** (held.tries - 1)
        )
        held.next_try = time.monotonic() + wait
        outcome = "delivered" if held.attempt.error is None else f"failed: {held.attempt.error}"
        if held.tries == 1:  # later refusals say the same: DEBUG, not a line every few seconds
            level = logging.WARNING if isinstance(exc, StoreUnavailable) else logging.ERROR
        else:
            level = logging.DEBUG
        log.log(
            level,
            "notification %d to %s (%s) cannot be recorded: %s; kept in memory and not sent "
            "again until recorded, next try in %.1fs",
            held.attempt.leader_id,
            target,
            outcome,
            exc,
            wait,
            exc_info=None if isinstance(exc, StoreUnavailable) else exc,
        )

    async def _record_held(self, *, every: bool = False) -> None:
        """Write again the outcomes the store refused whose time has come (``every``: all)."""
        mono = time.monotonic()
        ready = [(k, h) for k, h in self._unrecorded.items() if every or h.next_try <= mono]
        if not ready:
            return
        results = await asyncio.gather(
            *(self._write(held.attempt) for _, held in ready), return_exceptions=True
        )
        for (key, held), result in zip(ready, results, strict=True):
            if isinstance(result, BaseException):
                held.tries += 1
                self._refused(key[2], held, result)
            else:
                del self._unrecorded[key]
                self._unclaim(held.attempt)
                log.info(
                    "notification %d to %s: outcome recorded after %d refused tries",
                    held.attempt.leader_id,
                    key[2],
                    held.tries,
                )
