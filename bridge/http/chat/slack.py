"""Slack's routes (docs/chat.md): the ``/incident`` slash command, the buttons of the bridge's
messages (the message then replaced through ``response_url``), and the Events API (messages
marked for the timeline in dedicated channels). Every request is verified first: the v0 HMAC
signature, within 5 minutes, a signature seen before refused.

The Slack target is reached only through ``SlackApi``, what these routes call on it (the
``slack`` target has that method; this layer does not import the targets).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from bridge.core import chat
from bridge.core.actions import AddEntry
from bridge.core.jsontext import without_nul
from bridge.core.values import parse_id
from bridge.http.chat import common
from bridge.service import AppState, act
from bridge.store.interface import ActionAnswer, ChannelIncident, Idempotency, StoreUnavailable


@runtime_checkable
class SlackApi(Protocol):
    """What the chat routes call on a ``slack`` target: one Web API method, in its turn (the
    target's rate limits), with the target's token; ``form`` for the read methods, which take
    no JSON body. ``isinstance`` tells a target that has it (a ``slack`` target) from one that
    does not."""

    async def call(
        self, method: str, payload: Mapping[str, Any], *, form: bool = False
    ) -> dict[str, Any]: ...


async def _slack_verified(request: web.Request) -> tuple[AppState, common.ChatState, bytes, str]:
    """The state, the body and its signature, once Slack's signature checks out."""
    state = request.app[AppState.KEY]
    secret = state.settings.slack_signing_secret
    if secret is None:
        raise web.HTTPNotFound()
    raw = await common.read_body(request)
    signature = request.headers.get("X-Slack-Signature", "")
    now_s = state.clock() / 1e9
    why = chat.check_slack_signature(
        secret.reveal(),
        request.headers.get("X-Slack-Request-Timestamp"),
        signature,
        raw,
        now_s,
    )
    if why is None and request.app[common.KEY].replayed(signature, now_s):
        why = "a signature seen before (a replay)"
    if why is not None:
        common.log.warning("slack request to %s refused: %s", request.path, why)
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "not a valid request from Slack"}),
            content_type="application/json",
        )
    return state, request.app[common.KEY], raw, signature


async def _channel(state: AppState, channel: str) -> ChannelIncident | None:
    return await state.store.chat.incident_of_channel(channel)


@common.never_500
async def slack_command(request: web.Request) -> web.Response:
    """``/incident ...`` from Slack (form-encoded, answered within 3 s)."""
    state, _, raw, signature = await _slack_verified(request)
    form = common.form_fields(raw)
    user_id = form.get("user_id", "")
    if not user_id:
        return common.refuse(400, "no user_id")
    who = common.person_of(state, "slack", user_id)
    try:
        channel = await _channel(state, form.get("channel_id", ""))
    except StoreUnavailable:
        return common.command_answer("The bridge cannot read now; try again.")
    parsed = chat.parse(
        form.get("text", ""),
        who.name,
        platform="slack",
        people=common.people(state),
        channel_incident=channel.incident_id if channel else None,
    )
    if isinstance(parsed, chat.ParseError):
        return common.command_answer(parsed.text)
    key = form.get("trigger_id") or signature
    idem = Idempotency("chat slack", key, common.request_digest(request, raw))
    return await common.run_command(
        request, "slack", parsed, who, idem, form.get("response_url", "")
    )


