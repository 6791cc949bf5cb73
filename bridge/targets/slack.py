"""``slack``: the Slack Web API with a bot token.

``general`` and ``stakeholders`` tiers post to ``channel``; with ``thread_updates`` the first
message of an incident starts a thread and later ones reply in it (status changes, status
updates and escalations are also broadcast to the channel). The ``incident`` tier gets a
dedicated channel per incident: ``conversations.create`` (``name_taken`` -> a numbered suffix),
invite the role holders, set the topic (severity, status, commander), bookmark the runbook and
the incident page, then post every event there; whoever takes a role later is invited with the
next message. Progress is returned in ``state`` after every step -- also on failure -- so a
retry resumes where the failed try stopped: it never creates a second channel, invites anyone
twice or adds a bookmark again.

Slack limits each Web API method on its own (``METHOD_INTERVAL_S``, its tiers) and posts per
channel: every call takes its turn in the target's ``Buckets`` first, and a rate-limited
answer holds only its method (or channel) for the ``Retry-After`` it gave. The topic and the
bookmarks are niceties: when their method has no turn free they are left for a later message
instead of holding this one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import Field

from bridge.core.chat import BUTTON_ACKNOWLEDGE, message_buttons
from bridge.core.secrets import Secret
from bridge.delivery.markup import escape_slack, truncate
from bridge.delivery.protocol import (
    DeliveryError,
    DeliveryResult,
    Digest,
    Notification,
    PermanentError,
    RateLimited,
    RetryableError,
)
from bridge.targets import _http
from bridge.targets.base import Target, TargetConfig
from bridge.targets.slack_webhook import SECTION_LIMIT, slack_message

NAME_MAX = 80
MAX_TEXT = 40_000  # chat.postMessage's text
MAX_BLOCKS = 50
TOPIC_MAX = 250
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_BROADCAST = {
    "severity_changed",
    "mitigated",
    "resolved",
    "closed",
    "reopened",
    "update",
    "escalated",
}
_IGNORED_INVITE = {"slack_already_in_channel", "slack_cant_invite_self"}
# Least seconds between two calls of a method, from Slack's published tiers: Tier 2 about 20 a
# minute, Tier 3 about 50, Tier 4 about 100. chat.postMessage is limited per channel instead
# (the target's min_interval_s).
METHOD_INTERVAL_S = {
    "conversations.create": 3.0,
    "conversations.setTopic": 3.0,
    "bookmarks.add": 3.0,
    "bookmarks.list": 1.2,
    "conversations.invite": 1.2,
    "users.lookupByEmail": 0.6,
}
# Slack lets a method's calls come in short bursts; after a rate-limited answer the method is
# paced without (``_http.Buckets``).
METHOD_BURST = 3
# How long a call of a message that cannot go without it may wait for its turn; longer, and
# the row waits in the outbox instead (the worker's other sends are not held meanwhile).
MAX_CALL_WAIT_S = 2.0
# A rate-limited answer without Retry-After holds its method this long.
DEFAULT_RETRY_AFTER_S = 5.0


class SlackConfig(TargetConfig):
    token: Secret
    api_url: str = "https://slack.com/api"
    channel: str | None = None
    channel_prefix: str = Field(default="inc", pattern=r"^[a-z0-9_-]{1,20}$")
    private: bool = False
    invite: list[str] = Field(default_factory=list)
    users: dict[str, str] = Field(default_factory=dict)
    thread_updates: bool = True
    incident_mode: Literal["channel", "thread"] = "channel"
    max_chars: int = Field(default=SECTION_LIMIT, ge=100, le=SECTION_LIMIT)


def channel_name(prefix: str, incident_id: Any, title: str, suffix: int = 0) -> str:
    """``inc-42-high-error-rate-checkout``: lowercase letters, digits, ``-`` and ``_``,
    at most 80 characters, never ending in ``-``."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9_]+", "-", ascii_title.lower()).strip("-_")
    head = f"{prefix}-{incident_id}"
    tail = f"-{suffix}" if suffix else ""
    room = NAME_MAX - len(head) - len(tail) - 1
    slug = slug[:room].rstrip("-_") if room > 0 else ""
    return (f"{head}-{slug}" if slug else head)[: NAME_MAX - len(tail)] + tail


def topic_for(incident: Mapping[str, Any]) -> str:
    commander = ", ".join((incident.get("roles") or {}).get("commander") or []) or "unassigned"
    text = (
        f"{incident.get('severity', '')} | {incident.get('status', '')} | IC: {commander}"
        f" | {incident.get('title', '')}"
    )
    return truncate(escape_slack(text), TOPIC_MAX, "slack")


