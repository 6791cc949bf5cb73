"""``twilio``: a text message and/or a voice call to one phone, through Twilio's REST API
(``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` and ``.../Calls.json``, form-encoded,
HTTP basic auth with the account SID and auth token).

The call reads the incident's title and, with ``callback_url``, offers "press 1 to acknowledge":
a ``<Gather>`` whose digits Twilio posts, signed (``X-Twilio-Signature``), to our callback
route with a per-call token; a 1 acknowledges the incident as ``person`` (``callback``).
Only the paging events send (``events``), and nothing once the incident is acknowledged.
The person paged is ``to`` and ``person``, or, for an escalation step, each person it reaches
whose handles name this target (or its type) with their number. Twilio has no idempotency key
for a new message or call: a send repeated after a crash pages twice (what a page already
sent is not sent again when a later request of it fails)."""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import ConfigDict, Field

from bridge.core.paging import (
    Acknowledgement,
    CallbackAnswer,
    masked_number,
    twilio_signature,
    twiml_page,
    twiml_say,
)
from bridge.core.secrets import Secret
from bridge.delivery.classify import classify
from bridge.delivery.markup import truncate
from bridge.delivery.protocol import (
    DeliveryError,
    DeliveryResult,
    Notification,
    PermanentError,
    RateLimited,
)
from bridge.targets import _http
from bridge.targets._paging import PagingConfig, PagingTarget, refused

SMS_MAX = 1600  # Twilio refuses a longer Body (error 21617)
E164 = r"^\+[1-9][0-9]{6,14}$"
TWIML = "text/xml"


class TwilioConfig(PagingConfig):
    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, populate_by_name=True
    )

    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: Secret
    sender: str = Field(alias="from", pattern=E164)
    # the phone paged; None: only the people an escalation step reaches (their handles)
    to: str | None = Field(default=None, pattern=E164)
    mode: Literal["call", "sms", "both"] = "both"
    api_url: str = Field(default="https://api.twilio.com", pattern=r"^https?://[^\s?#]+$")
    language: str = Field(default="en-US", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


class TwilioTarget(PagingTarget):
    type_name = "twilio"
    Config = TwilioConfig
    config: TwilioConfig
    address = re.compile(E164)

    def credential(self) -> str | None:
        return self.config.auth_token.reveal()

    def _url(self, what: str) -> str:
        base = self.config.api_url.rstrip("/")
        return f"{base}/2010-04-01/Accounts/{self.config.account_sid}/{what}.json"

    def _headers(self) -> dict[str, str]:
        pair = f"{self.config.account_sid}:{self.config.auth_token.reveal()}".encode()
        return {
            "Authorization": "Basic " + base64.b64encode(pair).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
        }

    def spoken_title(self, n: Notification) -> str:
        inc = n.incident
        kind = "escalated incident" if "escalated" in n.kinds else "incident"
        return (
            f"Incident bridge: {inc.get('severity', '')} {kind} {inc.get('id')}: "
            f"{inc.get('title', '')}."
        )

    def twiml(self, n: Notification, person: str | None = None) -> str:
        action = self.ack_url(n, person)
        return twiml_page(self.spoken_title(n), action, language=self.config.language)

    def sms_body(self, n: Notification) -> str:
        return truncate(self.render(n).body.strip(), SMS_MAX)

    async def _post(self, what: str, form: Mapping[str, str]) -> dict[str, Any]:
        resp = await _http.request(
            self.deps,
            "POST",
            self._url(what),
            data=urlencode(form).encode(),
            headers=self._headers(),
            timeout_s=self.config.timeout_s,
        )
        data = resp.json()
        if 400 <= resp.status < 500 and resp.status != 429:
            # Twilio's own code (21211: an invalid 'To' number) is the reason: bounded, and
            # it says what to fix; never its message, which repeats the number.
            code = data.get("code") if isinstance(data, dict) else None
            if isinstance(code, int) and 10_000 <= code < 100_000:
                if code == 20429:
                    verdict = classify(429, resp.headers, resp.body, now=self.deps.clock())
                    raise RateLimited("rate_limited", verdict.retry_after)
                raise PermanentError(f"twilio_{code}")
        _http.check(resp, self.deps, vendor="twilio")
        return data if isinstance(data, dict) else {}

    async def send(self, notification: Notification) -> DeliveryResult:
        n = notification
        if not self.pages(n):
            return DeliveryResult(state=dict(n.state), skipped=True)
        state = dict(n.state)
        # What this page already did (a retry after a failure texts or calls no one twice).
        done: list[str] = list(state.get("done") or []) if state.get("page") == n.id else []
        ids: dict[str, str] = {}
        reached = 0
        for person, number in self.recipients(n):
            to = number or self.config.to
            if to is None:
                continue
            reached += 1
            for what, resource in (("sms", "Messages"), ("call", "Calls")):
                if self.config.mode not in (what, "both") or f"{what} {to}" in done:
                    continue
                form = {"To": to, "From": self.config.sender}
                if what == "sms":
                    form["Body"] = self.sms_body(n)
                else:
                    form["Twiml"] = self.twiml(n, person)
                try:
                    data = await self._post(resource, form)
                except DeliveryError as exc:
                    exc.state = {**state, "page": n.id, "done": done}
                    raise
                done.append(f"{what} {to}")
                if isinstance(data.get("sid"), str):
                    ids["message_sid" if what == "sms" else "call_sid"] = data["sid"]
        if reached == 0:
            raise PermanentError("no_recipient")  # no `to`, and nobody's handle for it
        return DeliveryResult(state={**state, "page": n.id, "done": done}, provider_ids=ids)

    async def callback(
        self, token: str, form: Mapping[str, str], headers: Mapping[str, str]
    ) -> CallbackAnswer:
        page = self.verify_token(token)
        if page is None:
            return refused(401, "unknown or expired token", "token")
        signature = next((v for k, v in headers.items() if k.lower() == "x-twilio-signature"), "")
        expected = twilio_signature(self.credential() or "", self.route_url(token), form)
        if not signature or not hmac.compare_digest(signature.encode(), expected.encode()):
            return refused(401, "does not match", "X-Twilio-Signature")
        if form.get("AccountSid") != self.config.account_sid:
            return refused(401, "not this target's account", "AccountSid")
        call = form.get("CallSid", "")
        if not call:
            return refused(400, "missing", "CallSid")
        digits = form.get("Digits", "")
        if digits != "1":
            again = twiml_page(
                f"Incident {page.incident}. You pressed {digits or 'nothing'}.",
                self.route_url(token),
                language=self.config.language,
            )
            return CallbackAnswer(200, again, TWIML)
        how = f"by phone: pressed 1 on a Twilio call to {masked_number(form.get('To', ''))}"
        ack = Acknowledgement(page.incident, page.person, how, f"twilio {call}")
        return CallbackAnswer(200, "", TWIML, ack)

    def answer(self, ack: Acknowledgement, status: int, error: str) -> CallbackAnswer:
        if status == 200:
            text = f"Incident {ack.incident} is acknowledged. Thank you."
        else:
            text = f"Incident {ack.incident} was not acknowledged: {error}"
        return CallbackAnswer(200, twiml_say(text, language=self.config.language), TWIML)
