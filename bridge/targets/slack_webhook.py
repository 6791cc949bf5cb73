"""``slack_webhook``: a Slack incoming webhook (the URL is the secret). No edits, no threads,
no dedup key: at-least-once. Errors come as plain-text bodies (``invalid_payload``...)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from bridge.core.secrets import Secret
from bridge.delivery.markup import truncate
from bridge.delivery.protocol import DeliveryResult, Notification
from bridge.targets import _http
from bridge.targets.base import Target, TargetConfig

# A section block holds at most 3,000 characters; the whole message is kept to one block
# because Slack collapses long messages anyway (about 13k aggregate, bolt-js#2509).
SECTION_LIMIT = 3000


def slack_message(text: str, limit: int) -> dict[str, Any]:
    text = truncate(text, min(limit, SECTION_LIMIT), "slack")
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }


class SlackWebhookConfig(TargetConfig):
    url: Secret
    max_chars: int = Field(default=SECTION_LIMIT, ge=100, le=SECTION_LIMIT)


class SlackWebhookTarget(Target):
    type_name = "slack_webhook"
    markup = "slack"
    min_interval_s = 1.0  # the API allows about this rate per channel
    Config = SlackWebhookConfig
    config: SlackWebhookConfig

    def payload(self, n: Notification) -> dict[str, Any]:
        return slack_message(self.render(n).body, self.config.max_chars)

    async def send(self, notification: Notification) -> DeliveryResult:
        url, payload = self.config.url.reveal(), self.payload(notification)
        return await _http.post_message(self, url, payload, vendor="slack")
