"""``mattermost``: an incoming webhook (``<host>/hooks/<id>``; the URL is the secret).
Text at most 16,383 characters; answers 200 ``ok``."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from bridge.core.secrets import Secret
from bridge.delivery.markup import truncate
from bridge.delivery.protocol import DeliveryResult, Notification
from bridge.targets import _http
from bridge.targets.base import Target, TargetConfig

MAX_CHARS = 16_383


class MattermostConfig(TargetConfig):
    url: Secret
    channel: str | None = None
    username: str | None = None
    icon_url: str | None = None
    max_chars: int = Field(default=MAX_CHARS, ge=100, le=MAX_CHARS)


class MattermostTarget(Target):
    type_name = "mattermost"
    markup = "markdown"
    min_interval_s = 0.2  # the API allows about this rate per channel
    Config = MattermostConfig
    config: MattermostConfig

    def payload(self, n: Notification) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "text": truncate(self.render(n).body, self.config.max_chars, "markdown")
        }
        for key in ("channel", "username", "icon_url"):
            value = getattr(self.config, key)
            if value:
                payload[key] = value
        return payload

    async def send(self, notification: Notification) -> DeliveryResult:
        url, payload = self.config.url.reveal(), self.payload(notification)
        return await _http.post_message(self, url, payload, vendor="mattermost")
