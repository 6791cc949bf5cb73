"""Teams Workflows, Mattermost, Discord and Telegram fakes; the contracts they enforce are in
docs/contracts.md."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeServer, json_body

TEAMS_SIG = "teamsSIGsecret0123"
MATTERMOST_HOOK = "mmhooksecret0123456789"
DISCORD_ID, DISCORD_TOKEN = "123456789", "discordTOKENsecret0123"
TELEGRAM_TOKEN = "123456:TELEGRAMsecretTOKEN0123"


class TeamsFake(FakeServer):
    """A Power Automate "when a webhook request is received" flow: 202 on success."""

    def routes(self) -> None:
        self.app.router.add_post("/workflows/{flow}/triggers/manual/paths/invoke", self.handle)
        self.cards: list[dict[str, Any]] = []

    @property
    def hook_url(self) -> str:
        return f"{self.url}/workflows/f1/triggers/manual/paths/invoke?api-version=1&sig={TEAMS_SIG}"

    async def handle(self, request: web.Request) -> web.Response:
        if request.query.get("sig") != TEAMS_SIG:
            return web.json_response(
                {"error": {"code": "DirectApiAuthorizationRequired"}}, status=401
            )
        raw = await request.read()
        if len(raw) > 28 * 1024:
            return web.json_response({"error": {"code": "RequestEntityTooLarge"}}, status=413)
        data = json_body(raw)
        try:
            assert data["type"] == "message"
            att = data["attachments"][0]
            assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
            content = att["content"]
            assert content["type"] == "AdaptiveCard" and content["version"]
            assert isinstance(content["body"], list) and content["body"]
        except (AssertionError, KeyError, IndexError, TypeError):
            return web.json_response({"error": {"code": "InvalidRequestContent"}}, status=400)
        self.cards.append(content)
        return web.Response(status=202)


class MattermostFake(FakeServer):
    def routes(self) -> None:
        self.app.router.add_post("/hooks/{hook}", self.handle)
        self.posts: list[dict[str, Any]] = []

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hooks/{MATTERMOST_HOOK}"

    def rate_limit_body(self, retry_after: float | None) -> Any:
        return "limit exceeded"

    async def handle(self, request: web.Request) -> web.Response:
        if request.match_info["hook"] != MATTERMOST_HOOK:
            return web.json_response(
                {"id": "web.incoming_webhook.invalid.app_error", "status_code": 400}, status=400
            )
        data = json_body(await request.read())
        if not isinstance(data, dict) or not (data.get("text") or data.get("attachments")):
            return web.json_response(
                {"id": "web.incoming_webhook.text.app_error", "status_code": 400}, status=400
            )
        if len(data.get("text") or "") > 16_383:
            return web.json_response(
                {"id": "web.incoming_webhook.text.length.app_error", "status_code": 400}, status=400
            )
        self.posts.append(data)
        return web.Response(text="ok", content_type="text/plain")


class DiscordFake(FakeServer):
    def routes(self) -> None:
        self.app.router.add_post("/api/webhooks/{id}/{token}", self.handle)
        self.messages: list[dict[str, Any]] = []

    @property
    def hook_url(self) -> str:
        return f"{self.url}/api/webhooks/{DISCORD_ID}/{DISCORD_TOKEN}"

    def rate_limit_body(self, retry_after: float | None) -> Any:
        return {
            "message": "You are being rate limited.",
            "retry_after": retry_after or 1.0,
            "global": False,
        }

    async def handle(self, request: web.Request) -> web.Response:
        if (request.match_info["id"], request.match_info["token"]) != (DISCORD_ID, DISCORD_TOKEN):
            return web.json_response(
                {"message": "Invalid Webhook Token", "code": 50027}, status=401
            )
        data = json_body(await request.read())
        if not isinstance(data, dict) or not (data.get("content") or data.get("embeds")):
            return web.json_response(
                {"message": "Cannot send an empty message", "code": 50006}, status=400
            )
        invalid = len(data.get("content") or "") > 2000 or len(data.get("embeds") or []) > 10
        if invalid or "discord" in str(data.get("username", "")).lower():
            return web.json_response({"message": "Invalid Form Body", "code": 50035}, status=400)
        self.messages.append(data)
        message_id = str(1000 + len(self.messages))
        if request.query.get("wait") == "true":
            return web.json_response({"id": message_id, "content": data.get("content")})
        return web.Response(status=204)


_TG_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "a",
    "code",
    "pre",
    "span",
    "tg-spoiler",
    "blockquote",
    "tg-emoji",
}
_TG_TOKEN = re.compile(r"<(/?)([a-zA-Z-]+)([^<>]*)>|&(#\d+|#x[0-9a-fA-F]+|lt|gt|amp|quot);|[<&]")


def telegram_visible_text(text: str) -> str:
    """Parse Telegram HTML like the Bot API; ``ValueError`` as "can't parse entities"."""
    stack: list[str] = []
    out: list[str] = []
    pos = 0
    for m in _TG_TOKEN.finditer(text):
        out.append(text[pos : m.start()])
        pos = m.end()
        if m.group(0) in ("<", "&"):
            raise ValueError(
                f"Unsupported start tag or bare {m.group(0)!r} at byte offset {m.start()}"
            )
        if m.group(4) is not None:
            out.append(html.unescape(m.group(0)))
            continue
        closing, tag = m.group(1), m.group(2).lower()
        if tag not in _TG_TAGS:
            raise ValueError(f'Unsupported start tag "{tag}"')
        if closing:
            if not stack or stack.pop() != tag:
                raise ValueError(f'Unmatched end tag "{tag}"')
        else:
            stack.append(tag)
    out.append(text[pos:])
    if stack:
        raise ValueError(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(out)


class TelegramFake(FakeServer):
    def routes(self) -> None:
        self.app.router.add_post("/bot{token}/sendMessage", self.handle)
        self.messages: list[dict[str, Any]] = []

    def rate_limit_body(self, retry_after: float | None) -> Any:
        after = int(retry_after or 1)
        return {
            "ok": False,
            "error_code": 429,
            "description": f"Too Many Requests: retry after {after}",
            "parameters": {"retry_after": after},
        }

    @staticmethod
    def bad(description: str, code: int = 400) -> web.Response:
        return web.json_response(
            {"ok": False, "error_code": code, "description": description}, status=code
        )

    async def handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != TELEGRAM_TOKEN:
            return self.bad("Unauthorized", 401)
        data = json_body(await request.read())
        if not isinstance(data, dict) or not data.get("chat_id"):
            return self.bad("Bad Request: chat_id is empty")
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            return self.bad("Bad Request: message text is empty")
        if data.get("parse_mode") == "HTML":
            try:
                text = telegram_visible_text(text)
            except ValueError as exc:
                return self.bad(f"Bad Request: can't parse entities: {exc}")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return self.bad("Bad Request: message is too long")
        self.messages.append(data)
        result = {"message_id": len(self.messages), "chat": {"id": data["chat_id"]}, "text": text}
        return web.json_response({"ok": True, "result": result})


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)
