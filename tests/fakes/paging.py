"""PagerDuty Events v2 and Opsgenie Alert API fakes; the contracts they enforce are in
docs/contracts.md."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.fakes.base import FakeServer, json_body

ROUTING_KEY = "R0UTINGKEYsecret0123456789abcdef"  # 32 characters, like a real one
GENIE_KEY = "11111111-2222-3333-4444-genieSECRET0"
_PD_SEVERITIES = {"critical", "error", "warning", "info"}


class PagerDutyFake(FakeServer):
    max_body = 512 * 1024

    def routes(self) -> None:
        self.app.router.add_post("/v2/enqueue", self.handle)
        self.events: list[dict[str, Any]] = []
        self.incidents: dict[str, str] = {}  # dedup_key -> triggered/acknowledged/resolved

    def rate_limit_body(self, retry_after: float | None) -> Any:
        return {
            "status": "throttle event",
            "message": "Requests for this service are arriving too quickly.",
        }

    @staticmethod
    def invalid(*errors: str) -> web.Response:
        return web.json_response(
            {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": list(errors),
            },
            status=400,
        )

    async def handle(self, request: web.Request) -> web.Response:
        e = json_body(await request.read())
        if not isinstance(e, dict):
            return self.invalid("Invalid JSON")
        if e.get("routing_key") != ROUTING_KEY:
            return self.invalid("'routing_key' is invalid")
        action = e.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            return self.invalid("'event_action' is invalid")
        key = e.get("dedup_key")
        if key is not None and (not isinstance(key, str) or len(key) > 255):
            return self.invalid("'dedup_key' must be at most 255 characters")
        if action == "trigger":
            p = e.get("payload")
            if not isinstance(p, dict):
                return self.invalid("'payload' is missing")
            summary = p.get("summary")
            if not isinstance(summary, str) or not summary or len(summary) > 1024:
                return self.invalid("'payload.summary' is missing or too long")
            if not p.get("source"):
                return self.invalid("'payload.source' is missing")
            if p.get("severity") not in _PD_SEVERITIES:
                return self.invalid("'payload.severity' is invalid")
            key = key or uuid.uuid4().hex
        elif not key:
            return self.invalid("'dedup_key' is required for acknowledge and resolve")
        self.events.append(e)
        if action == "trigger" or key in self.incidents:
            self.incidents[key] = {
                "trigger": "triggered",
                "acknowledge": "acknowledged",
                "resolve": "resolved",
            }[action]
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": key}, status=202
        )


class OpsgenieFake(FakeServer):
    def routes(self) -> None:
        r = self.app.router
        r.add_post("/v2/alerts", self.create)
        r.add_post("/v2/alerts/{tail:.+}", self.act)
        self.alerts: dict[str, dict[str, Any]] = {}
        self.actions: list[tuple[str, str, dict[str, Any]]] = []

    def rate_limit_body(self, retry_after: float | None) -> Any:
        return {"message": "Rate limit exceeded", "took": 0.0, "requestId": str(uuid.uuid4())}

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"GenieKey {GENIE_KEY}":
            return web.json_response(
                {
                    "message": "Key format is not valid!",
                    "took": 0.0,
                    "requestId": str(uuid.uuid4()),
                },
                status=422 if "Authorization" in request.headers else 401,
            )
        return None

    @staticmethod
    def accepted() -> web.Response:
        return web.json_response(
            {"result": "Request will be processed", "took": 0.01, "requestId": str(uuid.uuid4())},
            status=202,
        )

    @staticmethod
    def invalid(field: str, why: str) -> web.Response:
        return web.json_response(
            {
                "message": "Request body is not valid",
                "errors": {field: why},
                "took": 0.0,
                "requestId": str(uuid.uuid4()),
            },
            status=422,
        )

    async def create(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        a = json_body(await request.read())
        if not isinstance(a, dict):
            return self.invalid("body", "not JSON")
        message = a.get("message")
        if not isinstance(message, str) or not message.strip():
            return self.invalid("message", "Message can not be empty.")
        if len(message) > 130:
            return self.invalid("message", "Message can not be longer than 130 characters.")
        if len(str(a.get("alias", ""))) > 512:
            return self.invalid("alias", "Alias can not be longer than 512 characters.")
        if a.get("priority", "P3") not in ("P1", "P2", "P3", "P4", "P5"):
            return self.invalid("priority", "Priority should be one of [P1, P2, P3, P4, P5]")
        alias = str(a.get("alias") or uuid.uuid4())
        existing = self.alerts.get(alias)
        if existing is None or existing["status"] == "closed":
            self.alerts[alias] = {**a, "status": "open", "notes": [], "count": 1}
        else:
            existing["count"] += 1  # Opsgenie deduplicates an open alert by alias
        return self.accepted()

    async def act(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        # The identifier is percent-encoded (an alias may hold "/"): split the raw path.
        parts = request.raw_path.split("?", 1)[0].split("/")
        if len(parts) != 5:
            return web.json_response({"message": "Not found"}, status=404)
        alias, action = unquote(parts[3]), parts[4]
        if action not in ("close", "acknowledge", "notes"):
            return web.json_response({"message": "Not found"}, status=404)
        if request.query.get("identifierType") != "alias":
            return self.invalid("identifierType", "expected alias in this test")
        body = json_body(await request.read()) or {}
        self.actions.append((action, alias, body))
        alert = self.alerts.get(alias)
        if alert is not None:  # asynchronous API: an unknown alias still gets a 202
            if action == "notes":
                if not body.get("note"):
                    return self.invalid("note", "Note can not be empty.")
                alert["notes"].append(body["note"])
            else:
                alert["status"] = {"close": "closed", "acknowledge": "acked"}[action]
        return self.accepted()
