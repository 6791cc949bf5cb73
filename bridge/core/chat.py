"""Chat commands, pure: the grammar of ``/incident ...`` (Slack and Mattermost), the buttons on
the bridge's messages, the messages marked for the timeline, who a chat user is, and Slack's
request signature. No I/O: ``http/chat/`` verifies, parses with these functions and hands the
core command to ``service.act`` with the person as the actor.

The grammar::

    /incident [<id>|#<id>] <verb> [arguments]

In an incident's dedicated channel the id may be left out. Mentions come in Slack's escaped form
(``<@U123>`` or ``<@U123|name>``) or Mattermost's (``@name``). An id is plain ASCII digits
within the store's range (``values.parse_id``); a first word of other digits (``²``, ``١٢``,
30 of them) is answered as a bad id, never taken for a verb nor passed on.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from bridge.core.actions import (
    MAX_TEXT,
    AddEntry,
    AssignRole,
    ChangeSeverity,
    Command,
    Dismiss,
    Move,
    PostUpdate,
    Transition,
)
from bridge.core.policy import SEVERITIES
from bridge.core.values import MAX_ID, immutable, parse_id

Platform = Literal["slack", "mattermost"]
Query = Literal["status", "help", "oncall"]

HELP = """\
*/incident* acts on the incident of this channel; elsewhere give its id first: `/incident 42 ack`
• `ack` - acknowledge
• `role commander|scribe|liaison|responder [@user]` - take a role, or give it to someone
• `note <text>` - a note on the timeline
• `decision <text>` - a decision on the timeline
• `action <text> [@owner]` - an action item
• `update <text>` - the liaison's status update for stakeholders
• `severity sev1|sev2|sev3|sev4 [reason]` - raise or lower the severity
• `mitigate|resolve|close [reason]` - move the status
• `dismiss <reason>` - a false alarm or a test: closed at once, no postmortem, no MTTM/MTTR
• `declare sev1|sev2|sev3|sev4 [route=R] [team=T] [label=value...] <title>` - declare a new incident (no id)
• `oncall` - who is on call; `oncall take <rotation> until 18:00 [reason]` - hold a rotation until then (its time zone)
• `status` - where the incident stands
• `help` - this message"""

# Slack: signatures older (or newer) than this are refused, as Slack's documentation advises.
MAX_SKEW_S = 300
SIGNATURE_VERSION = "v0"

_MOVES: dict[str, Move] = {
    "ack": "acknowledge",
    "acknowledge": "acknowledge",
    "mitigate": "mitigate",
    "resolve": "resolve",
    "close": "close",
}
_ROLES = {
    "commander": "commander",
    "ic": "commander",
    "scribe": "scribe",
    "liaison": "liaison",
    "responder": "responders",
    "responders": "responders",
}
_ENTRIES: dict[str, Literal["note", "decision", "action"]] = {
    "note": "note",
    "decision": "decision",
    "action": "action",
}
_SLACK_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
# The handle that holds a person's Mattermost user name, for @mentions (``mattermost``: the id).
MM_USERNAME = "mattermost_username"
_MM_MENTION = re.compile(r"^@([a-z0-9][a-z0-9._-]{0,63})$", re.IGNORECASE)
# ``declare sev2 team=payments service=checkout <title>``: a label name (Prometheus's), then a
# value without spaces.
_DECLARE_LABEL = re.compile(r"^([a-zA-Z_][a-zA-Z0-9_]{0,127})=(\S{1,256})$")
# Messages marked for the timeline by their first word.
_MARKER = re.compile(r"^\s*(note|decision)\s*:\s*(.+)$", re.IGNORECASE | re.DOTALL)

# The buttons of the bridge's Slack messages: action_id -> what it does.
BUTTON_ACKNOWLEDGE = "incident.acknowledge"
BUTTON_COMMANDER = "incident.commander"
BUTTON_RESOLVE = "incident.resolve"
BUTTONS: Mapping[str, str] = {
    BUTTON_ACKNOWLEDGE: "Acknowledge",
    BUTTON_COMMANDER: "I'm commander",
    BUTTON_RESOLVE: "Resolve",
}
# The messages that carry the buttons, while the incident is open (every chat target's).
_BUTTONED = {"opened", "reopened", "escalated", "acknowledged", "mitigated"}
_OPEN = {"triggered", "acknowledged", "mitigated"}


def message_buttons(event: str, incident: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(action_id, label) of the buttons a chat target puts on a message: Acknowledge (until
    someone has), I'm commander and Resolve on the messages that open or move an open
    incident; none on the others, nor without a numeric incident id."""
    if event not in _BUTTONED or incident.get("status") not in _OPEN:
        return []
    if parse_id(str(incident.get("id", ""))) is None:
        return []
    shown = [BUTTON_COMMANDER, BUTTON_RESOLVE]
    if incident.get("status") == "triggered":
        shown.insert(0, BUTTON_ACKNOWLEDGE)
    return [(action_id, BUTTONS[action_id]) for action_id in shown]


