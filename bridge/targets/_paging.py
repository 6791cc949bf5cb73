"""What the paging targets (``twilio``, ``ntfy``, ``pushover``) share: which events page, who
is paged, and the signed callback URL through which the person acknowledges from the phone
(``bridge.core.paging``; the route is ``http/callbacks.py``, which reaches a target through
its ``callback`` and ``answer`` methods without importing it)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field

from bridge.core.paging import (
    Acknowledgement,
    CallbackAnswer,
    PageToken,
    callback_key,
    callback_url,
    decode_token,
    encode_token,
)
from bridge.delivery.protocol import Notification
from bridge.targets.base import Target, TargetConfig

# An incident in one of these no longer needs anyone woken: a coalesced or late page is skipped.
SETTLED = ("acknowledged", "mitigated", "resolved", "closed")
PageEvent = Literal["opened", "reopened", "escalated", "severity_changed", "reminder"]
PAGE_EVENTS: tuple[PageEvent, ...] = ("opened", "reopened", "escalated")


class PagingConfig(TargetConfig):
    # The bridge's address as the vendor reaches it (https://bridge.example.com): with it,
    # the page offers an acknowledgement through /api/v1/callbacks/<type>/<token>.
    callback_url: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$")
    # Who is paged: the actor of an acknowledgement from the phone (default: the target's name).
    person: str | None = Field(default=None, min_length=1, max_length=200)
    events: tuple[PageEvent, ...] = PAGE_EVENTS
    # How long a page's acknowledgement link stays valid.
    ack_valid_s: int = Field(default=86_400, ge=60, le=7 * 86_400)


class PagingTarget(Target):
    """A target that wakes a person: sends only for ``events`` while nobody acknowledged."""

    config: PagingConfig
    # What a person's handle for this target holds (a phone number, a topic, a user key).
    address: ClassVar[re.Pattern[str]] = re.compile(r"^.+$")

    def credential(self) -> str | None:
        """The secret the callback tokens are signed with; None: no acknowledgement link."""
        raise NotImplementedError

    @property
    def person(self) -> str:
        return self.config.person or self.name

    def pages(self, n: Notification) -> bool:
        """Whether ``n`` wakes the person: one of ``events`` (a coalesced message: any of its
        kinds), and the incident not acknowledged or past it by now."""
        if str(n.incident.get("status")) in SETTLED:
            return False
        return any(kind in self.config.events for kind in n.kinds)

    def recipients(self, n: Notification) -> list[tuple[str, str | None]]:
        """Whom ``n`` pages, as (person, address): the people an escalation step reaches
        through this target (their handle named like the target, else like its type, holds
        the address), else the configured ``person`` at the configured address (None)."""
        found: dict[str, str] = {}
        for event in n.events:
            data = event.get("data")
            handles = data.get("handles") if isinstance(data, Mapping) else None
            if event.get("kind") != "escalation_step" or not isinstance(handles, Mapping):
                continue
            for name, theirs in handles.items():
                if not isinstance(theirs, Mapping):
                    continue
                value = theirs.get(self.name, theirs.get(self.type_name))
                if isinstance(value, str) and self.address.match(value):
                    found.setdefault(str(name), value)
                elif value is not None:
                    # a handle that cannot be this target's address: said, never its value
                    self.deps.logger.warning(
                        "target %s: the %s handle of %s is not valid", self.name, self.name, name
                    )
        if found:
            return list(found.items())
        return [(self.person, None)]

    def _key(self) -> bytes | None:
        credential = self.credential()
        if not credential:
            return None
        return callback_key(self.type_name, self.name, credential)

    def ack_url(self, n: Notification, person: str | None = None) -> str | None:
        """The signed callback URL of this page to ``person`` (default: the configured one),
        or None without ``callback_url``."""
        key = self._key()
        if self.config.callback_url is None or key is None:
            return None
        token = PageToken(
            target=self.name,
            incident=int(n.incident["id"]),
            person=person or self.person,
            page=n.id,
            expires=int(self.deps.clock()) + self.config.ack_valid_s,
        )
        return callback_url(self.config.callback_url, self.type_name, encode_token(token, key))

    def verify_token(self, token: str) -> PageToken | None:
        key = self._key()
        if key is None or self.config.callback_url is None:
            return None
        page = decode_token(token, key, self.deps.clock())
        return page if page is not None and page.target == self.name else None

    def route_url(self, token: str) -> str:
        """The URL the vendor was given for ``token`` (what Twilio signs), whatever proxy the
        request came through."""
        assert self.config.callback_url is not None
        return callback_url(self.config.callback_url, self.type_name, token)

    async def callback(
        self, token: str, form: Mapping[str, str], headers: Mapping[str, str]
    ) -> CallbackAnswer:
        """The vendor's request to the callback URL: refused (401/400) unless the token and
        the vendor's proof hold; else the acknowledgement to apply (or none)."""
        raise NotImplementedError

    def answer(self, ack: Acknowledgement, status: int, error: str) -> CallbackAnswer:
        """The answer once the acknowledgement was applied: ``status`` is the action's (200,
        or the refusal's with its ``error``)."""
        return json_answer(ack, status, error)


def json_answer(ack: Acknowledgement, status: int, error: str) -> CallbackAnswer:
    import json

    body: dict[str, object] = {"incident": ack.incident, "acknowledged": status == 200}
    if status == 200:
        body["by"] = ack.person
    else:
        body["error"] = error
    return CallbackAnswer(200 if status == 200 else status, json.dumps(body), "application/json")


def refused(status: int, message: str, field: str) -> CallbackAnswer:
    """A callback refused, as the API's errors are (``{"error", "field"}``)."""
    import json

    body = json.dumps({"error": message, "field": field})
    return CallbackAnswer(status, body, "application/json")
