"""The service's own metrics. The registry is injected; nothing lives at module level."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

import bridge
from bridge.core import mttx
from bridge.core.events import EVENTS
from bridge.core.incidents import ACTIVE_STATUSES
from bridge.core.policy import SEVERITIES

PREFIX = "incident_bridge_"
# What the webhook receiver answers (http/receiver.py): 200 accepted, 400 unreadable or invalid,
# 401 credentials, 413 too large, 500 a bug, 503 busy or the store unavailable.
WEBHOOK_CODES = ("200", "400", "401", "413", "500", "503")
ALERT_STATUSES = ("firing", "resolved")
# The background loops that run on one replica at a time (service.BackgroundLoop.LEASE).
LEADER_LOOPS = ("scheduler", "indexer", "reconciler")


class KnownLabels(Collector):
    """Creates, at each scrape and before the counters are collected, the children of the label
    values known in advance (the targets of the active rules, after a reload too) at 0. A
    counter series that appears at its first event loses that event to ``increase()`` and
    ``rate()``: Prometheus has no earlier sample to count from. Yields no metric itself."""

    def __init__(self, metrics: Callable[[], Metrics | None]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        found = self._metrics()
        if found is not None:
            found.create_known()
        return iter(())


def _drill_families(
    histograms: Iterable[tuple[str, str, int, int, float]],
    counters: Iterable[tuple[str, str, int]],
) -> list[Metric]:
    """The drills' MTTx (store/drills.py), by severity, as families of their own
    (``incident_bridge_drill_*``): a drill never counts in the real incidents' families, the
    dashboard or the recording rules, and a game day's times can still be graphed."""
    nb = len(mttx.BUCKETS) + 1
    hist: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    for metric, severity, bucket, n, total in histograms:
        key = (metric, mttx.severity_label(severity, SEVERITIES))
        counts, sums = hist.setdefault(key, ([0] * nb, [0.0]))
        counts[min(max(bucket, 0), nb - 1)] += n
        sums[0] += total
    counted: dict[tuple[str, str], int] = {}
    for metric, severity, n in counters:
        key = (metric, mttx.severity_label(severity, SEVERITIES))
        counted[key] = counted.get(key, 0) + n
    bounds = [repr(float(b)) for b in mttx.BUCKETS] + ["+Inf"]
    out: list[Metric] = []
    for metric, (name, _, _, help_) in mttx.HISTOGRAMS.items():
        family = HistogramMetricFamily(
            PREFIX + "drill_" + name, "Drills only (docs/drills.md). " + help_, labels=["severity"]
        )
        for (m, severity), (counts, sums) in sorted(hist.items()):
            if m == metric:
                running, cumulative = 0, []
                for bound, n in zip(bounds, counts, strict=True):
                    running += n
                    cumulative.append((bound, float(running)))
                family.add_metric([severity], cumulative, sums[0])
        out.append(family)
    for metric, (name, help_) in mttx.COUNTERS.items():
        counter = CounterMetricFamily(
            PREFIX + "drill_" + name, "Drills only (docs/drills.md). " + help_, labels=["severity"]
        )
        for (m, severity), n in sorted(counted.items()):
            if m == metric:
                counter.add_metric([severity], float(n))
        out.append(counter)
    return out


