"""The paging targets' callbacks (docs/oncall.md, "Paging targets"): ``POST
/api/v1/callbacks/{type}/{token}`` for ``twilio`` (the digits of a call), ``pushover`` (an
emergency notification's receipt, acknowledged) and ``ntfy`` (the notification's Acknowledge
button).

No API token: the vendor (or the phone) cannot carry one. The token in the path names the
target that paged, the incident and the person, signed with that target's key
(``core/paging``); the target checks it and the vendor's own proof (Twilio's signature,
Pushover's receipt) in its ``callback``. An acknowledgement goes through ``service.act`` as
any person's action: one transaction with its timeline entry ("acknowledged by <person> by
phone ..."), its outbox rows and the answer kept for its Idempotency-Key, the vendor's id of
the answer (the CallSid, the receipt), so a repeated callback acknowledges once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl

from aiohttp import web

from bridge.core.actions import Transition
from bridge.core.paging import CALLBACK_PREFIX, Acknowledgement, CallbackAnswer, token_target
from bridge.http.errors import HTTPError, store_unavailable
from bridge.service import AppState, act
from bridge.store.interface import Idempotency, StoreUnavailable

log = logging.getLogger("bridge.http.callbacks")

TYPES = ("twilio", "pushover", "ntfy")
PATH = CALLBACK_PREFIX + "/{type}/{token}"
MAX_BODY = 16 * 1024  # Twilio's Gather post and Pushover's receipt are a few hundred bytes


@runtime_checkable
class CallbackTarget(Protocol):
    """A paging target as this route sees it (http imports no target)."""

    type_name: str

    async def callback(
        self, token: str, form: Mapping[str, str], headers: Mapping[str, str]
    ) -> CallbackAnswer: ...

    def answer(self, ack: Acknowledgement, status: int, error: str) -> CallbackAnswer: ...


def _response(answer: CallbackAnswer) -> web.Response:
    return web.Response(
        status=answer.status,
        text=answer.body,
        content_type=answer.content_type,
        charset="utf-8",
    )


async def _form(request: web.Request) -> dict[str, str]:
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise HTTPError(413, f"the body is larger than {MAX_BODY} bytes")
    ctype = request.content_type
    if raw.strip() and ctype not in ("application/x-www-form-urlencoded", "text/plain", ""):
        raise HTTPError(415, "expected a form (application/x-www-form-urlencoded)")
    if ctype != "application/x-www-form-urlencoded":
        return {}  # ntfy's action posts no form
    try:
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
    except (UnicodeDecodeError, ValueError):
        raise HTTPError(400, "not a valid form", field="body") from None


async def page_callback(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    type_name = request.match_info["type"]
    token = request.match_info["token"]
    if type_name not in TYPES:
        raise HTTPError(404, f"unknown callback type (one of {', '.join(TYPES)})", field="type")
    form = await _form(request)
    name = token_target(token)
    target = state.runtime.targets.get(name) if name is not None else None
    if (
        target is None
        or getattr(target, "type_name", None) != type_name
        or not isinstance(target, CallbackTarget)
    ):
        # the same answer as a bad signature: a token tells nothing of the rules
        raise HTTPError(401, "unknown or expired token", field="token")
    answer = await target.callback(token, form, dict(request.headers))
    ack = answer.ack
    if ack is None:
        if answer.status >= 400:
            log.warning("callback %s refused: %s", type_name, answer.status)
        return _response(answer)
    digest = hashlib.sha256(f"acknowledge {ack.incident} {ack.person}".encode()).hexdigest()
    idem = Idempotency(scope=f"callback {type_name}", key=ack.key[:200], request=digest)
    command = Transition(ack.person, "acknowledge", ack.how)
    try:
        done = await act(state, ack.incident, command, idempotency=idem)
    except StoreUnavailable:
        raise store_unavailable() from None
    error = str(done.body.get("error", "")) if done.status != 200 else ""
    return _response(target.answer(ack, done.status, error))
