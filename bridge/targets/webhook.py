"""``webhook``: a signed JSON POST to any URL.

Headers: ``Idempotency-Key`` (stable across retries of the same outbox row), and when a
``secret`` is set ``X-Incident-Bridge-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is
HMAC-SHA256(secret, "<t>." + body), as Stripe does. Receivers check it with
``verify_signature`` and reject stale timestamps to stop replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from pydantic import Field

from bridge.core.events import event_kind
from bridge.core.secrets import Secret
from bridge.delivery.protocol import DeliveryResult, Notification
from bridge.delivery.snapshot import alert_count
from bridge.targets import _http
from bridge.targets.base import Target, TargetConfig

SIGNATURE_HEADER = "X-Incident-Bridge-Signature"
PAYLOAD_VERSION = "1"


class WebhookConfig(TargetConfig):
    url: Secret
    secret: Secret | None = None
    authorization: Secret | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    signature_header: str = SIGNATURE_HEADER
    max_alerts: int = Field(default=100, ge=0)


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: str | bytes, header: str, body: bytes, now: float, tolerance_s: float = 300.0
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and is at most ``tolerance_s`` old."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - ts) > tolerance_s:
        return False
    expected = sign(secret, ts, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class WebhookTarget(Target):
    type_name = "webhook"
    Config = WebhookConfig
    config: WebhookConfig

    def payload(self, n: Notification) -> dict[str, Any]:
        incident = dict(n.incident)
        alerts = list(incident.get("alerts") or [])
        incident["alerts"] = alerts[: self.config.max_alerts]
        return {
            "version": PAYLOAD_VERSION,
            "id": n.id,
            "idempotency_key": n.idempotency_key,
            "target": n.target,
            "tier": n.tier,
            "event": n.event,
            "sequence": n.sequence,
            # each with the notification event it stands for, as the templates see it
            "events": [
                {**e, "event": event_kind(str(e.get("kind", "")), e.get("data"))} for e in n.events
            ],
            # counted from all of the incident's alerts, not only those the snapshot carries
            "truncated_alerts": max(0, alert_count(incident) - self.config.max_alerts),
            "incident": incident,
            "text": self.render(n).body,
            # a channel message (a hand-off, a drill's announcement): its kind and data, and an
            # empty incident
            **({"message": dict(n.message)} if n.message is not None else {}),
        }

    async def send(self, notification: Notification) -> DeliveryResult:
        n = notification
        body = json.dumps(self.payload(n), ensure_ascii=False, separators=(",", ":")).encode()
        headers = dict(self.config.headers)
        if self.config.authorization:
            headers["Authorization"] = self.config.authorization.reveal()
        headers.update(
            {
                "Content-Type": "application/json; charset=utf-8",
                "Idempotency-Key": n.idempotency_key,
                "X-Incident-Bridge-Event": n.event,
            }
        )
        if self.config.secret:
            ts = int(self.deps.clock())
            headers[self.config.signature_header] = sign(self.config.secret.reveal(), ts, body)
        resp = await _http.post(
            self.deps,
            self.config.url.reveal(),
            data=body,
            headers=headers,
            timeout_s=self.config.timeout_s,
        )
        _http.check(resp, self.deps)
        return DeliveryResult(state=dict(n.state))
