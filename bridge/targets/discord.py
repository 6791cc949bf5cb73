"""``discord``: a Discord webhook, posted with ``?wait=true`` so errors come back, and
``allowed_mentions: {"parse": []}`` so nothing in a message can ping anyone."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, field_validator

from bridge.core.secrets import Secret
from bridge.delivery.markup import truncate
from bridge.delivery.protocol import DeliveryResult, Notification
from bridge.targets import _http
from bridge.targets.base import Target, TargetConfig

MAX_CHARS = 2000


class DiscordConfig(TargetConfig):
    url: Secret
    username: str | None = Field(default=None, max_length=80)
    avatar_url: str | None = None
    max_chars: int = Field(default=MAX_CHARS, ge=100, le=MAX_CHARS)

    @field_validator("username")
    @classmethod
    def _no_discord(cls, value: str | None) -> str | None:
        if value is not None and "discord" in value.lower():
            raise ValueError('Discord rejects a username containing "discord"')
        return value


def with_wait(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "wait"] + [("wait", "true")]
    return urlunsplit(parts._replace(query=urlencode(query)))


class DiscordTarget(Target):
    type_name = "discord"
    markup = "markdown"
    min_interval_s = 0.5  # the API allows about this rate per channel
    Config = DiscordConfig
    config: DiscordConfig

    def payload(self, n: Notification) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "content": truncate(self.render(n).body, self.config.max_chars, "markdown"),
            "allowed_mentions": {"parse": []},
        }
        if self.config.username:
            payload["username"] = self.config.username
        if self.config.avatar_url:
            payload["avatar_url"] = self.config.avatar_url
        return payload

    async def send(self, notification: Notification) -> DeliveryResult:
        try:
            url = with_wait(self.config.url.reveal())
        except ValueError:
            from bridge.delivery.protocol import PermanentError

            raise PermanentError("invalid_url") from None
        resp = await _http.post(
            self.deps, url, json=self.payload(notification), timeout_s=self.config.timeout_s
        )
        _http.check(resp, self.deps, vendor="discord")
        data = resp.json()
        ids = {"message_id": str(data["id"])} if isinstance(data, dict) and "id" in data else {}
        return DeliveryResult(state=dict(notification.state), provider_ids=ids)