@immutable
class Person:
    """Who acts: the name known to the rules (or ``slack:<id>``), and whether they may write."""

    name: str
    read_only: bool = False


@immutable
class DeclareIncident:
    """``/incident declare sev2 Checkout is slow``: a new incident, routed by the rules as one
    declared through the API (docs/incidents.md)."""

    actor: str
    severity: str
    title: str
    route: str | None = None
    team: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


@immutable
class TakeRotation:
    """``/incident oncall take ops until 18:00 [reason]``: the person who types it holds the
    rotation from now until that time, read in the rotation's time zone (docs/oncall.md)."""

    actor: str
    rotation: str
    until: str  # as typed: HH:MM, or an RFC 3339 time
    reason: str


@immutable
class Parsed:
    """A command line understood: a core command for ``incident`` (None: the channel's), or a
    query (``status``, ``help``) that changes nothing, or a new incident to declare."""

    incident_id: int | None
    command: Command | None = None
    query: Query | None = None
    declare: DeclareIncident | None = None
    oncall: TakeRotation | None = None


@immutable
class ParseError:
    """Why the line was not understood; shown with the help, only to its author."""

    message: str

    @property
    def text(self) -> str:
        return f"{self.message}\n\n{HELP}"


def person(
    platform: Platform,
    user_id: str,
    people: Mapping[str, Mapping[str, str]],
    *,
    read_only: Iterable[str] = (),
) -> Person:
    """The person behind a chat user: the name whose handle (``handles: {slack: U123}``,
    ``{mattermost: <user id>}``) is this user's id; unknown: ``slack:<id>``. Only the id: a
    Mattermost request's ``user_name`` is whatever its owner chose (anyone can rename
    themselves ``alice``), so it never names a person. ``read_only`` names people (or
    ``slack:<id>``, or bare user ids) who can only look."""
    found = None
    for name, handles in sorted(people.items()):
        if user_id and handles.get(platform) == user_id:
            found = name
            break
    name = found or f"{platform}:{user_id}"
    ro = set(read_only)
    return Person(name, bool(ro & {name, user_id, f"{platform}:{user_id}"}))


def mention(token: str, platform: Platform, people: Mapping[str, Mapping[str, str]]) -> str | None:
    """The person a mention names (``<@U123|name>``, ``<@U123>``, ``@name``), or None when the
    token is not a mention."""
    m = _SLACK_MENTION.match(token)
    if m:
        return person("slack", m.group(1), people).name
    m = _MM_MENTION.match(token)
    if m and platform == "mattermost":  # Slack escapes real mentions; a bare @word is text
        # Mattermost sends a mention as the name typed: it names whoever holds that user name
        # (``handles: {mattermost_username: alice}``); it only says who is meant, never who acts.
        username = m.group(1).lower()
        for name, handles in sorted(people.items()):
            if (handles.get(MM_USERNAME) or "").lstrip("@").lower() == username:
                return name
        return f"mattermost:@{username}"
    return None


