"""What the chat routes of both platforms share (``slack`` and ``mattermost`` import it; it
imports neither): the chat state kept in memory (signatures seen, a replay refused; the work
behind the answer), the request's body bounded and read, the person of a chat user id, a slash
command run through ``service.act`` and answered within ``ack_within_s`` (else "working on it"
and the answer through ``response_url``), and the posting to a ``response_url``.

A ``response_url`` is posted to only on the platform's own host (Slack: https://hooks.slack.com;
Mattermost: the server its ``mattermost`` targets post to), and no redirect is followed: a
verified request could still carry a URL of someone else's choosing (a Mattermost command's
body is only as secret as its token), and the answer says what happened to an incident.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from bridge.core import chat
from bridge.core.actions import Command
from bridge.core.declare import DeclareError
from bridge.core.oncall import until_instant
from bridge.core.secrets import Secret
from bridge.core.timeutil import format_ns
from bridge.core.values import MAX_ID
from bridge.service import AppState, act
from bridge.service import declare as declaring
from bridge.service import oncall as oncall_service
from bridge.store.interface import ActionAnswer, Idempotency, StoreUnavailable

# One logger for the chat routes of both platforms (the name the logs have always shown).
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


def never_500(
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
    return command_answer(text)


def refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def read_body(request: web.Request) -> bytes:
    declared = request.content_length or 0
    if declared > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=declared)
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(raw))
    return raw


def form_fields(raw: bytes) -> dict[str, str]:
    """A form's fields; a NUL (``%00``) kept as U+FFFD, as in JSON bodies (PostgreSQL's text
    cannot hold it)."""
    try:
        fields = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k.replace("\x00", "\ufffd"): v.replace("\x00", "\ufffd") for k, v in fields}


def request_digest(request: web.Request, raw: bytes) -> str:
    return hashlib.sha256(f"{request.method} {request.path}\n".encode() + raw).hexdigest()


def command_answer(text: str, *, public: bool = False) -> web.Response:
    """A slash command's answer: shown to its author only, or to the channel."""
    return web.json_response(
        {"response_type": "in_channel" if public else "ephemeral", "text": text}
    )


def answer_text(incident_id: int, answer: ActionAnswer | None, error: str = "") -> tuple[str, bool]:
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