def actions_block(event: str, incident: Mapping[str, Any]) -> dict[str, Any] | None:
    """Acknowledge (until someone has), I'm commander and Resolve, on the messages that open or
    move an open incident; ``value`` is the incident's id, ``action_id`` what the button does
    (core/chat.py ``BUTTONS``: the chat routes act on them as the person who pressed)."""
    buttons = message_buttons(event, incident)
    if not buttons:
        return None
    value = str(incident.get("id", ""))
    elements: list[dict[str, Any]] = []
    for action_id, label in buttons:
        button: dict[str, Any] = {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": label},
            "value": value,
        }
        if action_id == BUTTON_ACKNOWLEDGE:
            button["style"] = "primary"
        elements.append(button)
    return {"type": "actions", "block_id": f"incident-{value}", "elements": elements}


class SlackTarget(Target):
    type_name = "slack"
    markup = "slack"
    min_interval_s = 1.0  # the API allows about this rate per channel
    Config = SlackConfig
    config: SlackConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buckets = _http.Buckets()

    def _scope(self, method: str, payload: Mapping[str, Any]) -> tuple[str, float, int]:
        """The limit a call counts against: its channel's for a post (one message per
        ``min_interval_s``, no burst), else its method's."""
        if method == "chat.postMessage":
            return f"{method}:{payload.get('channel', '')}", self.pacing_s, 1
        return method, METHOD_INTERVAL_S.get(method, 1.2), METHOD_BURST

    async def call(
        self,
        method: str,
        payload: Mapping[str, Any],
        *,
        form: bool = False,
        max_wait: float = MAX_CALL_WAIT_S,
    ) -> dict[str, Any]:
        """One Web API call, in its method's (or channel's) turn; ``form`` for read methods,
        which do not take JSON bodies. A rate-limited answer holds that scope for its
        Retry-After and raises ``RateLimited`` naming it."""
        scope, interval, burst = self._scope(method, payload)
        # a call that may wait keeps its turn when refused; a nicety (max_wait 0) is left out
        await self.buckets.acquire(
            scope, interval, max_wait=max_wait, burst=burst, reserve=max_wait > 0
        )
        try:
            return await self._call(method, payload, form=form)
        except RateLimited as exc:
            after = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER_S
            self.buckets.block(scope, after)
            raise RateLimited(exc.reason, after, scope=scope) from None

    async def _call(self, method: str, payload: Mapping[str, Any], *, form: bool) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.config.token.reveal()}"}
        url = f"{self.config.api_url.rstrip('/')}/{method}"
        if form:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            data = urlencode({k: str(v) for k, v in payload.items()}).encode()
            resp = await _http.post(
                self.deps, url, data=data, headers=headers, timeout_s=self.config.timeout_s
            )
        else:
            resp = await _http.post(
                self.deps, url, json=payload, headers=headers, timeout_s=self.config.timeout_s
            )
        _http.check(resp, self.deps, vendor="slack")
        data = resp.json()
        return data if isinstance(data, dict) else {}

    def payload(self, n: Notification, channel: str) -> dict[str, Any]:
        msg = slack_message(self.render(n).body, self.config.max_chars)
        buttons = actions_block(n.event, n.incident)
        if buttons is not None:
            msg["blocks"] = [*msg["blocks"], buttons]
        return {"channel": channel, **msg, "unfurl_links": False, "unfurl_media": False}

    async def send(self, notification: Notification) -> DeliveryResult:
        # A call refused for a turn too far away keeps that turn for this incident
        # (``_http.Buckets``); each send runs in its own task, so this is its own.
        _http.TICKET.set(f"{notification.tier}:{notification.incident.get('id')}")
        n = notification
        state = dict(n.state)
        create = n.tier == "incident" and self.config.incident_mode == "channel"
        if create:
            channel = await self._dedicated(n, state)
        elif self.config.channel:
            channel = self.config.channel
        else:
            raise PermanentError("no_channel")
        payload = self.payload(n, channel)
        # incident_mode "thread": the incident's "channel" is a thread in the configured one
        threaded = not create and (self.config.thread_updates or n.tier == "incident")
        if threaded and state.get("ts") and n.event not in ("opened",):
            payload["thread_ts"] = state["ts"]
            payload["reply_broadcast"] = n.event in _BROADCAST
        try:
            data = await self.call("chat.postMessage", payload)
        except DeliveryError as exc:
            exc.state = state
            raise
        ts = str(data.get("ts", ""))
        if threaded and not state.get("ts") and ts:
            state["ts"] = ts
        return DeliveryResult(state=state, provider_ids={"channel": channel, "ts": ts})

    async def send_digest(self, digest: Digest) -> DeliveryResult:
        """Several incidents in one message to ``channel`` (a storm): top level, no buttons,
        one section per block of lines (a section holds at most 3,000 characters)."""
        if not self.config.channel:
            raise PermanentError("no_channel")
        body = self.render_digest(digest).body
        blocks: list[dict[str, Any]] = []
        chunk = ""
        for line in body.splitlines():
            line = truncate(line, self.config.max_chars, "slack")
            if chunk and len(chunk) + 1 + len(line) > self.config.max_chars:
                blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
                chunk = ""
            chunk = f"{chunk}\n{line}" if chunk else line
        if chunk:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
        payload = {
            "channel": self.config.channel,
            "text": body[:MAX_TEXT],
            "blocks": blocks[:MAX_BLOCKS],
            "unfurl_links": False,
            "unfurl_media": False,
        }
        data = await self.call("chat.postMessage", payload)
        return DeliveryResult(
            provider_ids={"channel": self.config.channel, "ts": str(data.get("ts", ""))}
        )

    async def _dedicated(self, n: Notification, state: dict[str, Any]) -> str:
        """Create and set up the incident's channel once; keep its topic current. Each step
        is written into ``state`` as soon as it succeeded, so a retry skips it."""
        try:
            created = "channel" not in state
            if created:
                state["channel"], state["channel_name"] = await self._create(n.incident)
            await self._invite(state, n.incident)
            if not state.get("setup"):
                await self._bookmarks(state, n.incident, fresh=created)
            topic = topic_for(n.incident)
            if state.get("topic") != topic and await self._set_topic(state["channel"], topic):
                state["topic"] = topic
        except DeliveryError as exc:
            exc.state = dict(state)
            raise
        return str(state["channel"])

    async def _nicety(self, method: str, payload: Mapping[str, Any]) -> bool | None:
        """A call the message can go without (topic, bookmarks): True when done, False when
        refused for good, None when its method has no turn now or was rate-limited (tried
        again with a later message)."""
        try:
            await self.call(method, payload, max_wait=0.0)
        except RateLimited:
            return None
        except PermanentError as exc:
            self.deps.logger.warning(
                "slack target %s: %s failed: %s", self.name, method, exc.reason
            )
            return False
        return True

    async def _set_topic(self, channel: str, topic: str) -> bool:
        """True when the topic is settled (set, or refused: a stale topic is no reason to
        hold the message nor to ask again for the same text)."""
        done = await self._nicety("conversations.setTopic", {"channel": channel, "topic": topic})
        return done is not None

    async def _create(self, incident: Mapping[str, Any]) -> tuple[str, str]:
        for suffix in range(10):
            name = channel_name(
                self.config.channel_prefix,
                incident.get("id", "x"),
                str(incident.get("title", "")),
                suffix + 1 if suffix else 0,
            )
            try:
                data = await self.call(
                    "conversations.create", {"name": name, "is_private": self.config.private}
                )
            except PermanentError as exc:
                if exc.reason == "slack_name_taken":
                    continue
                raise
            channel_id = str((data.get("channel") or {}).get("id") or "")
            if not channel_id:
                raise RetryableError("slack_bad_response")
            return channel_id, name
        raise PermanentError("slack_name_taken")

    async def _invite(self, state: dict[str, Any], incident: Mapping[str, Any]) -> None:
        """Invite ``invite`` and the role holders not invited yet: everyone on the channel's
        first message, later whoever took a role since. ``state["invited"]`` maps each person
        whose invite is settled (invited, already there, no Slack user, refused) to the handle
        it was settled with, so nobody is invited twice -- again only if their handle changes.
        Invites are best effort: only a retryable failure holds the message back."""
        names: list[str] = list(self.config.invite)
        for holders in (incident.get("roles") or {}).values():
            names.extend(holders or [])
        known = incident.get("people") or {}
        settled: dict[str, str] = dict(state.get("invited") or {})
        pending = {p: self._handle(p, known) for p in _unique(names)}
        pending = {p: h for p, h in pending.items() if settled.get(p) != h}
        if not pending:
            return
        try:
            users: dict[str, list[str]] = {}  # user id -> the people it stands for
            for person, handle in pending.items():
                user = await self._user_id(person, handle)
                if user is None:  # no Slack user: warned once, not looked up again
                    settled[person] = handle
                else:
                    users.setdefault(user, []).append(person)
            if not users:
                return
            # One call for all; when it is refused (one bad id refuses them all, an id already
            # in the channel too), one call per user. A refused user is not invited again.
            ids, channel = list(users), str(state["channel"])
            if not await self._invite_call(channel, ids, quiet=len(ids) > 1) and len(ids) > 1:
                for user in ids:
                    await self._invite_call(channel, [user], quiet=False)
            for people in users.values():
                for person in people:
                    settled[person] = pending[person]
        finally:
            state["invited"] = settled

    async def _invite_call(self, channel: str, users: list[str], *, quiet: bool) -> bool:
        """``conversations.invite``; False when refused (logged unless ``quiet``)."""
        try:
            await self.call("conversations.invite", {"channel": channel, "users": ",".join(users)})
        except PermanentError as exc:
            if exc.reason in _IGNORED_INVITE and len(users) == 1:
                return True
            if not quiet:
                self.deps.logger.warning(
                    "slack target %s: invite failed: %s", self.name, exc.reason
                )
            return False
        return True

    def _handle(self, person: str, people: Mapping[str, Any]) -> str:
        """How to find the person in Slack: the target's ``users`` map first (an override),
        then the handle the rotations give (``handles: {slack: U…}``, or an e-mail), then the
        name itself (an id or an address)."""
        handles = people.get(person) or {}
        return str(
            self.config.users.get(person) or handles.get("slack") or handles.get("email") or person
        )

    async def _user_id(self, person: str, handle: str) -> str | None:
        """The Slack user id of ``handle``: itself when it is one, looked up when it is an
        e-mail address."""
        if _USER_ID.match(handle):
            return handle
        if "@" in handle:
            try:
                data = await self.call("users.lookupByEmail", {"email": handle}, form=True)
            except PermanentError as exc:  # e.g. the users:read.email scope is missing
                if exc.reason == "slack_users_not_found":
                    self.deps.logger.warning(
                        "slack target %s: no Slack user for %s", self.name, person
                    )
                else:
                    self.deps.logger.warning(
                        "slack target %s: lookup of %s failed: %s", self.name, person, exc.reason
                    )
                return None
            user = data.get("user") or {}
            return str(user.get("id")) if user.get("id") else None
        self.deps.logger.warning("slack target %s: no Slack handle for %s", self.name, person)
        return None

    async def _bookmarks(
        self, state: dict[str, Any], incident: Mapping[str, Any], *, fresh: bool
    ) -> None:
        """Bookmark the runbook and the incident page, each once: ``state["bookmarks"]`` keeps
        the links added. On a channel this send did not create, a bookmark may have been added
        by a try whose outcome was never recorded (the service stopped): the channel's
        bookmarks are read once first. ``setup`` when none is left to add."""
        channel = str(state["channel"])
        links: list[tuple[str, str]] = []
        for alert in incident.get("alerts") or []:
            runbook = (alert.get("annotations") or {}).get("runbook_url")
            if runbook:
                links.append(("Runbook", str(runbook)))
                break
        if incident.get("url"):
            links.append(("Incident page", str(incident["url"])))
        done: list[str] = list(state.get("bookmarks") or [])
        todo = [
            (title, link)
            for title, link in links
            if link.startswith(("http://", "https://")) and link not in done
        ]
        add_interval = METHOD_INTERVAL_S["bookmarks.add"]
        if todo and self.buckets.ready_in("bookmarks.add", add_interval, METHOD_BURST) > 0:
            return  # no turn now: with a later message (nothing read for nothing)
        if todo and not fresh and not state.get("bookmarks_read"):
            try:
                data = await self.call("bookmarks.list", {"channel_id": channel}, max_wait=0.0)
            except RateLimited:
                return  # with a later message
            except PermanentError:
                data = {}
            there = {str(b.get("link")) for b in data.get("bookmarks") or [] if b.get("link")}
            done.extend(link for _, link in todo if link in there)
            state["bookmarks_read"] = True
            todo = [(title, link) for title, link in todo if link not in there]
        for title, link in todo:
            added = await self._nicety(
                "bookmarks.add",
                {"channel_id": channel, "title": title, "type": "link", "link": link},
            )
            if added is None:
                break  # no turn now: the rest with a later message
            done.append(link)  # added, or refused for good: not asked again
            state["bookmarks"] = done
        else:
            state["setup"] = True
        state["bookmarks"] = done


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))