def parse(
    text: str,
    actor: str,
    *,
    platform: Platform = "slack",
    people: Mapping[str, Mapping[str, str]] | None = None,
    channel_incident: int | None = None,
) -> Parsed | ParseError:
    """``/incident``'s text, from ``actor``, into a command (see the module's grammar).
    ``channel_incident``: the incident whose dedicated channel the command was typed in."""
    people = people or {}
    words = text.split()
    incident_id = channel_incident
    skip = 1
    digits = words[0].removeprefix("#") if words else ""
    if digits.isnumeric():  # any script's digits, superscripts, fractions: meant as an id
        incident_id = parse_id(digits)
        if incident_id is None:
            return ParseError(
                f"{words[0]!r} is not an incident id: give its number in plain digits, "
                f"1 to {MAX_ID} (`/incident 42 ack`)."
            )
        words, skip = words[1:], 2
    if not words:
        return Parsed(incident_id, query="help")
    verb, args = words[0].lower(), words[1:]
    tail = _tail(text, skip)  # the arguments, as typed
    if verb == "help":
        return Parsed(incident_id, query="help")
    if verb == "declare":
        return _declare(args, tail, actor, platform, people, with_id=skip == 2)
    if verb == "oncall":
        return _oncall(args, tail, actor, platform, people, incident_id)
    if incident_id is None:
        return ParseError(
            f"Which incident? Outside an incident's channel give its id: `/incident 42 {verb}`."
        )
    if verb == "status":
        return Parsed(incident_id, query="status")
    if len(tail) > MAX_TEXT:
        return ParseError(f"At most {MAX_TEXT} characters.")
    if verb in _MOVES:
        move = _MOVES[verb]
        return Parsed(incident_id, Transition(actor, move, clean(tail, platform, people)))
    if verb == "dismiss":
        reason = clean(tail, platform, people)
        if not reason.strip():
            return ParseError("Why? `dismiss` needs a reason: `/incident dismiss false alarm`.")
        return Parsed(incident_id, Dismiss(actor, reason))
    if verb == "role":
        if not args or args[0].lower() not in _ROLES:
            return ParseError("Which role? `role commander|scribe|liaison|responder [@user]`.")
        role = _ROLES[args[0].lower()]
        if len(args) > 2:
            return ParseError("`role` takes a role and at most one @user.")
        who = actor
        if len(args) == 2:
            named = mention(args[1], platform, people)
            if named is None:
                return ParseError(f"{args[1]!r} is not a @mention of a user.")
            who = named
        return Parsed(incident_id, AssignRole(actor, role, who))
    if verb in _ENTRIES:
        kind = _ENTRIES[verb]
        owner = None
        body = tail
        if kind == "action" and args:
            named = mention(args[-1], platform, people)
            if named is not None:
                owner = named
                body = tail[: tail.rfind(args[-1])].rstrip()
        if not body.strip():
            return ParseError(f"`{verb}` needs a text: `/incident {verb} <text>`.")
        return Parsed(
            incident_id, AddEntry(actor, kind, clean(body, platform, people), owner=owner)
        )
    if verb == "update":
        if not tail.strip():
            return ParseError("`update` needs a text: `/incident update <text>`.")
        return Parsed(incident_id, PostUpdate(actor, clean(tail, platform, people)))
    if verb in ("severity", "sev"):
        if not args or args[0].lower() not in SEVERITIES:
            return ParseError(f"Which severity? One of {', '.join(SEVERITIES)}.")
        reason = clean(_tail(tail, 1), platform, people) or "changed in chat"
        return Parsed(incident_id, ChangeSeverity(actor, args[0].lower(), reason))
    return ParseError(f"Unknown command {words[0]!r}.")


# A declared incident's title at most (as the API's, http/declare.TITLE_MAX).
DECLARE_TITLE_MAX = 500


def _declare(
    args: list[str],
    tail: str,
    actor: str,
    platform: Platform,
    people: Mapping[str, Mapping[str, str]],
    *,
    with_id: bool,
) -> Parsed | ParseError:
    """``declare sev2 [route=R] [team=T] [label=value...] <title>``: a new incident, whatever
    the channel. The ``name=value`` words right after the severity choose the route and team
    and give labels (for the rules' matchers); the title is the rest."""
    if with_id:
        return ParseError(
            "`declare` opens a new incident: give no id (`/incident declare sev2 ...`)."
        )
    if not args or args[0].lower() not in SEVERITIES:
        return ParseError(
            f"Which severity? `/incident declare sev2 <title>`: one of {', '.join(SEVERITIES)}."
        )
    given: dict[str, str] = {}
    for word in args[1:]:
        m = _DECLARE_LABEL.match(word)
        if m is None:
            break
        if m.group(1) in given:
            return ParseError(f"`{m.group(1)}=` is given twice.")
        given[m.group(1)] = m.group(2)
    title = clean(_tail(tail, 1 + len(given)), platform, people).strip()
    if not title:
        return ParseError("`declare` needs a title: `/incident declare sev2 Checkout is slow`.")
    if len(title) > DECLARE_TITLE_MAX:
        return ParseError(f"A title is at most {DECLARE_TITLE_MAX} characters.")
    route = given.pop("route", None)
    team = given.pop("team", None)
    return Parsed(
        None,
        declare=DeclareIncident(
            actor, args[0].lower(), title, route, team, tuple(sorted(given.items()))
        ),
    )


