"""Chat as a client of the actions (docs/chat.md): Slack's slash command, buttons and events,
Mattermost's slash command and buttons, ``/api/v1/chat/...``.

Every request is verified first (Slack: the v0 HMAC signature, within 5 minutes, a signature
seen before refused; Mattermost: the command token, in constant time), its body bounded, then
parsed by ``core/chat.py`` into a core command that ``service.act`` applies with the person as
its actor, under an idempotency key the platform gives (``trigger_id``, ``event_id``, else the
signature): a retry (``X-Slack-Retry-Num``) or a replay never acts twice, across restarts too
(the ``idempotency_keys`` table). Slack wants an answer within 3 s: an action that takes longer
than ``ack_within_s`` is answered "working on it" and finished through ``response_url``.

A ``response_url`` is posted to only on the platform's own host (Slack: https://hooks.slack.com;
Mattermost: the server its ``mattermost`` targets post to), and no redirect is followed: a
verified request could still carry a URL of someone else's choosing (a Mattermost command's
body is only as secret as its token), and the answer says what happened to an incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from aiohttp import web

from bridge.core import chat
from bridge.core.actions import AddEntry, Command
from bridge.core.secrets import Secret
from bridge.core.values import MAX_ID, parse_id
from bridge.service import AppState, act
from bridge.store import StoreUnavailable
from bridge.store.actions import ActionAnswer, Idempotency
from bridge.store.chat import ChannelIncident, incident_of_channel
from bridge.store.queries import incident_summary

log = logging.getLogger("bridge.http.chat")

PREFIX = "/api/v1/chat"
# A chat request's body at most; Slack's and Mattermost's are a few KiB.
MAX_BODY = 64 * 1024
# Signatures remembered to refuse a replay (beyond them, and across restarts, idempotency keys).
MAX_SEEN = 10_000
READ_ONLY = "You can only look: `status` and `help` work for you, changes do not."
T = TypeVar("T")

# Where a response_url may point: (scheme, host, port). Slack's are documented as
# https://hooks.slack.com/...; Mattermost's are on its server (the mattermost targets' URL).
Origin = tuple[str, str, int]
SLACK_ORIGINS: frozenset[Origin] = frozenset({("https", "hooks.slack.com", 443)})
_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> Origin | None:
    """(scheme, host, port) of an http(s) URL without user info; None for anything else."""
    if not url.isascii() or not url.isprintable() or " " in url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    return scheme, parts.hostname.lower(), port or _PORTS[scheme]


def allowed_response_url(
    url: str, platform: chat.Platform, extra: set[str], mattermost: set[Origin]
) -> bool:
    """Whether the bridge may post to ``url`` as ``platform``'s response_url: Slack's own host
    over https, or the Mattermost server's (``mattermost``: its targets' origins); ``extra``
    origins (``http://127.0.0.1:8080``) only where a test has put its fake."""
    where = origin(url)
    if where is None:
        return False
    own = SLACK_ORIGINS if platform == "slack" else mattermost
    return where in own or where in {o for o in map(origin, extra) if o is not None}


@dataclass
class ChatState:
    """What the chat routes keep in memory: signatures seen in the last minutes (a replay is
    refused), and the work finished after the answer (awaited at shutdown)."""

    ack_within_s: float = 2.0
    seen: OrderedDict[str, float] = field(default_factory=OrderedDict)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    # Origins (``http://127.0.0.1:8080``) a response_url may point at besides the platform's
    # own host: empty in the service (no setting fills it); tests put their loopback fakes here.
    response_origins: set[str] = field(default_factory=set)

    def replayed(self, signature: str, now_s: float) -> bool:
        """True when ``signature`` was seen within the window; else it is remembered."""
        while self.seen:
            oldest, at = next(iter(self.seen.items()))
            if now_s - at <= 2 * chat.MAX_SKEW_S and len(self.seen) < MAX_SEEN:
                break
            self.seen.pop(oldest)
        if signature in self.seen:
            return True
        self.seen[signature] = now_s
        return False

    def keep(self, coro: Coroutine[Any, Any, Any], *, guard: bool = True) -> asyncio.Task[Any]:
        """Run ``coro`` behind the answer, referenced until done; ``guard``: its failure is
        logged here (else whoever awaits the task gets it)."""
        task = asyncio.create_task(_guarded(coro) if guard else coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


KEY: web.AppKey[ChatState] = web.AppKey("chat", ChatState)


async def _guarded(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        return await coro
    except Exception:
        log.exception("chat: work behind the answer failed")
        return None


def _never_500(
    handler: Callable[[web.Request], Awaitable[web.Response]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A command or a button always gets an answer its author can read: never a 500 (Slack
    would show "dispatch_failed"); refusals of the request itself (401, 404, 413) stay."""

    @functools.wraps(handler)
    async def handle(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except StoreUnavailable:
            return _said(request, "The bridge cannot read or write now; try again in a moment.")
        except Exception:
            log.exception("chat: %s failed", request.path)
            return _said(request, "Something went wrong in the bridge; its log says what.")

    return handle


def _said(request: web.Request, text: str) -> web.Response:
    """``text`` as the route's answer: a command's message, a Mattermost button's ephemeral
    line; Slack's buttons take an empty 200 (their body is not shown)."""
    if request.path.endswith("/mattermost/actions"):
        return web.json_response({"ephemeral_text": text})
    if request.path.endswith("/slack/interactions"):
        return web.Response(status=200)
    return _message(text)


def install(app: web.Application, state: AppState) -> None:
    """The chat routes whose secret is configured (the others answer 404), and the chat state."""
    chat_state = ChatState()
    app[KEY] = chat_state

    async def drain(_: web.Application) -> None:
        await chat_state.drain()

    app.on_cleanup.append(drain)
    if state.settings.slack_signing_secret is not None:
        app.router.add_post(f"{PREFIX}/slack/commands", slack_command)
        app.router.add_post(f"{PREFIX}/slack/interactions", slack_interaction)
        app.router.add_post(f"{PREFIX}/slack/events", slack_event)
    if state.settings.mattermost_command_token is not None:
        app.router.add_post(f"{PREFIX}/mattermost/commands", mattermost_command)
        app.router.add_post(f"{PREFIX}/mattermost/actions", mattermost_action)


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> bytes:
    declared = request.content_length or 0
    if declared > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=declared)
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(raw))
    return raw


def _form(raw: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return {}


def _digest(request: web.Request, raw: bytes) -> str:
    return hashlib.sha256(f"{request.method} {request.path}\n".encode() + raw).hexdigest()


async def _slack_verified(request: web.Request) -> tuple[AppState, ChatState, bytes, str]:
    """The state, the body and its signature, once Slack's signature checks out."""
    state = request.app[AppState.KEY]
    secret = state.settings.slack_signing_secret
    if secret is None:
        raise web.HTTPNotFound()
    raw = await _body(request)
    signature = request.headers.get("X-Slack-Signature", "")
    now_s = state.clock() / 1e9
    why = chat.check_slack_signature(
        secret.reveal(),
        request.headers.get("X-Slack-Request-Timestamp"),
        signature,
        raw,
        now_s,
    )
    if why is None and request.app[KEY].replayed(signature, now_s):
        why = "a signature seen before (a replay)"
    if why is not None:
        log.warning("slack request to %s refused: %s", request.path, why)
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "not a valid request from Slack"}),
            content_type="application/json",
        )
    return state, request.app[KEY], raw, signature


def _message(text: str, *, public: bool = False) -> web.Response:
    """A slash command's answer: shown to its author only, or to the channel."""
    return web.json_response(
        {"response_type": "in_channel" if public else "ephemeral", "text": text}
    )


def _answer_text(
    incident_id: int, answer: ActionAnswer | None, error: str = ""
) -> tuple[str, bool]:
    """What to say of an action's answer, and whether the channel should see it."""
    if answer is None:
        return (
            f"Not done on #{incident_id}: {error or 'the bridge cannot write now; try again'}",
            False,
        )
    body = answer.body
    if answer.status != 200:
        return f"Not done on #{incident_id}: {body.get('error', answer.status)}", False
    events = [str(e.get("text", "")) for e in body.get("events") or [] if isinstance(e, Mapping)]
    if events:
        return f"#{incident_id}: " + "\n".join(events), True
    incident = body.get("incident") or {}
    status = incident.get("status", "") if isinstance(incident, Mapping) else ""
    return f"Nothing to change on #{incident_id} (it is {status}).", False


async def _in_time(
    chat_state: ChatState,
    work: Awaitable[T],
    late: Callable[[T | None], Awaitable[None]],
) -> tuple[bool, T | None]:
    """Run ``work``; (True, its result) when it is done within ``ack_within_s``, else
    (False, None): it goes on, and ``late`` gets its result (None: it failed)."""
    is_late = False

    async def run() -> T | None:
        try:
            result = await work
        except Exception:
            if not is_late:
                raise
            log.exception("chat: an action finished after the answer failed")
            await late(None)
            return None
        if is_late:
            await late(result)
        return result

    task = chat_state.keep(run(), guard=False)
    try:
        return True, await asyncio.wait_for(asyncio.shield(task), chat_state.ack_within_s)
    except TimeoutError:
        if task.done() and not task.cancelled() and task.exception() is None:
            return True, task.result()
        is_late = True
        return False, None


def _mattermost_origins(state: AppState) -> set[Origin]:
    """The Mattermost server, as the mattermost targets name it (their incoming webhook's URL
    is on the server that also makes the slash commands' response_url)."""
    found: set[Origin] = set()
    for target in state.runtime.targets.values():
        if getattr(target, "type_name", "") != "mattermost":
            continue
        url = getattr(getattr(target, "config", None), "url", None)
        if isinstance(url, Secret) and (where := origin(url.reveal())) is not None:
            found.add(where)
    return found


async def _post_json(
    request: web.Request, platform: chat.Platform, url: str, payload: Mapping[str, Any]
) -> None:
    """POST to a ``response_url`` (Slack, Mattermost) on the platform's own host, without
    following a redirect; failures are logged (never the URL: it holds a secret), never
    raised."""
    if not url:
        return
    state, chat_state = request.app[AppState.KEY], request.app[KEY]
    if not allowed_response_url(
        url, platform, chat_state.response_origins, _mattermost_origins(state)
    ):
        where = origin(url)
        log.warning(
            "chat: a %s response_url on %s refused: not the platform's own host%s",
            platform,
            where[1] if where else "no http(s) host",
            " (a mattermost target's URL names it)" if platform == "mattermost" else "",
        )
        return
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        session = state.deps.session
        if session is not None and not session.closed:
            async with session.post(
                url, json=payload, timeout=timeout, allow_redirects=False
            ) as resp:
                status = resp.status
        else:
            async with (
                aiohttp.ClientSession() as own,
                own.post(url, json=payload, timeout=timeout, allow_redirects=False) as resp,
            ):
                status = resp.status
        if 300 <= status < 400:
            log.warning("chat: response_url answered %d (a redirect, not followed)", status)
        elif status >= 300:
            log.warning("chat: response_url answered %d", status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("chat: response_url failed: %s", type(exc).__name__)


def people(state: AppState) -> dict[str, dict[str, str]]:
    """Names and their chat handles: the rotations' ``handles``, with the ``users`` map of the
    Slack targets over them (the same people the targets invite and mention)."""
    out = {name: dict(handles) for name, handles in state.runtime.people.items()}
    for target in state.runtime.targets.values():
        if getattr(target, "type_name", "") != "slack":
            continue
        users = getattr(getattr(target, "config", None), "users", None) or {}
        for name, user in users.items():
            if isinstance(name, str) and isinstance(user, str):
                out.setdefault(name, {})["slack"] = user
    return out


def _person(state: AppState, platform: chat.Platform, user_id: str) -> chat.Person:
    """Who a chat user is, by their user id only (never a name the request carries)."""
    return chat.person(
        platform, user_id, people(state), read_only=state.settings.chat_read_only_users
    )


async def _channel(state: AppState, channel: str) -> ChannelIncident | None:
    return await state.store.read(functools.partial(incident_of_channel, channel=channel))


async def _run_command(
    request: web.Request,
    platform: chat.Platform,
    parsed: chat.Parsed,
    who: chat.Person,
    idem: Idempotency | None,
    response_url: str,
) -> web.Response:
    """A parsed slash command, answered the way both platforms take it."""
    state, chat_state = request.app[AppState.KEY], request.app[KEY]
    incident_id = parsed.incident_id
    if parsed.query == "help" or incident_id is None:
        return _message(chat.HELP)
    if parsed.query == "status":
        summary = await state.store.read(
            functools.partial(incident_summary, incident_id=incident_id)
        )
        if summary is None:
            return _message(f"No incident #{incident_id}.")
        base = state.settings.base_url
        url = f"{base}/incidents/{incident_id}" if base else None
        return _message(chat.status_text(summary, url))
    if who.read_only:
        return _message(READ_ONLY)
    assert parsed.command is not None
    command: Command = parsed.command

    async def late(answer: ActionAnswer | None) -> None:
        text, public = _answer_text(incident_id, answer)
        payload = {"response_type": "in_channel" if public else "ephemeral", "text": text}
        await _post_json(request, platform, response_url, payload)

    try:
        done, answer = await _in_time(
            chat_state, act(state, incident_id, command, idempotency=idem), late
        )
    except StoreUnavailable:
        return _message(_answer_text(incident_id, None)[0])
    if not done:
        return _message(f"Working on it: #{incident_id}, the answer follows.")
    text, public = _answer_text(incident_id, answer)
    return _message(text, public=public)


# -- Slack ---------------------------------------------------------------------------------


@_never_500
async def slack_command(request: web.Request) -> web.Response:
    """``/incident ...`` from Slack (form-encoded, answered within 3 s)."""
    state, _, raw, signature = await _slack_verified(request)
    form = _form(raw)
    user_id = form.get("user_id", "")
    if not user_id:
        return _refuse(400, "no user_id")
    who = _person(state, "slack", user_id)
    try:
        channel = await _channel(state, form.get("channel_id", ""))
    except StoreUnavailable:
        return _message("The bridge cannot read now; try again.")
    parsed = chat.parse(
        form.get("text", ""),
        who.name,
        platform="slack",
        people=people(state),
        channel_incident=channel.incident_id if channel else None,
    )
    if isinstance(parsed, chat.ParseError):
        return _message(parsed.text)
    key = form.get("trigger_id") or signature
    idem = Idempotency("chat slack", key, _digest(request, raw))
    return await _run_command(request, "slack", parsed, who, idem, form.get("response_url", ""))


@_never_500
async def slack_interaction(request: web.Request) -> web.Response:
    """A button of the bridge's messages (``block_actions``); the message is updated through
    its ``response_url`` to say who did what."""
    state, chat_state, raw, signature = await _slack_verified(request)
    try:
        payload = json.loads(_form(raw).get("payload", ""))
    except ValueError:
        return _refuse(400, "payload: not JSON")
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
        return _refuse(400, "not a button of the bridge")
    incident_id = parse_id(value)
    who = _person(state, "slack", user_id)
    given = payload.get("message")
    message: dict[str, Any] = given if isinstance(given, dict) else {}
    refusal = READ_ONLY if who.read_only else None
    if incident_id is None:
        refusal = _not_an_id(value)  # told to the one who pressed; Slack ignores the body
    if refusal is not None or incident_id is None:
        ephemeral = {"response_type": "ephemeral", "replace_original": False, "text": refusal}
        chat_state.keep(_post_json(request, "slack", response_url, ephemeral))
        return web.Response(status=200)
    command = chat.button_command(action_id, who.name)
    assert command is not None
    key = str(payload.get("trigger_id") or signature)
    idem = Idempotency("chat slack", key, _digest(request, raw))

    async def finish(answer: ActionAnswer | None) -> None:
        assert incident_id is not None
        await _post_json(request, "slack", response_url, _updated(message, incident_id, answer))

    async def work() -> None:
        answer: ActionAnswer | None
        try:
            answer = await act(state, incident_id, command, idempotency=idem)
        except StoreUnavailable:
            answer = None
        await finish(answer)

    chat_state.keep(work())  # Slack ignores the answer's body: the message is updated instead
    return web.Response(status=200)


def _not_an_id(value: str) -> str:
    """What a button or command carrying something else than an incident id is told."""
    shown = value if len(value) <= 40 else value[:40] + "…"
    return f"{shown!r} is not an incident id: ids are plain digits, 1 to {MAX_ID}."


def _updated(
    message: Mapping[str, Any], incident_id: int, answer: ActionAnswer | None
) -> dict[str, Any]:
    """The message replaced: its blocks, the buttons that still apply, and a line saying who
    did what (the last few kept); when refused, an ephemeral answer to the one who pressed."""
    text, public = _answer_text(incident_id, answer)
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
        body = json.loads(raw)
    except ValueError:
        return _refuse(400, "not JSON")
    if not isinstance(body, dict):
        return _refuse(400, "not a JSON object")
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
        log.warning("slack event not recorded: store unavailable: %s", exc)
    except Exception:
        log.exception("slack event not recorded")


async def _record_marked(state: AppState, event: Mapping[str, Any]) -> None:
    kind = event.get("type")
    if kind == "message":
        if event.get("subtype") or event.get("bot_id"):
            return  # edits, joins, the bridge's own messages
        channel, ts, user = (str(event.get(k, "")) for k in ("channel", "ts", "user"))
        marked = chat.marked_entry(str(event.get("text", "")), people(state))
        if marked is None:
            return
        entry_kind, text = marked
    elif kind == "reaction_added" and event.get("reaction") == "pushpin":
        item = event.get("item") or {}
        if not isinstance(item, dict) or item.get("type") != "message":
            return
        channel, ts = str(item.get("channel", "")), str(item.get("ts", ""))
        user, text, entry_kind = str(event.get("item_user", "")), "", "note"
        if _person(state, "slack", str(event.get("user", ""))).read_only:
            return  # who pins must be allowed to write
    else:
        return
    if not channel or not ts:
        return
    found = await _channel(state, channel)
    if found is None or not state.runtime.chat_timeline(found.route):
        return
    target = state.runtime.targets.get(found.target)
    if kind == "reaction_added":
        fetched = await _message_of(target, channel, ts)
        if fetched is None:
            return
        user, text = fetched
        marked = chat.marked_entry(text, people(state))
        if marked is not None:
            entry_kind, text = marked
        else:
            text = chat.clean(text, "slack", people(state))
    who = _person(state, "slack", user) if user else None
    if who is None or who.read_only or not text.strip():
        return
    link = await _permalink(target, channel, ts)
    command = AddEntry(who.name, entry_kind, chat.pinned_text(text, link))
    # One entry per message: a 📌 and a "note:" on the same message, or Slack's retries.
    idem = Idempotency("chat slack", f"pin {channel} {ts}", "pin")
    answer = await act(state, found.incident_id, command, idempotency=idem)
    if answer.status != 200:
        log.warning("slack message not recorded: %s", answer.body.get("error"))


async def _message_of(target: Any, channel: str, ts: str) -> tuple[str, str] | None:
    """The author and text of a message, read with the Slack target's token."""
    call = getattr(target, "call", None)
    if call is None:
        log.warning("slack: no Slack target to read the pinned message with")
        return None
    try:
        data = await call(
            "conversations.history",
            {"channel": channel, "latest": ts, "inclusive": "true", "limit": 1},
            form=True,
        )
    except Exception as exc:
        log.warning("slack: reading the pinned message failed: %s", exc)
        return None
    messages = data.get("messages") or []
    if not messages or not isinstance(messages[0], dict) or messages[0].get("ts") != ts:
        return None
    return str(messages[0].get("user", "")), str(messages[0].get("text", ""))


async def _permalink(target: Any, channel: str, ts: str) -> str:
    call = getattr(target, "call", None)
    if call is not None:
        with contextlib.suppress(Exception):
            data = await call(
                "chat.getPermalink", {"channel": channel, "message_ts": ts}, form=True
            )
            link = data.get("permalink")
            if isinstance(link, str) and link.startswith("https://"):
                return link
    return chat.slack_permalink(channel, ts)


# -- Mattermost ----------------------------------------------------------------------------


def _mattermost_token(state: AppState) -> Secret:
    token = state.settings.mattermost_command_token
    if token is None:
        raise web.HTTPNotFound()
    return token


@_never_500
async def mattermost_command(request: web.Request) -> web.Response:
    """Mattermost's ``/incident`` (form-encoded; the command's token in the body, or as
    ``Authorization: Token ...``)."""
    state = request.app[AppState.KEY]
    token = _mattermost_token(state)
    raw = await _body(request)
    form = _form(raw)
    given = form.get("token") or request.headers.get("Authorization", "").removeprefix("Token ")
    if not given or not token.equals(given):
        log.warning("mattermost command refused: bad or missing token")
        return _refuse(401, "not a valid request from Mattermost")
    user_id = form.get("user_id", "")
    if not user_id:
        return _refuse(400, "no user_id")
    who = _person(state, "mattermost", user_id)
    parsed = chat.parse(form.get("text", ""), who.name, platform="mattermost", people=people(state))
    if isinstance(parsed, chat.ParseError):
        return _message(parsed.text)
    trigger = form.get("trigger_id")
    idem = Idempotency("chat mattermost", trigger, _digest(request, raw)) if trigger else None
    return await _run_command(
        request, "mattermost", parsed, who, idem, form.get("response_url", "")
    )


@_never_500
async def mattermost_action(request: web.Request) -> web.Response:
    """A button of an interactive message: ``context`` carries the action, the incident and
    the command's token (Mattermost does not sign these requests)."""
    state = request.app[AppState.KEY]
    token = _mattermost_token(state)
    raw = await _body(request)
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    context = body.get("context") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(context, dict):
        return _refuse(401, "not a valid request from Mattermost")
    given = str(context.get("token", ""))
    if not given or not token.equals(given):
        log.warning("mattermost action refused: bad or missing token")
        return _refuse(401, "not a valid request from Mattermost")
    action, incident = str(context.get("action", "")), str(context.get("incident", ""))
    user_id = str(body.get("user_id", ""))
    if action not in chat.BUTTONS or not user_id:
        return _refuse(400, "not a button of the bridge")
    incident_id = parse_id(incident)
    if incident_id is None:
        return web.json_response({"ephemeral_text": _not_an_id(incident)})
    who = _person(state, "mattermost", user_id)
    if who.read_only:
        return web.json_response({"ephemeral_text": READ_ONLY})
    command = chat.button_command(action, who.name)
    assert command is not None
    key = str(body.get("trigger_id") or "")
    idem = Idempotency("chat mattermost", key, _digest(request, raw)) if key else None
    try:
        answer: ActionAnswer | None = await act(state, incident_id, command, idempotency=idem)
    except StoreUnavailable:
        answer = None
    # The post is left as it is (the bridge's messages reach Mattermost through a webhook);
    # the one who pressed reads what was done, the channel reads it with the next message.
    return web.json_response({"ephemeral_text": _answer_text(incident_id, answer)[0]})