async def post_to_response_url(
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


def person_of(state: AppState, platform: chat.Platform, user_id: str) -> chat.Person:
    """Who a chat user is, by their user id only (never a name the request carries)."""
    return chat.person(
        platform, user_id, people(state), read_only=state.settings.chat_read_only_users
    )


async def run_command(
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
    if parsed.declare is not None:
        if who.read_only:
            return command_answer(READ_ONLY)
        return await _declare(state, parsed.declare, idem)
    if parsed.oncall is not None:
        if who.read_only:
            return command_answer(READ_ONLY)
        return await _take_rotation(state, parsed.oncall, idem)
    if parsed.query == "oncall":
        return command_answer(_oncall_text(state))
    if parsed.query == "help" or incident_id is None:
        return command_answer(chat.HELP)
    if parsed.query == "status":
        summary = await state.store.queries.incident_summary(incident_id)
        if summary is None:
            return command_answer(f"No incident #{incident_id}.")
        base = state.settings.base_url
        url = f"{base}/incidents/{incident_id}" if base else None
        return command_answer(chat.status_text(summary, url))
    if who.read_only:
        return command_answer(READ_ONLY)
    assert parsed.command is not None
    command: Command = parsed.command

    async def late(answer: ActionAnswer | None) -> None:
        text, public = answer_text(incident_id, answer)
        payload = {"response_type": "in_channel" if public else "ephemeral", "text": text}
        await post_to_response_url(request, platform, response_url, payload)

    try:
        done, answer = await _in_time(
            chat_state, act(state, incident_id, command, idempotency=idem), late
        )
    except StoreUnavailable:
        return command_answer(answer_text(incident_id, None)[0])
    if not done:
        return command_answer(f"Working on it: #{incident_id}, the answer follows.")
    text, public = answer_text(incident_id, answer)
    return command_answer(text, public=public)


async def _declare(
    state: AppState, wanted: chat.DeclareIncident, idem: Idempotency | None
) -> web.Response:
    """``/incident declare``: the new incident, routed by the rules (its severity, the route,
    team and labels given), answered to the channel with its id and link."""
    try:
        answer = await declaring.declare(
            state,
            actor=wanted.actor,
            title=wanted.title,
            severity=wanted.severity,  # type: ignore[arg-type]  # one of SEVERITIES (parse)
            labels=dict(wanted.labels),
            route=wanted.route,
            team=wanted.team,
            idempotency=idem,
        )
    except DeclareError as exc:
        return command_answer(f"Not declared: {exc.field}: {exc.message}")
    except StoreUnavailable:
        return command_answer("Not declared: the bridge cannot write now; try again.")
    incident = answer.body.get("incident")
    if answer.status != 201 or not isinstance(incident, Mapping):
        return command_answer(f"Not declared: {answer.body.get('error', answer.status)}")
    base = state.settings.base_url
    link = f" {base}/incidents/{incident['id']}" if base else ""
    text = (
        f"#{incident['id']} declared by {wanted.actor} ({incident['severity']}, route "
        f"{incident['route']}): {incident['title']}{link}"
    )
    return command_answer(text, public=True)


def _oncall_text(state: AppState) -> str:
    """``/incident oncall``: every rotation's holder, until when, and who is next."""
    lines = []
    for r in state.runtime.oncall_now(state.clock()):
        following = f", then {r.next.person}" if r.next is not None else ""
        lines.append(f"• {r.rotation}: {r.now.person} until {format_ns(r.now.end)}{following}")
    return "\n".join(lines) or "No rotations in the rules."


async def _take_rotation(
    state: AppState, wanted: chat.TakeRotation, idem: Idempotency | None
) -> web.Response:
    """``/incident oncall take ops until 18:00``: an override for the person who typed it,
    from now until that time read in the rotation's time zone (docs/oncall.md)."""
    rotation = state.runtime.rotations.get(wanted.rotation)
    if rotation is None:
        known = ", ".join(sorted(state.runtime.rotations)) or "none"
        return command_answer(f"Not taken: no rotation {wanted.rotation!r}; known: {known}.")
    now = state.clock()
    end = until_instant(wanted.until, rotation.timezone, now)
    if end is None:
        return command_answer(
            f"Not taken: until {wanted.until!r}: give a time of day (18:00, in "
            f"{rotation.timezone}) or an RFC 3339 time."
        )
    try:
        row, _ = await oncall_service.add_override(
            state,
            rotation=wanted.rotation,
            person=wanted.actor,
            start=now,
            end=end,
            reason=wanted.reason or "taken in chat",
            by=wanted.actor,
            # a platform's retry of the same command makes one override
            idempotency_key=None if idem is None else f"chat:{idem.scope}:{idem.key}",
        )
    except oncall_service.OnCallError as exc:
        return command_answer(f"Not taken: {exc.field}: {exc.message}")
    except StoreUnavailable:
        return command_answer("Not taken: the bridge cannot write now; try again.")
    local = datetime.fromtimestamp(row.end_at / 1e9, ZoneInfo(rotation.timezone))
    return command_answer(
        f"{row.person} holds {row.rotation} until {local:%Y-%m-%d %H:%M} {rotation.timezone} "
        f"(override #{row.id}).",
        public=True,
    )


def not_an_id(value: str) -> str:
    """What a button or command carrying something else than an incident id is told."""
    shown = value if len(value) <= 40 else value[:40] + "…"
    return f"{shown!r} is not an incident id: ids are plain digits, 1 to {MAX_ID}."