def _oncall(
    args: list[str],
    tail: str,
    actor: str,
    platform: Platform,
    people: Mapping[str, Mapping[str, str]],
    incident_id: int | None,
) -> Parsed | ParseError:
    """``oncall``: who is on call; ``oncall take ROTATION until TIME [reason]``: hold it."""
    if not args:
        return Parsed(incident_id, query="oncall")
    usage = "`/incident oncall take <rotation> until 18:00 [reason]`"
    if args[0].lower() != "take":
        return ParseError(f"Unknown `oncall` command {args[0]!r}: {usage}.")
    if len(args) < 4 or args[2].lower() != "until":
        return ParseError(f"Which rotation, until when? {usage}.")
    reason = clean(_tail(tail, 4), platform, people).strip()
    if len(reason) > MAX_TEXT:
        return ParseError(f"At most {MAX_TEXT} characters.")
    return Parsed(incident_id, oncall=TakeRotation(actor, args[1], args[3], reason))


_SLACK_LINK = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


def clean(
    text: str, platform: Platform = "slack", people: Mapping[str, Mapping[str, str]] | None = None
) -> str:
    """Slack's escaped text as people read it: ``<@U123|x>`` -> ``@alice`` (the person),
    ``<#C1|ops>`` -> ``#ops``, ``<https://x|label>`` -> ``label (https://x)``, ``<!here>`` ->
    ``@here``, then ``&lt;`` ``&gt;`` ``&amp;`` -> ``<`` ``>`` ``&``. Mattermost's text is
    plain already."""
    if platform != "slack":
        return text

    def one(m: re.Match[str]) -> str:
        target, label = m.group(1), m.group(2)
        if target.startswith("@"):
            return "@" + person("slack", target[1:], people or {}).name
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!"):
            return "@" + (label or target[1:].split("^")[0])
        if label and label != target:
            return f"{label} ({target})"
        return target

    text = _SLACK_LINK.sub(one, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _tail(text: str, skip: int) -> str:
    """``text`` after its first ``skip`` words, its inner spacing and newlines kept."""
    rest = text.strip()
    for _ in range(skip):
        parts = rest.split(None, 1)
        rest = parts[1] if len(parts) == 2 else ""
    return rest.strip()


def button_command(action_id: str, actor: str) -> Command | None:
    """The command of one of the bridge's buttons, or None for an unknown one."""
    if action_id == BUTTON_ACKNOWLEDGE:
        return Transition(actor, "acknowledge")
    if action_id == BUTTON_COMMANDER:
        return AssignRole(actor, "commander", actor)
    if action_id == BUTTON_RESOLVE:
        return Transition(actor, "resolve")
    return None


def marked_entry(
    text: str, people: Mapping[str, Mapping[str, str]] | None = None
) -> tuple[Literal["note", "decision"], str] | None:
    """A channel message meant for the timeline: ``note: ...`` or ``decision: ...`` (its Slack
    escapes made plain)."""
    m = _MARKER.match(text or "")
    if not m or not m.group(2).strip():
        return None
    kind: Literal["note", "decision"] = "note" if m.group(1).lower() == "note" else "decision"
    return kind, clean(m.group(2).strip(), "slack", people)


def pinned_text(text: str, permalink: str) -> str:
    """A pinned message's timeline text: its words and where it was said."""
    room = MAX_TEXT - len(permalink) - 3
    body = text.strip()
    if len(body) > room:
        body = body[: room - 1] + "…"
    return f"{body} ({permalink})" if permalink else body


def slack_permalink(channel: str, ts: str) -> str:
    """A link to a message that Slack opens in the workspace of whoever follows it."""
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``v0=`` and the hex HMAC-SHA256 of ``v0:{timestamp}:{body}`` (Slack's request signing)."""
    base = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def check_slack_signature(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now_s: float
) -> str | None:
    """None when the request is Slack's, signed now; else why not (for the log, never shown)."""
    if not timestamp or not signature:
        return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:  # "¹²": no int
        return "bad timestamp"
    if abs(now_s - int(timestamp)) > MAX_SKEW_S:
        return "stale timestamp"
    expected = slack_signature(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return "bad signature"
    return None


def status_text(incident: Mapping[str, object], url: str | None = None) -> str:
    """``status``: the incident in a few lines."""
    roles = incident.get("roles")
    roles = roles if isinstance(roles, Mapping) else {}

    def holders(role: str) -> str:
        names = roles.get(role) or []
        return (
            ", ".join(str(n) for n in names) if isinstance(names, list) and names else "unassigned"
        )

    head = (
        f"#{incident.get('id')} [{str(incident.get('severity', '')).upper()}] "
        f"{incident.get('title', '')}"
    )
    lines = [
        head,
        f"Status: {incident.get('status')} | Commander: {holders('commander')} | "
        f"Scribe: {holders('scribe')} | Liaison: {holders('liaison')}",
    ]
    if url:
        lines.append(url)
    return "\n".join(lines)
