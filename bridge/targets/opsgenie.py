"""``opsgenie``: Alert API v2. Create on opened/reopened (``alias`` = the incident key, so
Opsgenie deduplicates a resend), acknowledge on acknowledged, close on mitigated/resolved/
closed; on escalated (not acknowledged in time) create -- the alert is raised if the
stakeholders had not heard of the incident, deduplicated if they had -- and a note saying so;
nothing on reminder (a nudge to the liaison in chat); a note for everything else (a status
update among them). Requests are asynchronous: 202 + ``requestId``."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from pydantic import Field

from bridge.core.secrets import Secret
from bridge.delivery.markup import truncate
from bridge.delivery.protocol import DeliveryResult, Notification
from bridge.targets import _http
from bridge.targets.base import Target, TargetConfig

MESSAGE_MAX = 130
ALIAS_MAX = 512
DESCRIPTION_MAX = 15_000
NOTE_MAX = 25_000
# The requests for each event, in order; an event not named here is a note.
ACTIONS: dict[str, tuple[str, ...]] = {
    "opened": ("create",),
    "reopened": ("create",),
    "escalated": ("create", "note"),
    "acknowledged": ("acknowledge",),
    "mitigated": ("close",),
    "resolved": ("close",),
    "closed": ("close",),
    "reminder": (),
}
PRIORITY = {"sev1": "P1", "sev2": "P2", "sev3": "P3", "sev4": "P4"}


class OpsgenieConfig(TargetConfig):
    api_key: Secret
    api_url: str = "https://api.opsgenie.com"
    priority_map: dict[str, str] = Field(default_factory=lambda: dict(PRIORITY))
    responders: list[dict[str, str]] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    source: str = "incident-bridge"


def alias_for(incident_key: str) -> str:
    if len(incident_key) <= ALIAS_MAX:
        return incident_key
    return hashlib.sha256(incident_key.encode()).hexdigest()


class OpsgenieTarget(Target):
    type_name = "opsgenie"
    Config = OpsgenieConfig
    config: OpsgenieConfig

    def requests(self, n: Notification) -> list[tuple[str, dict[str, Any]]]:
        """(path, body) of every request for ``n``, in order."""
        inc: Mapping[str, Any] = n.incident
        alias = alias_for(str(inc.get("key") or inc.get("id")))
        by_alias = f"/v2/alerts/{quote(alias, safe='')}"
        rendered = self.render(n)
        out: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        actions = [a for kind in n.kinds for a in ACTIONS.get(kind, ("note",))]
        for action in actions:
            if action in seen:
                continue
            seen.add(action)
            if action == "create":
                body: dict[str, Any] = {
                    "message": truncate(rendered.title or str(inc.get("title", "")), MESSAGE_MAX),
                    "alias": alias,
                    "description": truncate(rendered.body, DESCRIPTION_MAX),
                    "priority": self.config.priority_map.get(str(inc.get("severity")), "P3"),
                    "source": self.config.source,
                    "tags": [
                        *self.config.tags,
                        *(t for t in (inc.get("team"), inc.get("service")) if t),
                    ],
                    "details": {
                        "incident_id": str(inc.get("id")),
                        "url": str(inc.get("url") or ""),
                    },
                }
                if self.config.responders:
                    body["responders"] = self.config.responders
                out.append(("/v2/alerts", body))
            elif action == "note":
                note = truncate(rendered.body, NOTE_MAX)
                out.append(
                    (
                        f"{by_alias}/notes?identifierType=alias",
                        {"note": note, "source": self.config.source},
                    )
                )
            else:
                out.append(
                    (f"{by_alias}/{action}?identifierType=alias", {"source": self.config.source})
                )
        return out

    async def send(self, notification: Notification) -> DeliveryResult:
        n = notification
        requests = self.requests(n)
        if not requests:  # a reminder: nothing for Opsgenie
            return DeliveryResult(state=dict(n.state), skipped=True)
        ids: dict[str, str] = {}
        headers = {"Authorization": f"GenieKey {self.config.api_key.reveal()}"}
        for path, body in requests:
            resp = await _http.post(
                self.deps,
                self.config.api_url.rstrip("/") + path,
                json=body,
                headers=headers,
                timeout_s=self.config.timeout_s,
            )
            _http.check(resp, self.deps, vendor="opsgenie")
            data = resp.json()
            if isinstance(data, dict) and data.get("requestId"):
                ids["request_id"] = str(data["requestId"])
        alias = alias_for(str(n.incident.get("key") or n.incident.get("id")))
        return DeliveryResult(
            state={**n.state, "alias": alias}, provider_ids={"alias": alias, **ids}
        )
