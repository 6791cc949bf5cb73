"""The reconciler: a loop that asks Alertmanager's API what the webhooks did not say
(docs/reconcile.md).

Every ``--reconcile-interval`` (jittered, longer while Alertmanager is unreachable) one tick:

1. ``AlertmanagerClient.fetch``: a trusted peer's alerts, silences and receivers (any reachable
   peer of the cluster, up for at least ``--alertmanager-grace``), or why there is none;
2. ``store/reconcile.candidates`` (a read): the open incidents of that Alertmanager's receivers
   and the truncated groups among them;
3. ``store/reconcile.apply_view`` (the writer, batches of incidents): ``core/reconcile`` decides
   on what the store holds at that moment, ``changes.write_change`` writes;
4. a truncated group's alerts the incident does not hold are replayed through the webhook's own
   path (the rules, ``store/ingest``), as the webhook that left them out would have carried them.

It never blocks ingest: it only ever waits for Alertmanager outside the writer, and its writes
queue with the webhooks' in the one writer. A failure is logged and counted and the next tick
tries again: the service does not stop for it. With replicas, it runs on the one that holds the
``reconciler`` lease (``BackgroundLoop``), of one ``--reconcile-interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge.core import jsontext
from bridge.core.alertmanager import WebhookPayload
from bridge.core.reconcile import AmAlert, AmView, group_missing
from bridge.core.timeutil import GO_ZERO, format_ns
from bridge.service import AppState, BackgroundLoop
from bridge.store.interface import Applied, IngestItem, StoreUnavailable, TruncatedGroup

if TYPE_CHECKING:
    from bridge.alertmanager_api import AlertmanagerClient

log = logging.getLogger("bridge.reconcile")

# Incidents compared per write transaction: the writer is shared with the webhooks.
BATCH = 100
# While Alertmanager is unreachable the pause doubles, up to this many intervals.
MAX_BACKOFF = 10


@dataclass
class ReconcileHealth:
    """What the readiness answer and the logs say of the reconciliation."""

    peers: tuple[str, ...] = ()
    last_ok_at: int | None = None  # ns of the last tick with a trusted answer
    failing_since: int | None = None
    problem: str = ""  # why the last tick had no trusted answer
    failures: int = 0  # ticks in a row without one
    left_alone: int = 0  # open incidents of receivers the Alertmanager does not have
    totals: dict[str, int] = field(default_factory=dict)

    def detail(self) -> str:
        """One line for /-/ready (which stays 200: webhooks are still taken)."""
        if self.failing_since is not None:
            return (
                f"alertmanager: no trusted answer since {format_ns(self.failing_since)} "
                f"({self.problem}); nothing is reconciled meanwhile"
            )
        if self.last_ok_at is None:
            return "alertmanager: not asked yet"
        return f"alertmanager: reconciled at {format_ns(self.last_ok_at)}"


class Reconciler(BackgroundLoop):
    NAME = "reconciler"
    LEASE = "reconciler"

    @property
    def lease_tick_s(self) -> float:
        return self.interval_s

    def __init__(
        self,
        state: AppState,
        client: AlertmanagerClient,
        *,
        interval_s: float,
        grace_s: float,
        min_age_s: float = 0.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.state = state
        self.client = client
        self.interval_s = interval_s
        self.grace_s = grace_s
        self.min_age_ns = int(min_age_s * 1e9)
        # what the last trusted answer found gone: the next must agree before a resolve
        self.gone: frozenset[tuple[int, str]] = frozenset()
        self.jitter = jitter
        self.health = ReconcileHealth(peers=client.peers)
        self.wake = asyncio.Event()

    def detail(self) -> str:
        """This replica's line for /-/ready: the reconciliation's health where it runs; on a
        replica that does not lead it, who does (its health there is another process's)."""
        if self._task is not None and not self.leading:
            return "alertmanager: reconciled by the replica holding the reconciler's lease"
        return self.health.detail()

    def pause_s(self) -> float:
        """The interval ±10 %; doubled per failed tick in a row, up to ``MAX_BACKOFF`` times."""
        factor: float = min(2.0 ** min(self.health.failures, 8), MAX_BACKOFF)
        return self.interval_s * factor * (0.9 + 0.2 * self.jitter())

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except StoreUnavailable as exc:
                log.warning("reconcile: store unavailable: %s; trying again next tick", exc)
            except Exception:
                log.exception("reconcile: unexpected error; trying again next tick")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.pause_s())
            self.wake.clear()

    async def tick(self) -> Applied | None:
        """One comparison; None when no trusted answer came (nothing is decided then)."""
        state, metrics, health = self.state, self.state.metrics, self.health
        fetched = await self.client.fetch(self.grace_s)
        for err in fetched.errors:
            metrics.child(metrics.alertmanager_errors, err.reason).inc()
        view = fetched.view
        if view is None:
            problems = [str(e) for e in fetched.errors]
            if fetched.young:
                problems.append(
                    f"up for less than {self.grace_s:g}s (--alertmanager-grace): "
                    + ", ".join(fetched.young)
                )
            problem = "; ".join(problems) or "no peer answered"
            # Said once, and again when the kind of trouble changes (unreachable, young, ...):
            # a warning every poll during a peer's first minutes says nothing new.
            said = (health.failing_since is not None, _kinds(health.problem))
            health.problem = problem
            health.failures += 1
            if health.failing_since is None:
                health.failing_since = state.clock()
            metrics.alertmanager_up.set(0)
            self.gone = frozenset()  # two answers in a row must agree: this one breaks the row
            if said != (True, _kinds(problem)):
                log.warning("reconcile: no trusted answer from Alertmanager: %s", problem)
            else:
                log.debug("reconcile: still no trusted answer from Alertmanager: %s", problem)
            return None
        if health.failing_since is not None:
            log.info("reconcile: Alertmanager answers again (%s)", view.peer)
        health.failures, health.failing_since, health.problem = 0, None, ""
        metrics.alertmanager_up.set(1)
        for err in fetched.errors:  # another peer answered; still say which one failed
            log.info("reconcile: peer failed, another answered: %s", err)
        found = await state.store.reconcile.candidates(view.receivers)
        health.left_alone = found.unknown_receiver
        total = Applied()
        ids = list(found.incidents)
        for i in range(0, len(ids), BATCH):
            applied = await state.store.reconcile.apply_view(
                incident_ids=ids[i : i + BATCH],
                view=view,
                now=state.clock(),
                min_age_ns=self.min_age_ns,
                gone_before=self.gone,
            )
            total = _sum(total, applied)
        self.gone = total.gone
        attached = 0
        for group in found.truncated:
            attached += await self._attach(group, view)
        state.committed(notifications=total.notifications, mitigated=bool(total.mitigated))
        for kind, n in total.kinds.items():
            metrics.child(metrics.reconcile_changes, kind).inc(n)
            health.totals[kind] = health.totals.get(kind, 0) + n
        if attached:
            metrics.child(metrics.reconcile_changes, "attached").inc(attached)
            health.totals["attached"] = health.totals.get("attached", 0) + attached
        health.last_ok_at = state.clock()
        metrics.reconcile_last_success.set(health.last_ok_at / 1e9)
        if total.changed or attached:
            log.info(
                "reconcile: %d incident(s) changed (%s), %d alert(s) of truncated groups "
                "attached (from %s)",
                len(total.changed),
                ", ".join(f"{k} {n}" for k, n in sorted(total.kinds.items())) or "none",
                attached,
                view.peer,
            )
        return total

    async def _attach(self, group: TruncatedGroup, view: AmView) -> int:
        """Replay the group's alerts that the incident does not hold through the webhook's path;
        returns how many were missing."""
        missing = group_missing(view, group.receiver, group.group_labels, set(group.held))
        if not missing:
            return 0
        payload = synthetic_payload(group, missing)
        state = self.state
        now = state.clock()
        decisions = state.runtime.policy.evaluate(payload, now)
        body = jsontext.dumps(payload.model_dump(by_alias=True)).encode()
        item = IngestItem(
            payload=payload,
            decisions=decisions,
            sha256=hashlib.sha256(body).hexdigest(),
            body=None,
            now=now,
            via="api",
        )
        result = await state.store.ingest.apply_webhooks(item)
        state.committed(notifications=result.notifications)
        log.info(
            "reconcile: incident %d: %d alert(s) the webhook left out fetched from Alertmanager",
            group.incident_id,
            len(missing),
        )
        return len(missing)


