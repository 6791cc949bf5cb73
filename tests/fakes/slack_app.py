"""The Slack app's side of chat commands, as Slack documents it: requests signed with the
signing secret (v0 HMAC-SHA256 of ``v0:{timestamp}:{body}``), slash commands and
``block_actions`` form-encoded, events as JSON; the ``response_url`` endpoint that takes a
message (its documented shape enforced); and the Web API methods the chat routes read
(``conversations.history``, ``chat.getPermalink``). Mattermost's slash command and buttons too."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from tests.fakes.base import FakeServer, json_body
from tests.fakes.slack import TOKEN, SlackAPIFake, err, ok

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # Slack's documented example secret
MATTERMOST_TOKEN = "mmcommandtoken0123456789"
TEAM = "T0TEAM"
BLOCK_TYPES = {"section", "actions", "context", "divider", "header", "image", "input", "rich_text"}


def signed(body: bytes, ts: int, secret: str = SIGNING_SECRET) -> dict[str, str]:
    """The headers Slack sends with ``body`` at ``ts`` (seconds)."""
    base = b"v0:" + str(ts).encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


def slash_body(
    text: str,
    *,
    user_id: str = "U0ALICE",
    channel_id: str = "C0OTHER",
    response_url: str = "",
    trigger_id: str = "1337.42.abcdef",
) -> bytes:
    """A slash command's body, the fields in Slack's order."""
    return urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": TEAM,
            "team_domain": "example",
            "channel_id": channel_id,
            "channel_name": "incidents",
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": "/incident",
            "text": text,
            "api_app_id": "A0APP",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
    ).encode()


def button_body(
    action_id: str,
    value: str,
    *,
    user_id: str = "U0ALICE",
    response_url: str = "",
    trigger_id: str = "2337.42.abcdef",
    message: dict[str, Any] | None = None,
) -> bytes:
    """A ``block_actions`` interaction: ``payload=<JSON>``, form-encoded."""
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "example"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM},
        "api_app_id": "A0APP",
        "trigger_id": trigger_id,
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C1"},
        "channel": {"id": "C1", "name": "incidents"},
        "message": message or {"type": "message", "text": "Incident opened", "blocks": []},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": f"incident-{value}",
                "value": value,
                "text": {"type": "plain_text", "text": "x"},
                "action_ts": "1700000001.000200",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def event_body(event: dict[str, Any], event_id: str = "Ev0001") -> bytes:
    return json.dumps(
        {
            "token": "deprecated",
            "team_id": TEAM,
            "api_app_id": "A0APP",
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": 1700000000,
        }
    ).encode()


def mattermost_body(
    text: str,
    *,
    user_id: str = "mm0alice",
    user_name: str = "alice.m",
    token: str = "",
    response_url: str = "",
) -> bytes:
    """Mattermost's slash command (form-encoded, its token in the body)."""
    return urlencode(
        {
            "channel_id": "mmchannel",
            "channel_name": "town-square",
            "command": "/incident",
            "response_url": response_url,
            "team_domain": "example",
            "team_id": "mmteam",
            "text": text,
            "token": token or MATTERMOST_TOKEN,
            "trigger_id": f"mmtrigger-{text}",
            "user_id": user_id,
            "user_name": user_name,
        }
    ).encode()


class ResponseURLFake(FakeServer):
    """``https://hooks.slack.com/actions/T/1/xyz``: a JSON message with ``text`` or ``blocks``
    (at most 50, each a known block type), ``response_type`` ephemeral or in_channel,
    ``replace_original``/``delete_original`` booleans; anything else is refused with 400
    ``invalid_payload`` or ``invalid_blocks``, as Slack does. Mattermost's
    ``<server>/hooks/commands/<id>`` takes the same message. ``redirect_to``: every post is
    answered 307 to that URL instead (a response URL that points elsewhere)."""

    def routes(self) -> None:
        self.app.router.add_post("/actions/{team}/{id}/{token}", self.handle)
        self.app.router.add_post("/commands/{team}/{id}/{token}", self.handle)
        self.app.router.add_post("/hooks/commands/{id}", self.handle)
        self.messages: list[dict[str, Any]] = []
        self.redirect_to: str | None = None

    def hook(self, kind: str = "actions", n: int = 1) -> str:
        return f"{self.url}/{kind}/{TEAM}/{n}/secretpart{n}"

    def mattermost_hook(self, n: int = 1) -> str:
        return f"{self.url}/hooks/commands/mmcmd{n}"

    async def handle(self, request: web.Request) -> web.Response:
        if self.redirect_to is not None:
            return web.Response(status=307, headers={"Location": self.redirect_to})
        if request.content_type != "application/json":
            return web.Response(status=400, text="invalid_payload")
        data = json_body(await request.read())
        if not isinstance(data, dict) or not (data.get("text") or data.get("blocks")):
            return web.Response(status=400, text="no_text")
        if data.get("response_type", "ephemeral") not in ("ephemeral", "in_channel"):
            return web.Response(status=400, text="invalid_payload")
        for flag in ("replace_original", "delete_original"):
            if flag in data and not isinstance(data[flag], bool):
                return web.Response(status=400, text="invalid_payload")
        blocks = data.get("blocks", [])
        if not isinstance(blocks, list) or len(blocks) > 50:
            return web.Response(status=400, text="invalid_blocks")
        for block in blocks:
            if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
                return web.Response(status=400, text="invalid_blocks")
        self.messages.append(data)
        return web.Response(text="ok")


class SlackWebAPIWithHistory(SlackAPIFake):
    """The Web API fake, with the read methods the chat routes use (form arguments only)."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[tuple[str, str], dict[str, Any]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method not in ("conversations.history", "chat.getPermalink"):
            return await super().handle(request)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return err("not_authed")
        if request.content_type != "application/x-www-form-urlencoded":
            return err("invalid_arguments")
        args = dict(parse_qsl((await request.read()).decode()))
        channel = args.get("channel", "")
        if method == "chat.getPermalink":
            ts = args.get("message_ts", "")
            if (channel, ts) not in self.history:
                return err("message_not_found")
            return ok(
                channel=channel,
                permalink=f"https://example.slack.com/archives/{channel}/p{ts.replace('.', '')}",
            )
        latest, inclusive = args.get("latest", ""), args.get("inclusive") in ("true", "1")
        found = [
            m
            for (c, ts), m in sorted(self.history.items(), reverse=True)
            if c == channel and (ts < latest or (inclusive and ts == latest))
        ]
        return ok(messages=found[: int(args.get("limit", "100"))], has_more=False)