class IncidentMetrics(Collector):
    """The incident metrics computed from the store's aggregates (``store/metrics.py``): the
    MTTx histograms, incidents opened and reopened, follow-up items open, postmortems pending.

    ``update`` is given one read of the aggregates (on the store's read pool, before the
    scrape renders, teams already bounded to the active rules') and the rules' postmortem
    policy; ``collect`` only
    reshapes them, so a restart neither resets nor double-counts anything."""

    def __init__(self) -> None:
        self._families: list[Metric] = []
        self.update([], [], [], 0, lambda route, severity: False)  # HELP and TYPE at least

    def update(
        self,
        histograms: Iterable[tuple[str, str, str, int, int, float]],
        counters: Iterable[tuple[str, str, str, int]],
        postmortems: Iterable[tuple[str, str, int]],
        followup_items_open: int,
        required: Callable[[str, str], bool],
        teams: Iterable[str] = (),
        drill_histograms: Iterable[tuple[str, str, int, int, float]] = (),
        drill_counters: Iterable[tuple[str, str, int]] = (),
    ) -> None:
        def labels(severity: str, team: str) -> tuple[str, str]:
            # teams arrive bounded by the store's read (to ``teams``, ``none`` and ``other``)
            return mttx.severity_label(severity, SEVERITIES), team

        nb = len(mttx.BUCKETS) + 1
        hist: dict[tuple[str, str, str], tuple[list[int], list[float]]] = {}
        counted: dict[tuple[str, str, str], int] = {}
        # Every (severity, team) the rules allow is exported from the start, at 0, so that
        # increase() over a range sees a series's first incident (a series born at 1 loses it).
        for sev in SEVERITIES:
            for label in (*sorted(set(teams)), mttx.NO_TEAM, mttx.OTHER):
                for metric in mttx.HISTOGRAMS:
                    hist[(metric, sev, label)] = ([0] * nb, [0.0])
                for metric in mttx.COUNTERS:
                    counted[(metric, sev, label)] = 0
        for metric, severity, team, bucket, n, total in histograms:
            counts, sums = hist.setdefault((metric, *labels(severity, team)), ([0] * nb, [0.0]))
            counts[min(max(bucket, 0), nb - 1)] += n
            sums[0] += total
        for metric, severity, team, n in counters:
            key = (metric, *labels(severity, team))
            counted[key] = counted.get(key, 0) + n

        families: list[Metric] = []
        bounds = [repr(float(b)) for b in mttx.BUCKETS] + ["+Inf"]
        for metric, (name, _, _, help_) in mttx.HISTOGRAMS.items():
            family = HistogramMetricFamily(PREFIX + name, help_, labels=["severity", "team"])
            for (m, severity, team), (counts, sums) in sorted(hist.items()):
                if m != metric:
                    continue
                cumulative, running = [], 0
                for bound, n in zip(bounds, counts, strict=True):
                    running += n
                    cumulative.append((bound, float(running)))
                family.add_metric([severity, team], cumulative, sums[0])
            families.append(family)
        for metric, (name, help_) in mttx.COUNTERS.items():
            counter = CounterMetricFamily(PREFIX + name, help_, labels=["severity", "team"])
            for (m, severity, team), n in sorted(counted.items()):
                if m == metric:
                    counter.add_metric([severity, team], float(n))
            families.append(counter)
        families += _drill_families(drill_histograms, drill_counters)
        families.append(
            GaugeMetricFamily(
                PREFIX + "followups_open",
                "Follow-up checklist items in state open, over every incident (read from the "
                "store).",
                value=float(followup_items_open),
            )
        )
        pending = sum(n for route, severity, n in postmortems if required(route, severity))
        families.append(
            GaugeMetricFamily(
                PREFIX + "postmortems_pending",
                "Incidents resolved or closed without a published postmortem whose route "
                "requires one at their severity (read from the store, the active rules asked).",
                value=float(pending),
            )
        )
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


class HeartbeatMetrics(Collector):
    """The dead man's switch's gauges, per heartbeat of the active rules (docs/heartbeats.md):
    set from the store at each scrape (``http/ops``), so a heartbeat gone from the rules has no
    series left and the values are right on any replica."""

    def __init__(self) -> None:
        self._rows: list[tuple[str, float | None, bool]] = []

    def update(self, rows: Iterable[tuple[str, float | None, bool]]) -> None:
        """(name, last beat in seconds since the epoch or None, late) of each heartbeat."""
        self._rows = sorted(rows)

    def collect(self) -> Iterator[Metric]:
        seen = GaugeMetricFamily(
            PREFIX + "heartbeat_last_seen_timestamp_seconds",
            "When the heartbeat last beat (an alert matching it, or POST "
            "/api/v1/heartbeats/{name}), seconds since the epoch; absent until its first beat.",
            labels=["heartbeat"],
        )
        state = GaugeMetricFamily(
            PREFIX + "heartbeat_state",
            "1 while the heartbeat is late (no beat for more than its interval plus grace), "
            "else 0.",
            labels=["heartbeat"],
        )
        for name, last, late in self._rows:
            if last is not None:
                seen.add_metric([name], last)
            state.add_metric([name], 1.0 if late else 0.0)
        yield seen
        yield state