@common.never_500
async def slack_interaction(request: web.Request) -> web.Response:
    """A button of the bridge's messages (``block_actions``); the message is updated through
    its ``response_url`` to say who did what."""
    state, chat_state, raw, signature = await _slack_verified(request)
    try:
        payload = json.loads(common.form_fields(raw).get("payload", ""))
    except ValueError:
        return common.refuse(400, "payload: not JSON")
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return web.Response(status=200)  # other interactions: nothing to do
    actions = payload.get("actions") or []
    user = payload.get("user") or {}
    first = actions[0] if actions and isinstance(actions[0], dict) else {}
    action_id = str(first.get("action_id", ""))
    value = str(first.get("value", ""))
    user_id = str(user.get("id", "")) if isinstance(user, dict) else ""
    response_url = str(payload.get("response_url", ""))
    if not user_id or action_id not in chat.BUTTONS:
        return common.refuse(400, "not a button of the bridge")
    incident_id = parse_id(value)
    who = common.person_of(state, "slack", user_id)
    given = payload.get("message")
    message: dict[str, Any] = given if isinstance(given, dict) else {}
    refusal = common.READ_ONLY if who.read_only else None
    if incident_id is None:
        refusal = common.not_an_id(value)  # told to the one who pressed; Slack ignores the body
    if refusal is not None or incident_id is None:
        ephemeral = {"response_type": "ephemeral", "replace_original": False, "text": refusal}
        chat_state.keep(common.post_to_response_url(request, "slack", response_url, ephemeral))
        return web.Response(status=200)
    command = chat.button_command(action_id, who.name)
    assert command is not None
    key = str(payload.get("trigger_id") or signature)
    idem = Idempotency("chat slack", key, common.request_digest(request, raw))

    async def finish(answer: ActionAnswer | None) -> None:
        assert incident_id is not None
        await common.post_to_response_url(
            request, "slack", response_url, _updated(message, incident_id, answer)
        )

    async def work() -> None:
        answer: ActionAnswer | None
        try:
            answer = await act(state, incident_id, command, idempotency=idem)
        except StoreUnavailable:
            answer = None
        await finish(answer)

    chat_state.keep(work())  # Slack ignores the answer's body: the message is updated instead
    return web.Response(status=200)


def _updated(
    message: Mapping[str, Any], incident_id: int, answer: ActionAnswer | None
) -> dict[str, Any]:
    """The message replaced: its blocks, the buttons that still apply, and a line saying who
    did what (the last few kept); when refused, an ephemeral answer to the one who pressed."""
    text, public = common.answer_text(incident_id, answer)
    if not public:
        return {"response_type": "ephemeral", "replace_original": False, "text": text}
    incident = (answer.body.get("incident") if answer else None) or {}
    status = incident.get("status") if isinstance(incident, Mapping) else None
    blocks: list[dict[str, Any]] = []
    said: list[dict[str, Any]] = []
    for block in message.get("blocks") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "context":
            said.append(block)
        elif block.get("type") == "actions":
            kept = _buttons_now(block, status)
            if kept is not None:
                blocks.append(kept)
        else:
            blocks.append(block)
    said.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(text)}]})
    blocks = [*blocks[: 50 - MAX_SAID], *said[-MAX_SAID:]]
    original = str(message.get("text") or "")
    return {"replace_original": True, "text": original or text, "blocks": blocks}


# Lines saying who did what kept under a message.
MAX_SAID = 5


def _buttons_now(block: Mapping[str, Any], status: Any) -> dict[str, Any] | None:
    """The actions block with the bridge's buttons that still apply at ``status``: none once
    resolved or closed, no Acknowledge once acknowledged."""
    if status in ("resolved", "closed"):
        return None
    elements = [
        e
        for e in block.get("elements") or []
        if not (
            isinstance(e, dict)
            and e.get("action_id") == chat.BUTTON_ACKNOWLEDGE
            and status != "triggered"
        )
    ]
    return {**block, "elements": elements} if elements else None


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


async def slack_event(request: web.Request) -> web.Response:
    """Events API: the URL check, and messages marked for the timeline in dedicated channels
    (``message`` starting with ``note:``/``decision:``, ``reaction_added`` 📌)."""
    state, chat_state, raw, _ = await _slack_verified(request)
    try:
        body = json.loads(without_nul(raw))
    except ValueError:
        return common.refuse(400, "not JSON")
    if not isinstance(body, dict):
        return common.refuse(400, "not a JSON object")
    if body.get("type") == "url_verification":
        return web.json_response({"challenge": str(body.get("challenge", ""))})
    event = body.get("event")
    if body.get("type") == "event_callback" and isinstance(event, dict):
        chat_state.keep(_timeline_event(state, event))
    return web.Response(status=200)  # within 3 s: the work goes on behind the answer


