"""An ntfy server's publish API (``POST /{topic}`` with headers) as a fake; the contract it
enforces is in docs/contracts.md. ``tap`` is the person on the phone: it runs a
notification's ``http`` action as ntfy's app does (its method, URL, headers and body)."""

from __future__ import annotations

import base64
import re
import uuid
from email.header import decode_header, make_header
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.base import FakeServer

ACCESS_TOKEN = "tk_ntfyACCESStokenSECRET01234567"  # tk_ and 29 characters, like a real one
TOPIC = re.compile(r"^[-_A-Za-z0-9]{1,64}$")
PRIORITIES = {"1": 1, "2": 2, "3": 3, "4": 4, "5": 5, "min": 1, "low": 2, "default": 3}
PRIORITIES.update({"high": 4, "urgent": 5, "max": 5})
MESSAGE_LIMIT = 4096  # bytes; the default message-size-limit
MAX_ACTIONS = 3


def error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {"code": code, "http": status, "error": message, "link": "https://ntfy.sh/docs/publish/"},
        status=status,
    )


def parse_actions(header: str) -> list[dict[str, Any]] | None:
    """ntfy's short action format: ``action, label, url, key=value, ...`` separated by ``;``
    (no quoting needed here: the bridge's URLs have no commas)."""
    out: list[dict[str, Any]] = []
    for part in header.split(";"):
        fields = [f.strip() for f in part.split(",")]
        if len(fields) < 3 or fields[0] not in ("view", "http", "broadcast"):
            return None
        action: dict[str, Any] = {"action": fields[0], "label": fields[1], "url": fields[2]}
        for extra in fields[3:]:
            key, sep, value = extra.partition("=")
            if not sep:
                return None
            action[key] = value == "true" if key == "clear" else value
        if not str(action["url"]).startswith(("http://", "https://")):
            return None
        action.setdefault("method", "POST")
        out.append(action)
    return out


class NtfyFake(FakeServer):
    def routes(self) -> None:
        self.app.router.add_post("/{topic}", self.publish)
        self.app.router.add_put("/{topic}", self.publish)
        self.messages: list[dict[str, Any]] = []
        self.access_token: str | None = ACCESS_TOKEN  # None: an open server
        self.basic: tuple[str, str] | None = None

    def rate_limit_body(self, retry_after: float | None) -> Any:
        return {
            "code": 42901,
            "http": 429,
            "error": "limit reached: too many requests",
            "link": "https://ntfy.sh/docs/publish/#limitations",
        }

    def _authorized(self, header: str | None) -> bool:
        if self.access_token is None and self.basic is None:
            return True
        if header is None:
            return False
        if self.access_token is not None and header == f"Bearer {self.access_token}":
            return True
        if self.basic is not None:
            pair = base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            return header == f"Basic {pair}"
        return False

    async def publish(self, request: web.Request) -> web.Response:
        topic = request.match_info["topic"]
        if not TOPIC.match(topic):
            return error(400, 40009, "invalid topic")
        if not self._authorized(request.headers.get("Authorization")):
            return error(
                401 if "Authorization" not in request.headers else 403, 40101, "unauthorized"
            )
        body = await request.read()
        if len(body) > MESSAGE_LIMIT:
            return error(413, 41301, "message too large")
        raw_priority = request.headers.get("Priority", "3").lower()
        if raw_priority not in PRIORITIES:
            return error(400, 40007, "invalid priority")
        actions: list[dict[str, Any]] = []
        if "Actions" in request.headers:
            parsed = parse_actions(request.headers["Actions"])
            if parsed is None:
                return error(400, 40018, "invalid request: actions invalid")
            if len(parsed) > MAX_ACTIONS:
                return error(400, 40019, "invalid request: too many actions")
            actions = parsed
        title = str(make_header(decode_header(request.headers.get("Title", ""))))
        message: dict[str, Any] = {
            "id": uuid.uuid4().hex[:12],
            "event": "message",
            "topic": topic,
            "title": title,
            "message": body.decode("utf-8"),
            "priority": PRIORITIES[raw_priority],
            "tags": [t for t in request.headers.get("Tags", "").split(",") if t],
            "click": request.headers.get("Click", ""),
            "actions": [{"id": uuid.uuid4().hex[:10], **a} for a in actions],
        }
        self.messages.append(message)
        return web.json_response({k: v for k, v in message.items() if v not in ("", [])})

    async def tap(self, message_id: str, label: str) -> tuple[int, str]:
        """The person taps the notification's button ``label``: the app sends its request."""
        message = next(m for m in self.messages if m["id"] == message_id)
        action = next(a for a in message["actions"] if a["label"] == label)
        assert action["action"] == "http"
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                action["method"], action["url"], data=action.get("body", ""), allow_redirects=False
            ) as resp,
        ):
            return resp.status, await resp.text()
