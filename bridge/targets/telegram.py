"""``telegram``: Bot API ``sendMessage`` in HTML parse mode. The bot token is in the URL, so
the URL never appears in an error. Text at most 4,096 characters, cut without breaking tags."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from bridge.core.secrets import Secret
from bridge.delivery.markup import truncate, utf16_len
from bridge.delivery.protocol import DeliveryResult, Notification
from bridge.targets import _http
from bridge.targets.base import Target, TargetConfig

MAX_CHARS = 4096


class TelegramConfig(TargetConfig):
    token: Secret
    chat_id: int | str
    api_url: str = "https://api.telegram.org"
    message_thread_id: int | None = None
    disable_notification: bool = False
    max_chars: int = Field(default=MAX_CHARS, ge=100, le=MAX_CHARS)


class TelegramTarget(Target):
    type_name = "telegram"
    markup = "html"
    Config = TelegramConfig
    config: TelegramConfig

    def payload(self, n: Notification) -> dict[str, Any]:
        # Telegram counts UTF-16 code units; counting them on the markup is conservative.
        text = truncate(self.render(n).body, self.config.max_chars, "html", measure=utf16_len)
        payload: dict[str, Any] = {
            "chat_id": self.config.chat_id,
            "text": text,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": True},
        }
        if self.config.message_thread_id is not None:
            payload["message_thread_id"] = self.config.message_thread_id
        if self.config.disable_notification:
            payload["disable_notification"] = True
        return payload

    async def send(self, notification: Notification) -> DeliveryResult:
        url = f"{self.config.api_url.rstrip('/')}/bot{self.config.token.reveal()}/sendMessage"
        resp = await _http.post(
            self.deps, url, json=self.payload(notification), timeout_s=self.config.timeout_s
        )
        _http.check(resp, self.deps, vendor="telegram")
        data = resp.json()
        result = data.get("result") if isinstance(data, dict) else None
        ids = (
            {"message_id": str(result["message_id"])}
            if isinstance(result, dict) and "message_id" in result
            else {}
        )
        return DeliveryResult(state=dict(notification.state), provider_ids=ids)
