"""``ntfy``: a push notification through an ntfy server (ntfy.sh or self-hosted):
``POST {server}/{topic}`` with the message as the body and ``Title``, ``Priority`` (from the
severity), ``Tags``, ``Click`` (the incident's page) and, with ``callback_url`` and
``callback_secret``, an ``Actions`` header whose ``http`` action "Acknowledge" posts from the
phone to our callback route with a per-page signed token. Optional access token (bearer) or
basic auth. Only the paging events send (``events``), nothing once the incident is
acknowledged. An escalation step's people whose handles name this target (or ``ntfy``) get it
on their own topic (the handle), as themselves. ntfy has no idempotency key: a send repeated
after a crash notifies twice."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from bridge.core.paging import Acknowledgement, CallbackAnswer
from bridge.core.secrets import Secret
from bridge.delivery.markup import truncate
from bridge.delivery.protocol import DeliveryError, DeliveryResult, Notification, PermanentError
from bridge.targets import _http
from bridge.targets._paging import PagingConfig, PagingTarget, refused

# ntfy's default message-size-limit: a longer body becomes an attachment, or is refused.
BODY_MAX_BYTES = 4096
TITLE_MAX = 250
TOPIC = r"^[-_A-Za-z0-9]{1,64}$"
PRIORITY = {"sev1": 5, "sev2": 4, "sev3": 3, "sev4": 2}


class NtfyConfig(PagingConfig):
    server: str = Field(default="https://ntfy.sh", pattern=r"^https?://[^\s?#]+$")
    topic: str = Field(pattern=TOPIC)
    token: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    priority_map: dict[str, int] = Field(default_factory=lambda: dict(PRIORITY))
    tags: list[str] = Field(default_factory=lambda: ["rotating_light"])
    callback_secret: Secret | None = None

    @model_validator(mode="after")
    def _auth(self) -> NtfyConfig:
        if self.token is not None and self.username is not None:
            raise ValueError("give token or username and password, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if any(not 1 <= p <= 5 for p in self.priority_map.values()):
            raise ValueError("priority_map: ntfy priorities are 1 to 5")
        if self.callback_url is not None and self.callback_secret is None:
            raise ValueError("callback_url needs callback_secret (the acknowledge links' key)")
        return self


def header_text(text: str) -> str:
    """A header value ntfy reads back as ``text``: ASCII as is, else an RFC 2047 encoded word
    (an HTTP header carries no UTF-8)."""
    clean = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if clean.isascii():
        return clean
    return "=?UTF-8?B?" + base64.b64encode(clean.encode()).decode() + "?="


def cut_bytes(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` UTF-8 bytes, an ellipsis where it was cut."""
    if len(text.encode()) <= limit:
        return text
    return text.encode()[: limit - 3].decode("utf-8", "ignore") + "…"


class NtfyTarget(PagingTarget):
    type_name = "ntfy"
    Config = NtfyConfig
    config: NtfyConfig
    address = re.compile(TOPIC)

    def credential(self) -> str | None:
        secret = self.config.callback_secret
        return secret.reveal() if secret is not None else None

    def request(self, n: Notification, person: str | None = None) -> tuple[dict[str, str], bytes]:
        """The headers and body of the page (to ``person``: the acknowledgement's actor)."""
        inc: Mapping[str, Any] = n.incident
        rendered = self.render(n)
        title = rendered.title or f"[{inc.get('severity')}] #{inc.get('id')} {inc.get('title')}"
        headers = {
            "Title": header_text(truncate(title, TITLE_MAX)),
            "Priority": str(self.config.priority_map.get(str(inc.get("severity")), 3)),
        }
        if self.config.tags:
            headers["Tags"] = ",".join(self.config.tags)
        url = str(inc.get("url") or "")
        if url.startswith(("http://", "https://")):
            headers["Click"] = url
        ack = self.ack_url(n, person)
        if ack is not None:
            headers["Actions"] = f"http, Acknowledge, {ack}, method=POST, clear=true"
        if self.config.token is not None:
            headers["Authorization"] = f"Bearer {self.config.token.reveal()}"
        elif self.config.username is not None and self.config.password is not None:
            pair = f"{self.config.username}:{self.config.password.reveal()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        body = cut_bytes(rendered.body.strip(), BODY_MAX_BYTES).encode()
        return headers, body

    async def send(self, notification: Notification) -> DeliveryResult:
        n = notification
        if not self.pages(n):
            return DeliveryResult(state=dict(n.state), skipped=True)
        state = dict(n.state)
        done: list[str] = list(state.get("done") or []) if state.get("page") == n.id else []
        ids: dict[str, str] = {}
        for person, topic in self.recipients(n):
            topic = topic or self.config.topic
            if topic in done:
                continue
            headers, body = self.request(n, person)
            url = f"{self.config.server.rstrip('/')}/{topic}"
            try:
                resp = await _http.request(
                    self.deps,
                    "POST",
                    url,
                    data=body,
                    headers=headers,
                    timeout_s=self.config.timeout_s,
                )
                data = resp.json()
                if 400 <= resp.status < 500 and resp.status != 429 and isinstance(data, dict):
                    code = data.get("code")
                    if isinstance(code, int) and 10_000 <= code < 100_000:
                        raise PermanentError(f"ntfy_{code}")  # 40101 unauthorized, ...
                _http.check(resp, self.deps, vendor="ntfy")
            except DeliveryError as exc:
                exc.state = {**state, "page": n.id, "done": done}  # who already has it
                raise
            done.append(topic)
            if isinstance(data, dict) and "id" in data:
                ids["message_id"] = str(data["id"])
        return DeliveryResult(state={**state, "page": n.id, "done": done}, provider_ids=ids)

    async def callback(
        self, token: str, form: Mapping[str, str], headers: Mapping[str, str]
    ) -> CallbackAnswer:
        # ntfy's app sends the action's request itself, unsigned: the token is the proof.
        page = self.verify_token(token)
        if page is None:
            return refused(401, "unknown or expired token", "token")
        how = "from the ntfy notification"
        ack = Acknowledgement(page.incident, page.person, how, f"ntfy {page.page}")
        return CallbackAnswer(200, json.dumps({"incident": page.incident}), "application/json", ack)
