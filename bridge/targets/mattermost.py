"""``mattermost``: an incoming webhook (``<host>/hooks/<id>``; the URL is the secret).
Text at most 16,383 characters; answers 200 ``ok``.

With ``actions_url`` (the bridge's ``/api/v1/chat/mattermost/actions``) and ``actions_token``
(the slash command's token, ``--mattermost-command-token-file``), the messages that open or
move an open incident carry interactive buttons (an attachment's ``actions``): Acknowledge
(until someone has), I'm commander, Resolve. Mattermost posts a press to ``actions_url`` with
the ``context`` given here; the chat route checks the token and acts as the person who pressed
(docs/chat.md). Mattermost does not sign these requests: the token in the context is what
proves a press came through a message of the bridge, and it is visible to Mattermost's server
and its API clients, as with every integration's context."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from bridge.core.chat import message_buttons
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
    actions_url: str | None = Field(default=None, pattern=r"^https?://")
    actions_token: Secret | None = None


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
        actions = self.actions(n)
        if actions:
            payload["attachments"] = [{"fallback": "incident actions", "actions": actions}]
        for key in ("channel", "username", "icon_url"):
            value = getattr(self.config, key)
            if value:
                payload[key] = value
        return payload

    def actions(self, n: Notification) -> list[dict[str, Any]]:
        """The buttons of a message that opens or moves an open incident (none without
        ``actions_url`` and ``actions_token``)."""
        url, token = self.config.actions_url, self.config.actions_token
        if url is None or token is None:
            return []
        value = str(n.incident.get("id", ""))
        return [
            {
                "id": action_id.replace(".", ""),  # Mattermost's ids are letters and digits
                "name": label,
                "integration": {
                    "url": url,
                    "context": {"action": action_id, "incident": value, "token": token.reveal()},
                },
            }
            for action_id, label in message_buttons(n.event, n.incident)
        ]

    async def send(self, notification: Notification) -> DeliveryResult:
        url, payload = self.config.url.reveal(), self.payload(notification)
        return await _http.post_message(self, url, payload, vendor="mattermost")
