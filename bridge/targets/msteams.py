"""``msteams``: a Teams Workflows webhook ("Post to a channel when a webhook request is
received") with an Adaptive Card. Success is 202; a 200 whose body is an error text (old
O365 connectors) is an error. A message is kept under about 28 KB."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from bridge.core.secrets import Secret
from bridge.delivery.markup import escape_markdown, truncate, utf8_len
from bridge.delivery.protocol import DeliveryResult, Notification
from bridge.targets import _http
from bridge.targets.base import Target, TargetConfig

MAX_BYTES = 28_000
_SEVERITY_COLOR = {"sev1": "Attention", "sev2": "Warning", "sev3": "Accent", "sev4": "Default"}


class MSTeamsConfig(TargetConfig):
    url: Secret
    max_bytes: int = Field(default=MAX_BYTES, ge=2_000, le=MAX_BYTES)


def card(title: str, text: str, incident: Mapping[str, Any]) -> dict[str, Any]:
    facts = [
        {"title": name, "value": escape_markdown(str(incident.get(key) or "-"))}
        for name, key in (
            ("Severity", "severity"),
            ("Status", "status"),
            ("Team", "team"),
            ("Service", "service"),
        )
    ]
    content: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.2",
        "body": [
            {
                "type": "TextBlock",
                "text": title,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
                "color": _SEVERITY_COLOR.get(str(incident.get("severity")), "Default"),
            },
            {"type": "TextBlock", "text": text, "wrap": True},
        ],
    }
    if incident.get("id") is not None:  # a channel message is about no incident: no facts
        content["body"].append({"type": "FactSet", "facts": facts})
    url = str(incident.get("url") or "")
    if url.startswith(("http://", "https://")):
        content["actions"] = [{"type": "Action.OpenUrl", "title": "Open incident", "url": url}]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": content,
            }
        ],
    }


def _size(payload: Mapping[str, Any]) -> int:
    return utf8_len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))


class MSTeamsTarget(Target):
    type_name = "msteams"
    markup = "markdown"
    Config = MSTeamsConfig
    config: MSTeamsConfig

    def payload(self, n: Notification) -> dict[str, Any]:
        rendered = self.render(n)
        title = rendered.title or escape_markdown(str(n.incident.get("title", "")))
        title = truncate(title, 200, "markdown")
        # A single newline is a soft break (a space) in an Adaptive Card: keep lines apart.
        text = "\n\n".join(line for line in rendered.body.splitlines() if line.strip())
        payload = card(title, text, n.incident)
        excess = _size(payload) - self.config.max_bytes
        if excess > 0:  # cut the body by the bytes over, on markdown token boundaries
            budget = max(0, utf8_len(text) - excess - 64)
            payload = card(title, truncate(text, budget, "markdown", measure=utf8_len), n.incident)
        return payload

    async def send(self, notification: Notification) -> DeliveryResult:
        url, payload = self.config.url.reveal(), self.payload(notification)
        return await _http.post_message(self, url, payload, vendor="msteams")
