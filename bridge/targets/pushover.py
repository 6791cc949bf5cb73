"""``pushover``: a push notification through Pushover's Message API
(``POST {api_url}/1/messages.json``, form-encoded: token, user, message, title, url, priority).

The priority comes from the severity; emergency priority (2, sev1 by default) repeats the
notification every ``retry_s`` until acknowledged or ``expire_s`` passed, and answers with a
receipt. With ``callback_url``, Pushover posts the receipt to our callback route (a per-page
signed token in its URL) when the person acknowledges on the phone; the bridge asks Pushover's
receipts API whether that receipt really is acknowledged before acknowledging the incident as
``person``. When the incident is acknowledged another way, the receipt is cancelled (its
repeats stop). An escalation step's people whose handles name this target (or ``pushover``)
get it with their own user key (the handle), as themselves. Only the paging events send; Pushover has no idempotency key: a send repeated
after a crash notifies twice."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from pydantic import Field

from bridge.core.paging import Acknowledgement, CallbackAnswer
from bridge.core.secrets import Secret
from bridge.delivery.markup import truncate
from bridge.delivery.protocol import (
    DeliveryError,
    DeliveryResult,
    Notification,
    PermanentError,
)
from bridge.targets import _http
from bridge.targets._paging import SETTLED, PagingConfig, PagingTarget, refused

MESSAGE_MAX = 1024
TITLE_MAX = 250
URL_MAX = 512
PRIORITY = {"sev1": 2, "sev2": 1, "sev3": 0, "sev4": -1}
RECEIPT = re.compile(r"^[A-Za-z0-9]{30}$")
# Pushover's answer to a refused message names each bad parameter: {"user": "invalid", ...}.
_FIELDS = ("token", "user", "device", "message", "title", "url", "priority", "retry", "expire")


class PushoverConfig(PagingConfig):
    token: Secret
    user: str = Field(pattern=r"^[A-Za-z0-9]{30}$")
    device: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,25}$")
    api_url: str = Field(default="https://api.pushover.net", pattern=r"^https?://[^\s?#]+$")
    priority_map: dict[str, int] = Field(default_factory=lambda: dict(PRIORITY))
    retry_s: int = Field(default=60, ge=30, le=10_800)
    expire_s: int = Field(default=3600, ge=30, le=10_800)
    sound: str | None = Field(default=None, pattern=r"^[a-z0-9_-]{1,32}$")


class PushoverTarget(PagingTarget):
    type_name = "pushover"
    Config = PushoverConfig
    config: PushoverConfig
    address = RECEIPT  # a user or group key: 30 letters and digits, as a receipt

    def credential(self) -> str | None:
        return self.config.token.reveal()

    def _url(self, path: str) -> str:
        return self.config.api_url.rstrip("/") + path

    def form(
        self, n: Notification, person: str | None = None, user: str | None = None
    ) -> dict[str, str]:
        inc: Mapping[str, Any] = n.incident
        rendered = self.render(n)
        title = rendered.title or f"[{inc.get('severity')}] #{inc.get('id')} {inc.get('title')}"
        priority = self.config.priority_map.get(str(inc.get("severity")), 0)
        priority = max(-2, min(2, priority))
        form = {
            "token": self.config.token.reveal(),
            "user": user or self.config.user,
            "message": truncate(rendered.body.strip() or title, MESSAGE_MAX),
            "title": truncate(title, TITLE_MAX),
            "priority": str(priority),
        }
        url = str(inc.get("url") or "")
        if url.startswith(("http://", "https://")) and len(url) <= URL_MAX:
            form["url"], form["url_title"] = url, f"Incident #{inc.get('id')}"
        if self.config.device:
            form["device"] = self.config.device
        if self.config.sound:
            form["sound"] = self.config.sound
        if priority == 2:
            form["retry"] = str(self.config.retry_s)
            form["expire"] = str(self.config.expire_s)
            ack = self.ack_url(n, person)
            if ack is not None:
                form["callback"] = ack
        return form

    async def _post(self, path: str, form: Mapping[str, str]) -> dict[str, Any]:
        resp = await _http.request(
            self.deps,
            "POST",
            self._url(path),
            data=urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout_s=self.config.timeout_s,
        )
        return self._checked(resp)

    def _checked(self, resp: _http.Response) -> dict[str, Any]:
        data = resp.json()
        if 400 <= resp.status < 500 and resp.status != 429 and isinstance(data, dict):
            bad = next((f for f in _FIELDS if data.get(f) == "invalid"), None)
            if bad is not None:
                raise PermanentError(f"pushover_{bad}_invalid")
        _http.check(resp, self.deps, vendor="pushover")
        if isinstance(data, dict) and data.get("status") not in (1, None):
            raise PermanentError("pushover_status_0")
        return data if isinstance(data, dict) else {}

    async def send(self, notification: Notification) -> DeliveryResult:
        n = notification
        state = dict(n.state)
        receipts = [r for r in state.get("receipts") or [] if isinstance(r, str)]
        if str(n.incident.get("status")) in SETTLED and receipts:
            # acknowledged elsewhere (or over): the emergency notifications stop repeating
            for receipt in list(receipts):
                try:
                    await self._post(
                        f"/1/receipts/{receipt}/cancel.json", {"token": self.config.token.reveal()}
                    )
                except PermanentError:
                    pass  # expired or already acknowledged: nothing repeats any more
                except DeliveryError as exc:
                    exc.state = {**state, "receipts": receipts}
                    raise
                receipts.remove(receipt)
            state.pop("receipts")
            return DeliveryResult(state=state, provider_ids={"cancelled": "true"})
        if not self.pages(n):
            return DeliveryResult(state=state, skipped=True)
        done: list[str] = list(state.get("done") or []) if state.get("page") == n.id else []
        ids: dict[str, str] = {}
        for person, user in self.recipients(n):
            user = user or self.config.user
            if user in done:
                continue
            try:
                data = await self._post("/1/messages.json", self.form(n, person, user))
            except DeliveryError as exc:
                exc.state = {**state, "page": n.id, "done": done, "receipts": receipts}
                raise
            done.append(user)
            if "request" in data:
                ids["request"] = str(data["request"])
            if isinstance(data.get("receipt"), str):
                receipts.append(data["receipt"])
                ids["receipt"] = data["receipt"]
        state.update(page=n.id, done=done)
        if receipts:
            state["receipts"] = receipts
        return DeliveryResult(state=state, provider_ids=ids)

    async def receipt(self, receipt: str) -> Mapping[str, Any]:
        """Pushover's receipts API on ``receipt``: acknowledged, by whom, on which device."""
        query = urlencode({"token": self.config.token.reveal()})
        resp = await _http.request(
            self.deps,
            "GET",
            self._url(f"/1/receipts/{receipt}.json?{query}"),
            timeout_s=self.config.timeout_s,
        )
        return self._checked(resp)

    async def callback(
        self, token: str, form: Mapping[str, str], headers: Mapping[str, str]
    ) -> CallbackAnswer:
        page = self.verify_token(token)
        if page is None:
            return refused(401, "unknown or expired token", "token")
        receipt = form.get("receipt", "")
        if not RECEIPT.match(receipt):
            return refused(400, "30 letters and digits", "receipt")
        # Pushover does not sign its callback: its receipts API says whether this receipt
        # was acknowledged, as only the app token may ask.
        try:
            status = await self.receipt(receipt)
        except DeliveryError as exc:
            return refused(502, f"Pushover's receipts API did not answer: {exc.reason}", "receipt")
        if status.get("acknowledged") != 1:
            return refused(409, "not acknowledged according to Pushover", "receipt")
        device = str(status.get("acknowledged_by_device") or "")
        how = "from Pushover" + (f" on device {device}" if device.isprintable() and device else "")
        ack = Acknowledgement(page.incident, page.person, how[:200], f"pushover {receipt}")
        return CallbackAnswer(200, "", "application/json", ack)
