"""The service's own metrics. The registry is injected; nothing lives at module level."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bridge.core.incidents import ACTIVE_STATUSES
from bridge.core.policy import SEVERITIES

PREFIX = "incident_bridge_"


@dataclass
class Metrics:
    registry: CollectorRegistry
    webhook_requests: Counter
    webhook_duration: Histogram
    alerts_received: Counter
    incidents_opened: Counter
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
    # label values -> child metric: ``labels()`` costs more than the increment itself
    _children: dict[tuple[str, ...], Any] = field(default_factory=dict)

    def child(self, metric: Counter | Histogram | Gauge, *values: str) -> Any:
        key = (metric._name, *values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        registry = registry if registry is not None else CollectorRegistry()
        return cls(
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
            incidents_opened=Counter(
                PREFIX + "incidents_opened",
                "Incidents opened, by severity.",
                ["severity"],
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
            rule_render_errors=Counter(
                PREFIX + "rule_render_errors",
                "Webhooks whose route could not render a template for their labels (the incident "
                "was kept with a fallback), by route.",
                ["route"],
                registry=registry,
            ),
        )

    def set_open(self, counts: dict[tuple[str, str], int]) -> None:
        for severity in SEVERITIES:
            for status in ACTIVE_STATUSES:
                self.incidents_open.labels(severity, status).set(counts.get((severity, status), 0))
