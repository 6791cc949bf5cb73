"""The service's own metrics. The registry is injected; nothing lives at module level."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bridge.incidents import OPEN_STATUSES
from bridge.policy import SEVERITIES

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
                "Incidents not yet resolved, by severity and status (read from the store).",
                ["severity", "status"],
                registry=registry,
            ),
            webhooks_duplicate=Counter(
                PREFIX + "webhooks_unchanged",
                "Accepted webhooks that changed nothing (duplicates from HA peers, repeats).",
                registry=registry,
            ),
        )

    def set_open(self, counts: dict[tuple[str, str], int]) -> None:
        for severity in SEVERITIES:
            for status in OPEN_STATUSES:
                self.incidents_open.labels(severity, status).set(counts.get((severity, status), 0))