@dataclass
class Metrics:
    registry: CollectorRegistry
    webhook_requests: Counter
    webhook_duration: Histogram
    alerts_received: Counter
    incidents_open: Gauge
    webhooks_duplicate: Counter
    notifications: Counter
    notifications_failed: Counter
    notification_duration: Histogram
    outbox_pending: Gauge
    outbox_oldest_pending_age: Gauge
    notifications_dead: Gauge
    rules_reload_ok: Gauge
    rules_reload_time: Gauge
    rules_hash: Gauge
    rule_render_errors: Counter
    # reconciliation with Alertmanager's API (docs/reconcile.md)
    alertmanager_up: Gauge
    alertmanager_errors: Counter
    reconcile_changes: Counter
    reconcile_last_success: Gauge
    # replicas on one database (docs/postgresql.md#replicas)
    leader: Gauge
    replica_info: Gauge
    replicas: Gauge
    rules_hash_mismatch: Gauge
    # computed from the store at each scrape (opened/reopened, MTTx, follow-ups, postmortems)
    incidents: IncidentMetrics
    build_info: Gauge
    # label values -> child metric: ``labels()`` costs more than the increment itself
    _children: dict[tuple[str, ...], Any] = field(default_factory=dict)
    # the notification targets known now (the rules' and the built-in senders), set by app.py
    targets: Callable[[], Iterable[str]] = field(default=lambda: ())
    # the dead man's switch, set at each scrape (registered by create)
    heartbeats: HeartbeatMetrics = field(default_factory=HeartbeatMetrics)

    def follow_targets(self, targets: Callable[[], Iterable[str]]) -> None:
        """Where the target names come from (asked at each scrape, so a reload's new targets
        are exported at 0 before their first notification); creates them at 0 now."""
        self.targets = targets
        self.create_known()

    def create_known(self) -> None:
        """Every (target, event) of the delivered counter and every target's latency
        histogram at 0. Failures are not: their reasons (HTTP statuses, a vendor's error
        codes) are not known in advance; the dashboard counts a failure series's first value
        instead (docs/metrics.md)."""
        for target in self.targets():
            if (self.notification_duration._name, target) in self._children:
                continue  # this target's series exist already
            self.child(self.notification_duration, target)
            for event in EVENTS:
                self.notifications.labels(target, event)

    def child(self, metric: Counter | Histogram | Gauge, *values: str) -> Any:
        key = (metric._name, *values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        registry = registry if registry is not None else CollectorRegistry()
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no _created series
        created: list[Metrics] = []
        # registered before the counters: the registry collects in the order of registration
        registry.register(KnownLabels(lambda: created[0] if created else None))
        incidents = IncidentMetrics()
        registry.register(incidents)
        build_info = Gauge(
            PREFIX + "build_info",
            "Always 1: the running version of incident-bridge and of Python.",
            ["version", "python"],
            registry=registry,
        )
        build_info.labels(bridge.__version__, platform.python_version()).set(1)
        metrics = cls(
            registry=registry,
            webhook_requests=Counter(
                PREFIX + "webhook_requests",
                "Alertmanager webhook requests by HTTP status code.",
                ["code"],
                registry=registry,
            ),
            webhook_duration=Histogram(
                PREFIX + "webhook_duration_seconds",
                "Time from request to answer for accepted webhooks (includes the commit).",
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                registry=registry,
            ),
            alerts_received=Counter(
                PREFIX + "alerts_received",
                "Alerts in accepted webhooks, by alert status.",
                ["status"],
                registry=registry,
            ),
            incidents_open=Gauge(
                PREFIX + "incidents_open",
                "Incidents being worked (triggered or acknowledged), by severity and status "
                "(read from the store, right after a restart).",
                ["severity", "status"],
                registry=registry,
            ),
            webhooks_duplicate=Counter(
                PREFIX + "webhooks_unchanged",
                "Accepted webhooks that changed nothing (duplicates from HA peers, repeats).",
                registry=registry,
            ),
            notifications=Counter(
                PREFIX + "notifications",
                "Outbox rows delivered, by target and event.",
                ["target", "event"],
                registry=registry,
            ),
            notifications_failed=Counter(
                PREFIX + "notifications_failed",
                "Failed delivery attempts, by target and reason.",
                ["target", "reason"],
                registry=registry,
            ),
            notification_duration=Histogram(
                PREFIX + "notification_duration_seconds",
                "Time a target took to send one message (quick retries included).",
                ["target"],
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                registry=registry,
            ),
            outbox_pending=Gauge(
                PREFIX + "outbox_pending",
                "Notifications waiting to be delivered (read from the store).",
                registry=registry,
            ),
            outbox_oldest_pending_age=Gauge(
                PREFIX + "outbox_oldest_pending_age_seconds",
                "Age of the oldest notification still waiting (0 when none).",
                registry=registry,
            ),
            notifications_dead=Gauge(
                PREFIX + "notifications_dead",
                "Dead-lettered notifications (read from the store).",
                registry=registry,
            ),
            rules_reload_ok=Gauge(
                PREFIX + "rules_last_reload_successful",
                "1 if the last rules (re)load succeeded, else 0.",
                registry=registry,
            ),
            rules_reload_time=Gauge(
                PREFIX + "rules_last_reload_success_timestamp_seconds",
                "When the rules were last loaded successfully.",
                registry=registry,
            ),
            rules_hash=Gauge(
                PREFIX + "rules_config_hash",
                "Hash of the active rules (first 48 bits of their SHA-256), to tell versions apart.",
                registry=registry,
            ),
            incidents=incidents,
            build_info=build_info,
            alertmanager_up=Gauge(
                PREFIX + "alertmanager_up",
                "1 when the last reconciliation got a trusted answer from Alertmanager's API, "
                "0 when no peer gave one (unreachable, failing, or up for less than the grace "
                "period); stays 0 without --alertmanager-url.",
                registry=registry,
            ),
            alertmanager_errors=Counter(
                PREFIX + "alertmanager_api_errors",
                "Failed requests to Alertmanager's API, by reason (unreachable, timeout, "
                "http_error, bad_answer, too_large).",
                ["reason"],
                registry=registry,
            ),
            reconcile_changes=Counter(
                PREFIX + "reconcile_changes",
                "What reconciliation with Alertmanager's API recorded, by timeline kind "
                "(alert_resolved, alert_silenced, alert_inhibited, alert_unsuppressed, "
                "alert_fired, status_changed, reopened) and attached (alerts of truncated "
                "groups fetched).",
                ["kind"],
                registry=registry,
            ),
            reconcile_last_success=Gauge(
                PREFIX + "reconcile_last_success_timestamp_seconds",
                "When reconciliation last compared the open incidents with a trusted answer.",
                registry=registry,
            ),
            leader=Gauge(
                PREFIX + "leader",
                "1 while this replica holds the lease of a background loop that runs on one "
                "replica at a time (scheduler, indexer, reconciler), else 0.",
                ["loop"],
                registry=registry,
            ),
            replica_info=Gauge(
                PREFIX + "replica_info",
                "Always 1: this process's replica id (--replica-id).",
                ["replica"],
                registry=registry,
            ),
            replicas=Gauge(
                PREFIX + "replicas",
                "Replicas on this database seen live at this replica's last heartbeat "
                "(itself included).",
                registry=registry,
            ),
            rules_hash_mismatch=Gauge(
                PREFIX + "rules_hash_mismatch",
                "1 when another live replica on this database runs other rules (a rules "
                "change half rolled out), else 0.",
                registry=registry,
            ),
            rule_render_errors=Counter(
                PREFIX + "rule_render_errors",
                "Webhooks whose route could not render a template for their labels (the incident "
                "was kept with a fallback), by route.",
                ["route"],
                registry=registry,
            ),
        )
        for code in WEBHOOK_CODES:
            metrics.child(metrics.webhook_requests, code)
        for status in ALERT_STATUSES:
            metrics.child(metrics.alerts_received, status)
        for loop in LEADER_LOOPS:
            metrics.child(metrics.leader, loop).set(0)
        registry.register(metrics.heartbeats)
        created.append(metrics)
        return metrics

    def set_open(self, counts: dict[tuple[str, str], int]) -> None:
        for severity in SEVERITIES:
            for status in ACTIVE_STATUSES:
                self.incidents_open.labels(severity, status).set(counts.get((severity, status), 0))
