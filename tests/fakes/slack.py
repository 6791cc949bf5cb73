"""Slack Web API and Slack incoming webhook fakes; the contracts they enforce are in
docs/contracts.md."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.base import FakeServer, json_body

TOKEN = "xoxb-test-token-0123456789"
WEBHOOK_PATH = "/services/T000/B000/SECRETsecret0123"
_NAME = re.compile(r"^[a-z0-9_-]+$")
# Read methods take form or query arguments only; JSON bodies are for write methods.
_FORM_ONLY = {"users.lookupByEmail"}


def ok(**data: Any) -> web.Response:
    return web.json_response({"ok": True, **data})


def err(error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error})


class SlackAPIFake(FakeServer):
    def __init__(self) -> None:
        self.channels: dict[str, dict[str, Any]] = {
            "C0GENERAL": {"name": "incidents", "members": set(), "topic": "", "bookmarks": []}
        }
        self.names: set[str] = {"incidents"}
        self.users: dict[str, str] = {"alice@example.com": "U0ALICE", "bob@example.com": "U0BOB"}
        self.bot_user = "U0BRIDGEBOT"  # the token's own user: it cannot invite itself
        self.messages: list[dict[str, Any]] = []
        self._next = 1
        super().__init__()

    def routes(self) -> None:
        self.app.router.add_post("/api/{method}", self.handle)

    def rate_limit_body(self, retry_after: float | None) -> Any:
        return {"ok": False, "error": "ratelimited"}

    def by_name(self, name: str) -> dict[str, Any]:
        return next(c for c in self.channels.values() if c["name"] == name)

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return err("invalid_auth") if "Authorization" in request.headers else err("not_authed")
        method = request.match_info["method"]
        raw = await request.read()
        ctype = request.content_type
        if method in _FORM_ONLY:
            if ctype != "application/x-www-form-urlencoded":
                return err("invalid_arguments")
            args: Any = dict(parse_qsl(raw.decode()))
        else:
            if ctype != "application/json":
                return err("invalid_arguments")
            args = json_body(raw)
            if not isinstance(args, dict):
                return err("invalid_json")
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            return err("unknown_method")
        result: web.Response = handler(args)
        return result

    def m_conversations_create(self, a: dict[str, Any]) -> web.Response:
        name = a.get("name")
        if not isinstance(name, str) or not name:
            return err("invalid_name_required")
        if len(name) > 80:
            return err("invalid_name_maxlength")
        if not _NAME.match(name):
            return err("invalid_name_specials")
        if name in self.names:
            return err("name_taken")
        cid = f"C{self._next:08d}"
        self._next += 1
        self.names.add(name)
        self.channels[cid] = {
            "name": name,
            "members": set(),  # the people invited (the bot, its creator, is not listed)
            "topic": "",
            "bookmarks": [],
            "is_private": bool(a.get("is_private")),
        }
        return ok(channel={"id": cid, "name": name})

    def m_conversations_invite(self, a: dict[str, Any]) -> web.Response:
        """Without ``force``, one user that cannot be invited refuses the whole call: nobody
        is invited, the error is the first user's, and ``errors`` lists every refused user."""
        ch = self.channels.get(str(a.get("channel")))
        if ch is None:
            return err("channel_not_found")
        raw = a.get("users")
        if raw is not None and not isinstance(raw, str):  # a comma-separated string, not a list
            return err("invalid_arguments")
        users = [u for u in (raw or "").split(",") if u]
        if not users:
            return err("no_user")
        if len(users) > 1000:
            return err("too_many_users")
        known = {*self.users.values(), self.bot_user}
        errors = []
        for u in users:
            if u not in known:
                errors.append({"user": u, "ok": False, "error": "user_not_found"})
            elif u == self.bot_user:
                errors.append({"user": u, "ok": False, "error": "cant_invite_self"})
            elif u in ch["members"]:
                errors.append({"user": u, "ok": False, "error": "already_in_channel"})
        if errors:
            return web.json_response({"ok": False, "error": errors[0]["error"], "errors": errors})
        ch["members"].update(users)
        return ok(channel={"id": a["channel"]})

    def m_conversations_setTopic(self, a: dict[str, Any]) -> web.Response:
        ch = self.channels.get(str(a.get("channel")))
        if ch is None:
            return err("channel_not_found")
        topic = str(a.get("topic") or "")
        if len(topic) > 250:
            return err("too_long")
        ch["topic"] = topic
        return ok(channel={"id": a["channel"], "topic": {"value": topic}})

    def m_bookmarks_add(self, a: dict[str, Any]) -> web.Response:
        ch = self.channels.get(str(a.get("channel_id")))
        if ch is None:
            return err("channel_not_found")
        if a.get("type") != "link" or not a.get("title") or not a.get("link"):
            return err("invalid_arguments")
        if len(ch["bookmarks"]) >= 100:
            return err("too_many_bookmarks")
        ch["bookmarks"].append({"title": a["title"], "link": a["link"]})
        return ok(bookmark={"id": f"Bk{len(ch['bookmarks'])}"})

    def m_users_lookupByEmail(self, a: dict[str, Any]) -> web.Response:
        uid = self.users.get(str(a.get("email")))
        return ok(user={"id": uid}) if uid else err("users_not_found")

    def m_chat_postMessage(self, a: dict[str, Any]) -> web.Response:
        channel = str(a.get("channel") or "")
        if channel not in self.channels and channel.lstrip("#") not in self.names:
            return err("channel_not_found")
        text, blocks = a.get("text"), a.get("blocks")
        if not text and not blocks:
            return err("no_text")
        if text and len(text) > 40_000:
            return err("msg_too_long")
        if blocks is not None:
            if not isinstance(blocks, list) or len(blocks) > 50:
                return err("invalid_blocks")
            for b in blocks:
                if b.get("type") == "section" and len((b.get("text") or {}).get("text", "")) > 3000:
                    return err("invalid_blocks")
        thread = a.get("thread_ts")
        if thread is not None and not any(m["ts"] == thread for m in self.messages):
            return err("thread_not_found")
        ts = f"1795752400.{len(self.messages) + 1:06d}"
        self.messages.append({**a, "ts": ts})
        return ok(channel=channel, ts=ts)


class SlackWebhookFake(FakeServer):
    """Incoming webhooks answer in plain text: ``ok`` or an error code with a 4xx."""

    def routes(self) -> None:
        self.app.router.add_post("/services/{a}/{b}/{c}", self.handle)
        self.messages: list[dict[str, Any]] = []

    def rate_limit_body(self, retry_after: float | None) -> Any:
        return "rate_limited"

    @property
    def hook_url(self) -> str:
        return self.url + WEBHOOK_PATH

    async def handle(self, request: web.Request) -> web.Response:
        if request.path != WEBHOOK_PATH:
            return web.Response(status=403, text="invalid_token")
        data = json_body(await request.read())
        if not isinstance(data, dict):
            return web.Response(status=400, text="invalid_payload")
        if not data.get("text") and not data.get("blocks"):
            return web.Response(status=400, text="no_text")
        for b in data.get("blocks") or []:
            if len((b.get("text") or {}).get("text", "")) > 3000:
                return web.Response(status=400, text="invalid_blocks")
        self.messages.append(data)
        return web.Response(status=200, text="ok")