async def _timeline_event(state: AppState, event: Mapping[str, Any]) -> None:
    try:
        await _record_marked(state, event)
    except StoreUnavailable as exc:
        common.log.warning("slack event not recorded: store unavailable: %s", exc)
    except Exception:
        common.log.exception("slack event not recorded")


async def _record_marked(state: AppState, event: Mapping[str, Any]) -> None:
    kind = event.get("type")
    if kind == "message":
        if event.get("subtype") or event.get("bot_id"):
            return  # edits, joins, the bridge's own messages
        channel, ts, user = (str(event.get(k, "")) for k in ("channel", "ts", "user"))
        marked = chat.marked_entry(str(event.get("text", "")), common.people(state))
        if marked is None:
            return
        entry_kind, text = marked
    elif kind == "reaction_added" and event.get("reaction") == "pushpin":
        item = event.get("item") or {}
        if not isinstance(item, dict) or item.get("type") != "message":
            return
        channel, ts = str(item.get("channel", "")), str(item.get("ts", ""))
        user, text, entry_kind = str(event.get("item_user", "")), "", "note"
        if common.person_of(state, "slack", str(event.get("user", ""))).read_only:
            return  # who pins must be allowed to write
    else:
        return
    if not channel or not ts:
        return
    found = await _channel(state, channel)
    if found is None or not state.runtime.chat_timeline(found.route):
        return
    # The channel's target, when it can call Slack's Web API (any target of this channel that
    # cannot is as if there were none: the message is not read, the permalink is built).
    target = state.runtime.targets.get(found.target)
    api = target if isinstance(target, SlackApi) else None
    if kind == "reaction_added":
        fetched = await _message_of(api, channel, ts)
        if fetched is None:
            return
        user, text = fetched
        marked = chat.marked_entry(text, common.people(state))
        if marked is not None:
            entry_kind, text = marked
        else:
            text = chat.clean(text, "slack", common.people(state))
    who = common.person_of(state, "slack", user) if user else None
    if who is None or who.read_only or not text.strip():
        return
    link = await _permalink(api, channel, ts)
    command = AddEntry(who.name, entry_kind, chat.pinned_text(text, link))
    # One entry per message: a 📌 and a "note:" on the same message, or Slack's retries.
    idem = Idempotency("chat slack", f"pin {channel} {ts}", "pin")
    answer = await act(state, found.incident_id, command, idempotency=idem)
    if answer.status != 200:
        common.log.warning("slack message not recorded: %s", answer.body.get("error"))


async def _message_of(api: SlackApi | None, channel: str, ts: str) -> tuple[str, str] | None:
    """The author and text of a message, read with the Slack target's token."""
    if api is None:
        common.log.warning("slack: no Slack target to read the pinned message with")
        return None
    try:
        data = await api.call(
            "conversations.history",
            {"channel": channel, "latest": ts, "inclusive": "true", "limit": 1},
            form=True,
        )
    except Exception as exc:
        common.log.warning("slack: reading the pinned message failed: %s", exc)
        return None
    messages = data.get("messages") or []
    if not messages or not isinstance(messages[0], dict) or messages[0].get("ts") != ts:
        return None
    return str(messages[0].get("user", "")), str(messages[0].get("text", ""))


async def _permalink(api: SlackApi | None, channel: str, ts: str) -> str:
    if api is not None:
        with contextlib.suppress(Exception):
            data = await api.call(
                "chat.getPermalink", {"channel": channel, "message_ts": ts}, form=True
            )
            link = data.get("permalink")
            if isinstance(link, str) and link.startswith("https://"):
                return link
    return chat.slack_permalink(channel, ts)
