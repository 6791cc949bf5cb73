"""A generic webhook receiver that checks the signature and the Idempotency-Key."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from bridge.targets.webhook import verify_signature
from tests.fakes.base import FakeServer, json_body

SECRET = "whsec-0123456789secret"
PATH = "/hooks/incident-bridge/pathSECRET0123"


class WebhookFake(FakeServer):
    def __init__(self, now: Any = time.time) -> None:
        self.now = now
        super().__init__()

    def routes(self) -> None:
        self.app.router.add_post(PATH, self.handle)
        self.deliveries: dict[str, dict[str, Any]] = {}
        self.received: list[dict[str, Any]] = []

    @property
    def hook_url(self) -> str:
        return self.url + PATH

    def rate_limit_body(self, retry_after: float | None) -> Any:
        return {"error": "slow down"}

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        sig = request.headers.get("X-Incident-Bridge-Signature", "")
        if not verify_signature(SECRET, sig, raw, now=self.now()):
            return web.json_response({"error": "bad signature"}, status=401)
        key = request.headers.get("Idempotency-Key")
        if not key:
            return web.json_response({"error": "Idempotency-Key required"}, status=400)
        data = json_body(raw)
        if not isinstance(data, dict) or "incident" not in data:
            return web.json_response({"error": "bad body"}, status=422)
        self.received.append(data)
        self.deliveries.setdefault(key, data)  # a repeat of a key is acknowledged, not stored
        return web.json_response({"accepted": True})