def synthetic_payload(group: TruncatedGroup, alerts: Sequence[AmAlert]) -> WebhookPayload:
    """The webhook Alertmanager would have sent with these alerts had it not cut the group:
    the same group key, receiver and group labels, every alert firing."""
    labels = [dict(a.labels) for a in alerts]
    common = dict(set.intersection(*(set(x.items()) for x in labels))) if labels else {}
    raw: dict[str, Any] = {
        "version": "4",
        "groupKey": group.group_key,
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": group.receiver,
        "groupLabels": dict(group.group_labels),
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": [
            {
                "status": "firing",
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "startsAt": format_ns(a.starts_at),
                "endsAt": GO_ZERO,
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint,
            }
            for a in alerts
        ],
    }
    return WebhookPayload.model_validate(raw)


def _sum(a: Applied, b: Applied) -> Applied:
    kinds = dict(a.kinds)
    for k, n in b.kinds.items():
        kinds[k] = kinds.get(k, 0) + n
    return Applied(
        a.changed + b.changed,
        a.mitigated + b.mitigated,
        a.notifications + b.notifications,
        kinds,
        a.gone | b.gone,
    )


def _kinds(problem: str) -> frozenset[str]:
    """What kind of trouble a tick's problem names (for saying it once): the peers' failure
    reasons as the messages show them, and a young peer."""
    words = ("cannot connect", "no answer within", "HTTP ", "not JSON", "truncated", "larger")
    found = {w for w in words if w in problem}
    if "--alertmanager-grace" in problem:
        found.add("young")
    return frozenset(found)
