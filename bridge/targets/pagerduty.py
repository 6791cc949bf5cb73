"""``pagerduty``: Events API v2. ``trigger`` on opened/reopened/severity_changed and on
escalated (not acknowledged in time: the stakeholders are paged, whatever the severity),
``acknowledge`` on acknowledged, ``resolve`` on mitigated/resolved/closed; other events
(status updates, reminders, timeline notes, postmortems) send nothing: the Events API has no
notes. ``dedup_key`` is the incident key (sha256 of it when longer than 255, as Alertmanager
does), so a resend after a crash is absorbed by PagerDuty."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from bridge.core.secrets import Secret
from bridge.delivery.markup import truncate
from bridge.delivery.protocol import DeliveryResult, Notification
from bridge.delivery.snapshot import alert_count
from bridge.targets import _http
from bridge.targets.base import Target, TargetConfig

SUMMARY_MAX = 1024
DEDUP_MAX = 255
MAX_ALERTS = 50
ACTIONS: dict[str, str] = {
    "opened": "trigger",
    "reopened": "trigger",
    "severity_changed": "trigger",
    "escalated": "trigger",
    "acknowledged": "acknowledge",
    "mitigated": "resolve",
    "resolved": "resolve",
    "closed": "resolve",
}
SEVERITY = {"sev1": "critical", "sev2": "error", "sev3": "warning", "sev4": "info"}


class PagerDutyConfig(TargetConfig):
    routing_key: Secret
    api_url: str = "https://events.pagerduty.com/v2/enqueue"
    source: str = "incident-bridge"
    client: str = "incident-bridge"
    severity_map: dict[str, str] = Field(default_factory=lambda: dict(SEVERITY))


def dedup_key(incident_key: str) -> str:
    if len(incident_key) <= DEDUP_MAX:
        return incident_key
    return hashlib.sha256(incident_key.encode()).hexdigest()


def actions_for(kinds: tuple[str, ...]) -> list[str]:
    """The event actions for coalesced kinds, in order, repeated actions collapsed."""
    out: list[str] = []
    for kind in kinds:
        action = ACTIONS.get(kind)
        if action and (not out or out[-1] != action):
            out.append(action)
    return out


class PagerDutyTarget(Target):
    type_name = "pagerduty"
    Config = PagerDutyConfig
    config: PagerDutyConfig

    def event(self, n: Notification, action: str) -> dict[str, Any]:
        inc: Mapping[str, Any] = n.incident
        key = dedup_key(str(inc.get("key") or inc.get("id")))
        event: dict[str, Any] = {
            "routing_key": self.config.routing_key.reveal(),
            "event_action": action,
            "dedup_key": key,
        }
        if action != "trigger":
            return event
        rendered = self.render(n)
        summary = rendered.title or str(inc.get("title", "incident"))
        alerts = list(inc.get("alerts") or [])
        event["payload"] = {
            "summary": truncate(summary, SUMMARY_MAX),
            "source": self.config.source,
            "severity": self.config.severity_map.get(str(inc.get("severity")), "error"),
            "component": inc.get("service") or None,
            "group": inc.get("team") or None,
            "custom_details": {
                "incident_id": inc.get("id"),
                "status": inc.get("status"),
                "roles": inc.get("roles") or {},
                "message": rendered.body,
                "alerts": [
                    {
                        "labels": a.get("labels"),
                        "annotations": a.get("annotations"),
                        "status": a.get("status"),
                    }
                    for a in alerts[:MAX_ALERTS]
                ],
                "truncated_alerts": max(0, alert_count(inc) - MAX_ALERTS),
            },
        }
        event["payload"] = {k: v for k, v in event["payload"].items() if v is not None}
        event["client"] = self.config.client
        url = str(inc.get("url") or "")
        if url.startswith(("http://", "https://")):
            event["client_url"] = url
            event["links"] = [{"href": url, "text": "Incident"}]
        return event

    def events(self, n: Notification) -> list[dict[str, Any]]:
        return [self.event(n, action) for action in actions_for(n.kinds)]

    async def send(self, notification: Notification) -> DeliveryResult:
        n = notification
        events = self.events(n)
        if not events:
            return DeliveryResult(state=dict(n.state), skipped=True)
        for event in events:
            resp = await _http.post(
                self.deps, self.config.api_url, json=event, timeout_s=self.config.timeout_s
            )
            _http.check(resp, self.deps, vendor="pagerduty")
        key = str(events[-1]["dedup_key"])
        return DeliveryResult(state={**n.state, "dedup_key": key}, provider_ids={"dedup_key": key})
