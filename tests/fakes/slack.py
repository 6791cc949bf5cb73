"""Slack Web API and Slack incoming webhook fakes; the contracts they enforce are in
docs/contracts.md."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.base import FakeServer, json_body

TOKEN = "xoxb-test-token-0123456789"
WEBHOOK_PATH = "/services/T000/B000/SECRETsecret0123"
_NAME = re.compile(r"^[a-z0-9_-]+$")
# Read methods take form or query arguments only; JSON bodies are for write methods.
_FORM_ONLY = {"users.lookupByEmail"}


@dataclass
class Limit:
    """A token bucket: ``per_minute`` requests a minute, at most ``burst`` at once."""

    per_minute: float
    burst: int = 1


# Slack's published tiers for the methods the target calls (Tier 2: 20+ a minute, Tier 3:
# 50+, Tier 4: 100+), and chat.postMessage's one message a second per channel with a short burst.
SLACK_LIMITS = {
    "conversations.create": Limit(20, 3),
    "conversations.setTopic": Limit(20, 3),
    "bookmarks.add": Limit(20, 3),
    "bookmarks.list": Limit(50, 3),
    "conversations.invite": Limit(50, 3),
    "users.lookupByEmail": Limit(100, 3),
}
POST_LIMIT = Limit(60, 2)
IN_FLIGHT_S = 0.05


@dataclass
class _Bucket:
    limit: Limit
    tokens: float
    at: float
    window_end: float = 0.0
    window_start: float = 0.0


@dataclass
class RateLimits:
    """What Slack does with too many calls: HTTP 429, ``Retry-After`` in whole seconds and
    ``{"ok": false, "error": "ratelimited"}``, per method, and for chat.postMessage per
    channel. It notes every 429 it gave and every request that came inside a window it gave
    (the client did not wait) -- except in the first ``IN_FLIGHT_S`` of the window: such a
    request was on its way before the client could have read the answer."""

    methods: dict[str, Limit] = field(default_factory=lambda: dict(SLACK_LIMITS))
    post: Limit | None = field(default_factory=lambda: POST_LIMIT)
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    limited: dict[str, int] = field(default_factory=dict)  # scope -> 429s given
    inside: list[tuple[str, float]] = field(default_factory=list)  # (scope, seconds early)

    def scope(self, method: str, args: Any) -> tuple[str, Limit] | None:
        if method == "chat.postMessage":
            channel = args.get("channel") if isinstance(args, dict) else None
            return (f"{method}:{channel}", self.post) if self.post else None
        limit = self.methods.get(method)
        return (method, limit) if limit else None

    def check(self, method: str, args: Any) -> float | None:
        """None when the call may go on, else the Retry-After it gets."""
        found = self.scope(method, args)
        if found is None:
            return None
        scope, limit = found
        now = time.monotonic()
        b = self.buckets.get(scope)
        if b is None:
            b = self.buckets[scope] = _Bucket(limit, float(limit.burst), now)
        rate = limit.per_minute / 60.0
        b.tokens = min(float(limit.burst), b.tokens + (now - b.at) * rate)
        b.at = now
        if now < b.window_end and now - b.window_start > IN_FLIGHT_S:
            self.inside.append((scope, b.window_end - now))
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return None
        after = max(1, math.ceil((1.0 - b.tokens) / rate))
        if now >= b.window_end:
            b.window_start = now
        b.window_end = max(b.window_end, now + after)
        self.limited[scope] = self.limited.get(scope, 0) + 1
        return float(after)


def ok(**data: Any) -> web.Response:
    return web.json_response({"ok": True, **data})


def err(error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error})


class SlackAPIFake(FakeServer):
    def __init__(self, limits: RateLimits | None = None) -> None:
        self.limits = limits  # None: no rate limits (the contract tests of other things)
        self.channels: dict[str, dict[str, Any]] = {
            "C0GENERAL": {"name": "incidents", "members": set(), "topic": "", "bookmarks": []}
        }
        self.names: set[str] = {"incidents"}
        self.users: dict[str, str] = {"alice@example.com": "U0ALICE", "bob@example.com": "U0BOB"}
        self.bot_user = "U0BRIDGEBOT"  # the token's own user: it cannot invite itself
        self.messages: list[dict[str, Any]] = []
        self.reinvited = 0  # invites of someone already in the channel
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
        if self.limits is not None:
            after = self.limits.check(method, args)
            if after is not None:
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": f"{after:g}"},
                )
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
                self.reinvited += 1
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

    def m_bookmarks_list(self, a: dict[str, Any]) -> web.Response:
        ch = self.channels.get(str(a.get("channel_id")))
        if ch is None:
            return err("channel_not_found")
        return ok(
            bookmarks=[
                {"id": f"Bk{i + 1}", "title": b["title"], "link": b["link"], "type": "link"}
                for i, b in enumerate(ch["bookmarks"])
            ]
        )

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
