"""Pushover's Message API and its receipts (emergency priority) as a fake; the contract it
enforces is in docs/contracts.md. ``acknowledge`` is the person on the phone: the receipt is
marked acknowledged and, when the message gave one, the callback URL receives it as Pushover
posts it."""

from __future__ import annotations

import re
import secrets
import string
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from tests.fakes.base import FakeServer

APP_TOKEN = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"  # 30 characters, as Pushover's
USER_KEY = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"
KEY = re.compile(r"^[A-Za-z0-9]{30}$")
LIMITS = {"message": 1024, "title": 250, "url": 512, "url_title": 100}


@dataclass
class Receipt:
    receipt: str
    callback: str | None
    expires_at: int
    acknowledged: int = 0
    acknowledged_at: int = 0
    device: str = ""
    cancelled: bool = False
    called_back: int = 0


def refuse(field: str, message: str, status: int = 400) -> web.Response:
    return web.json_response(
        {field: "invalid", "errors": [message], "status": 0, "request": str(uuid.uuid4())},
        status=status,
    )


class PushoverFake(FakeServer):
    def routes(self) -> None:
        self.app.router.add_post("/1/messages.json", self.message)
        self.app.router.add_get("/1/receipts/{receipt}.json", self.receipt)
        self.app.router.add_post("/1/receipts/{receipt}/cancel.json", self.cancel)
        self.messages: list[dict[str, str]] = []
        self.receipts: dict[str, Receipt] = {}
        self.now = 1_795_752_400

    def rate_limit_body(self, retry_after: float | None) -> Any:
        return {"status": 0, "errors": ["application has exceeded its message limit"]}

    async def _form(self, request: web.Request) -> dict[str, str]:
        raw = (await request.read()).decode()
        if request.method == "GET":
            return dict(request.query)
        return dict(parse_qsl(raw, keep_blank_values=True))

    async def message(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if form.get("token") != APP_TOKEN:
            return refuse("token", "application token is invalid")
        if form.get("user") != USER_KEY:
            return refuse(
                "user", "user identifier is not a valid user, group, or subscribed user key"
            )
        if not form.get("message", "").strip():
            return refuse("message", "message cannot be blank")
        for name, limit in LIMITS.items():
            if len(form.get(name, "")) > limit:
                return refuse(name, f"{name} is too long (limit {limit} characters)")
        try:
            priority = int(form.get("priority", "0"))
        except ValueError:
            return refuse("priority", "priority is invalid")
        if not -2 <= priority <= 2:
            return refuse("priority", "priority is invalid")
        answer: dict[str, Any] = {"status": 1, "request": str(uuid.uuid4())}
        if priority == 2:
            try:
                retry, expire = int(form["retry"]), int(form["expire"])
            except (KeyError, ValueError):
                return refuse("retry", "retry and expire are required with priority 2")
            if retry < 30:
                return refuse("retry", "retry must be at least 30 seconds")
            if not 0 < expire <= 10_800:
                return refuse("expire", "expire must be at most 10800 seconds")
            callback = form.get("callback")
            if callback is not None and not callback.startswith(("http://", "https://")):
                return refuse("callback", "callback must be an http or https URL")
            receipt = "".join(
                secrets.choice(string.ascii_letters + string.digits) for _ in range(30)
            )
            self.receipts[receipt] = Receipt(receipt, callback, self.now + expire)
            answer["receipt"] = receipt
        self.messages.append(form)
        return web.json_response(answer)

    def _receipt(self, request: web.Request, token: str | None) -> Receipt | web.Response:
        if token != APP_TOKEN:
            return refuse("token", "application token is invalid")
        found = self.receipts.get(request.match_info["receipt"])
        if found is None:
            return refuse("receipt", "receipt not found; may be invalid or expired", 404)
        return found

    async def receipt(self, request: web.Request) -> web.Response:
        r = self._receipt(request, request.query.get("token"))
        if isinstance(r, web.Response):
            return r
        return web.json_response(
            {
                "status": 1,
                "acknowledged": r.acknowledged,
                "acknowledged_at": r.acknowledged_at,
                "acknowledged_by": USER_KEY if r.acknowledged else "",
                "acknowledged_by_device": r.device,
                "last_delivered_at": self.now,
                "expired": int(self.now > r.expires_at or r.cancelled),
                "expires_at": r.expires_at,
                "called_back": r.called_back,
                "called_back_at": self.now if r.called_back else 0,
                "request": str(uuid.uuid4()),
            }
        )

    async def cancel(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        r = self._receipt(request, form.get("token"))
        if isinstance(r, web.Response):
            return r
        r.cancelled = True
        return web.json_response({"status": 1, "request": str(uuid.uuid4())})

    async def acknowledge(self, receipt: str, device: str = "pixel8") -> tuple[int, str]:
        """The person acknowledges on ``device``; Pushover calls the message's callback back
        (status 0 and no text when the message had none)."""
        r = self.receipts[receipt]
        r.acknowledged, r.acknowledged_at, r.device = 1, self.now, device
        if r.callback is None:
            return 0, ""
        form = {
            "receipt": receipt,
            "acknowledged": "1",
            "acknowledged_at": str(self.now),
            "acknowledged_by": USER_KEY,
            "acknowledged_by_device": device,
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(r.callback, data=form, allow_redirects=False) as resp,
        ):
            text = await resp.text()
        if resp.status == 200:
            r.called_back = 1
        return resp.status, text
