"""Twilio's REST API (Messages and Calls) and its call flow, as a fake; the contract it
enforces is in docs/contracts.md. ``press`` is the person on the phone: it posts the digits to
the ``<Gather>``'s action URL of the call's TwiML, signed as Twilio signs (X-Twilio-Signature)."""

from __future__ import annotations

import base64
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from bridge.core.paging import twilio_signature
from tests.fakes.base import FakeServer

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilioAUTHtokenSECRET0123456789a"  # 32 characters, like a real one
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
SMS_MAX = 1600
TWIML_MAX = 4000


def error(status: int, code: int, message: str) -> web.Response:
    """Twilio's error body: its code, a message, the page that explains the code."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status)


@dataclass
class Call:
    sid: str
    to: str
    sender: str
    twiml: str
    said: list[str] = field(default_factory=list)
    action: str | None = None
    answers: list[str] = field(default_factory=list)


class TwilioFake(FakeServer):
    def routes(self) -> None:
        base = "/2010-04-01/Accounts/{sid}"
        self.app.router.add_post(base + "/Messages.json", self.message)
        self.app.router.add_post(base + "/Calls.json", self.call)
        self.messages: list[dict[str, str]] = []
        self.calls: dict[str, Call] = {}
        self.auth_token = AUTH_TOKEN

    def rate_limit_body(self, retry_after: float | None) -> Any:
        return {
            "code": 20429,
            "message": "Too Many Requests",
            "more_info": "https://www.twilio.com/docs/errors/20429",
            "status": 429,
        }

    def _auth(self, request: web.Request) -> web.Response | None:
        expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return error(401, 20003, "Authenticate")
        if request.match_info["sid"] != ACCOUNT_SID:
            return error(404, 20404, "The requested resource was not found")
        return None

    async def _form(self, request: web.Request) -> dict[str, str] | web.Response:
        if request.content_type != "application/x-www-form-urlencoded":
            return error(400, 21100, "Accounts API requires a form-encoded body")
        form = dict(parse_qsl((await request.read()).decode(), keep_blank_values=True))
        to, sender = form.get("To", ""), form.get("From", "")
        if not to:
            return error(400, 21604, "A 'To' phone number is required.")
        if not E164.match(to):
            return error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not sender:
            return error(400, 21603, "A 'From' phone number is required.")
        if not E164.match(sender):
            return error(400, 21212, f"Invalid From Number (caller ID): {sender}")
        return form

    async def message(self, request: web.Request) -> web.Response:
        refused = self._auth(request)
        if refused is not None:
            return refused
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        body = form.get("Body", "")
        if not body.strip():
            return error(400, 21602, "Message body is required.")
        if len(body) > SMS_MAX:
            return error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        sid = "SM" + uuid.uuid4().hex
        self.messages.append({"sid": sid, **form})
        return web.json_response(
            {"sid": sid, "status": "queued", "to": form["To"], "from": form["From"], "body": body},
            status=201,
        )

    async def call(self, request: web.Request) -> web.Response:
        refused = self._auth(request)
        if refused is not None:
            return refused
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        twiml = form.get("Twiml")
        if not twiml and not form.get("Url"):
            return error(400, 21205, "Url parameter is required.")
        assert twiml is not None, "the fake plays inline TwiML only"
        if len(twiml) > TWIML_MAX:
            return error(400, 21232, "Twiml parameter exceeds 4000 characters.")
        try:
            root = ET.fromstring(twiml)
        except ET.ParseError:
            return error(400, 12100, "Document parse failure")
        if root.tag != "Response":
            return error(400, 12100, "Document parse failure")
        sid = "CA" + uuid.uuid4().hex
        call = Call(sid, form["To"], form["From"], twiml)
        call.said = [el.text or "" for el in root.iter("Say")]
        gather = root.find("Gather")
        call.action = gather.get("action") if gather is not None else None
        self.calls[sid] = call
        return web.json_response({"sid": sid, "status": "queued", "to": call.to}, status=201)

    async def press(
        self, sid: str, digits: str, *, auth_token: str | None = None
    ) -> tuple[int, str]:
        """The person presses ``digits`` during the call: Twilio posts them to the Gather's
        action, signed with the account's auth token (another one, to forge)."""
        call = self.calls[sid]
        assert call.action is not None, "the call offered no keypress"
        form = {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": sid,
            "CallStatus": "in-progress",
            "Called": call.to,
            "Caller": call.sender,
            "Digits": digits,
            "Direction": "outbound-api",
            "FinishedOnKey": "",
            "From": call.sender,
            "To": call.to,
        }
        signature = twilio_signature(auth_token or self.auth_token, call.action, form)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                call.action,
                data=form,
                headers={"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"},
                allow_redirects=False,
            ) as resp,
        ):
            text = await resp.text()
        call.answers.append(text)
        return resp.status, text
