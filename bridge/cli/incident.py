"""``incident-bridge incident ...``: list and show incidents and act on them, through the running
service's API (``docs/api.md``, "People's actions"); nothing here touches the database.

Text output is for people: a table, an incident's page, one line per change. ``-o json`` prints
the API's answer as it came, for scripts. A change carries an ``Idempotency-Key``
(``--idempotency-key``, or one made per invocation), so the one retry after a lost connection or
a 503 changes nothing twice.
"""

from __future__ import annotations

import argparse
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from bridge.cli import apiclient
from bridge.cli.fmt import (
    api_parents,
    cut,
    fetch,
    ns_or_none,
    parse_id,
    parse_key,
    print_json,
    shown_text,
    shown_time,
    table,
)
from bridge.core.actions import MAX_TEXT, SINGLE_ROLES
from bridge.core.incidents import OPEN_STATUSES, STATUSES
from bridge.core.policy import ROLES, SEVERITIES
from bridge.core.timeutil import NS, parse_rfc3339

MOVES = {"ack": "acknowledge", "mitigate": "mitigate", "resolve": "resolve", "close": "close"}
DONE = {"acknowledge": "acknowledged", "mitigate": "mitigated", "resolve": "resolved"}
ENTRIES = {"note": "notes", "decision": "decisions", "action": "actions"}
ENTRY_LABELS = {"note": "note", "decision": "decision", "action": "action item"}
TITLE_WIDTH = 50
_SPAN = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_UNITS = (86400, 3600, 60, 1)


# --- arguments -------------------------------------------------------------------------------


def _next(text: str) -> tuple[str, Any]:
    """``--next``: a span (``30m``, ``1h``, ``1h30m``) from now, or an RFC 3339 time."""
    span = _SPAN.fullmatch(text.strip())
    if span and any(span.groups()):
        seconds = sum(int(n) * unit for n, unit in zip(span.groups(), _UNITS, strict=True) if n)
        return "next_update_in", seconds
    try:
        if parse_rfc3339(text) is not None:
            return "next_update_at", text
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"{text!r} is neither a span (30m, 1h, 1h30m) nor an RFC 3339 time"
    )


def _text(args: argparse.Namespace) -> str:
    return " ".join(args.text)


# --- how things read -------------------------------------------------------------------------


def _span(ns: int) -> str:
    """A duration in its two largest units: ``45s``, ``4m12s``, ``2h05m``, ``3d04h``."""
    seconds = max(ns // NS, 0)
    names = ("d", "h", "m", "s")
    for n, unit in enumerate(_UNITS[:-1]):
        if seconds >= unit:
            big, rest = divmod(seconds, unit)
            return f"{big}{names[n]}{rest // _UNITS[n + 1]:02d}{names[n + 1]}"
    return f"{seconds}s"


def _since(value: Any, until: int) -> str:
    start = ns_or_none(value)
    return "-" if start is None else _span(until - start)


def _holders(incident: dict[str, Any], role: str) -> str:
    names = (incident.get("roles") or {}).get(role) or []
    return ", ".join(shown_text(n) for n in names) if names else "unassigned"


# --- reading ---------------------------------------------------------------------------------


@apiclient.guarded
def _list(args: argparse.Namespace) -> int:
    query: dict[str, Any] = {
        name: values for name in ("status", "severity", "team") if (values := getattr(args, name))
    }
    if args.limit is not None:
        query["limit"] = str(args.limit)
    if args.before is not None:
        query["before"] = str(args.before)
    body = fetch(args, "/api/v1/incidents", query)
    if body is None:
        return 0
    incidents = body["incidents"]
    if not incidents:
        print("no incidents")
        return 0
    now = time.time_ns()
    rows = [["ID", "STATUS", "SEVERITY", "AGE", "TITLE", "COMMANDER", "TEAM"]]
    for i in incidents:
        title = cut(shown_text(i.get("title")), TITLE_WIDTH)
        rows.append(
            [
                f"#{i['id']}",
                shown_text(i["status"]),
                shown_text(i["severity"]),
                _since(i.get("opened_at"), now),
                title,
                _holders(i, "commander"),
                shown_text(i.get("team")),
            ]
        )
    print("\n".join(table(rows)))
    if body.get("next"):
        print(f"(more: --before {incidents[-1]['id']})")
    return 0


def _header(incident: dict[str, Any], now: int) -> list[str]:
    i = incident
    lines = [f"#{i['id']} {shown_text(i.get('title'))}", ""]
    fields = [
        ("status", shown_text(i["status"])),
        ("severity", shown_text(i["severity"])),
        ("team", shown_text(i.get("team"))),
        ("route", shown_text(i.get("route"))),
        ("service", shown_text(i.get("service"))),
        ("key", shown_text(i.get("key"))),
    ]
    if i.get("previous_id"):
        fields.append(("follows", f"#{i['previous_id']}"))
    opened = ns_or_none(i.get("opened_at"))
    fields.append(("started", shown_time(i.get("started_at")) + "  (the first alert)"))
    fields.append(("opened", shown_time(i.get("opened_at"))))
    for milestone in ("acknowledged", "mitigated", "resolved", "closed"):
        at = ns_or_none(i.get(f"{milestone}_at"))
        after = f"  after {_span(at - opened)}" if at is not None and opened is not None else ""
        fields.append((milestone, shown_time(i.get(f"{milestone}_at")) + after))
    if opened is not None and i["status"] in OPEN_STATUSES:
        fields.append(("open for", _span(now - opened)))
    lines += [f"{name:<13}{value}" for name, value in fields]
    return lines


def _next_update(incident: dict[str, Any], now: int) -> str | None:
    """When the liaison's next status update is due, while the incident is open."""
    if incident["status"] not in OPEN_STATUSES:
        return None
    due = None
    for entry in incident.get("timeline") or []:
        if entry.get("kind") == "status_update":
            due = (entry.get("data") or {}).get("next_update_at")
    at = ns_or_none(due)
    if at is None:
        return None
    when = f"in {_span(at - now)}" if at >= now else f"{_span(now - at)} overdue"
    return f"{shown_time(due)}  ({when})"


def _roles(incident: dict[str, Any]) -> list[str]:
    return ["Roles"] + [f"  {role:<11}{_holders(incident, role)}" for role in ROLES]


def _alerts(incident: dict[str, Any]) -> str:
    alerts = incident.get("alerts") or []
    firing = sum(1 for a in alerts if a.get("status") == "firing")
    text = f"Alerts       {incident.get('alert_count', len(alerts))}"
    text += f" ({firing} firing, {len(alerts) - firing} resolved)"
    left_out = incident.get("truncated_alerts") or 0
    if left_out:
        text += f"; {left_out} more that Alertmanager left out (state unknown)"
    return text


def _timeline(entries: list[dict[str, Any]]) -> list[str]:
    rows = []
    for e in entries:
        text = apiclient.printable(str(e.get("text") or ""))
        data = e.get("data") or {}
        corrects = data.get("corrects") if isinstance(data, dict) else None
        if corrects and f"#{corrects}" not in text:
            text = f"(corrects #{corrects}) {text}"
        if e.get("corrected_by"):
            corrected = apiclient.printable(str(e.get("corrected_text") or ""))
            text += f"\n[corrected by #{e['corrected_by']}: {corrected}]"
        head = [
            shown_time(e.get("time")),
            f"#{e.get('id')}",
            shown_text(e.get("actor")),
            shown_text(e["kind"]),
        ]
        rows.append((head, text))
    if not rows:
        return ["Timeline", "  (empty)"]
    widths = [max(len(head[n]) for head, _ in rows) for n in range(4)]
    lines = ["Timeline"]
    for head, text in rows:
        lead = "  " + "  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)) + "  "
        first, *more = text.split("\n")
        lines.append(lead + first)
        lines += [" " * len(lead) + line for line in more]
    return lines


@apiclient.guarded
def _show(args: argparse.Namespace) -> int:
    body = fetch(args, f"/api/v1/incidents/{args.id}")
    if body is None:
        return 0
    incident, now = body, time.time_ns()
    lines = _header(incident, now)
    due = _next_update(incident, now)
    if due:
        lines.append(f"{'next update':<13}{due}")
    lines += ["", *_roles(incident), "", _alerts(incident), ""]
    lines += _timeline(incident.get("timeline") or [])
    print("\n".join(lines))
    return 0


def _followup_lines(view: dict[str, Any]) -> list[str]:
    validation = view.get("validation")
    if validation is None:
        state = f"until {shown_time(view['stabilize_until'])}"
    elif validation.get("skipped"):
        state = f"skipped: {shown_text(validation['skipped'])}"
    elif validation.get("passed"):
        state = "passed"
    else:
        state = "failed: " + "; ".join(shown_text(r) for r in validation.get("reasons") or [])
    # The count is of the rows below: the API's open_items leaves the open action items out
    # (tracked in their tickets, they do not hold the incident's resolution), so say both.
    items = view["items"]
    open_rows = sum(1 for i in items if i["state"] == "open")
    actions = sum(1 for i in items if i["state"] == "open" and i["kind"] == "action")
    count = f"#{view['incident_id']}, {open_rows} item(s) open"
    if actions:
        which = (
            "an action item, tracked in its ticket"
            if actions == 1
            else ("action items, tracked in their tickets")
        )
        count += f" ({actions} of them {which})"
    fields = [("follow-up", count), ("stabilization", state)]
    if view.get("ticket_target"):
        fields.append(("tickets", shown_text(view["ticket_target"])))
    # "stabilization" is 13 characters: the names' column is as wide as the longest plus two.
    width = max(len(name) for name, _ in fields) + 2
    lines = [f"{name:<{width}}{value}" for name, value in fields]
    rows = [["ID", "STATE", "KIND", "ITEM", "OWNER", "TICKET"]]
    for item in view["items"]:
        ticket = item.get("ticket") or {}
        text = shown_text(item["text"])
        if item.get("reason"):
            text += f" ({shown_text(item['reason'])})"
        rows.append(
            [
                str(item["id"]),
                shown_text(item["state"]),
                shown_text(item["kind"]),
                text,
                shown_text(item.get("owner")),
                " ".join(shown_text(v) for v in (ticket.get("key"), ticket.get("url")) if v) or "-",
            ]
        )
    lines += ["", *table(rows)]
    for item in view["items"]:
        for finding in (item.get("detail") or {}).get("findings") or []:
            lines.append(f"  finding: {shown_text(finding.get('text'))}")
    return lines


@apiclient.guarded
def _followup(args: argparse.Namespace) -> int:
    view = fetch(args, f"/api/v1/incidents/{args.id}/followup")
    if view is not None:
        print("\n".join(_followup_lines(view)))
    return 0


# --- changing --------------------------------------------------------------------------------


def _told(incident_id: int, event: dict[str, Any]) -> str:
    """One line for a timeline entry a change wrote."""
    kind, data = event.get("kind"), event.get("data") or {}
    actor = shown_text(event.get("actor"))
    if kind in ENTRY_LABELS:
        line = f"#{incident_id} {ENTRY_LABELS[kind]} #{event.get('id')} added by {actor}"
        if data.get("owner"):
            line += f" (owner: {shown_text(data['owner'])})"
        if data.get("corrects"):
            line += f", correcting #{data['corrects']}"
        return line
    if kind == "status_update":
        line = f"#{incident_id} status update #{event.get('id')} sent by {actor}"
        if data.get("public"):
            line += " (public)"
        due = data.get("next_update_at")
        return line + (f"; next one due {shown_time(due)}" if due else "")
    text = shown_text(event.get("text"))
    if kind in ("status_changed", "acknowledged", "severity_changed", "dismissed"):
        text = text[:1].lower() + text[1:]  # "Acknowledged by alice" and the like
    return f"#{incident_id} {text}"


def _change(
    args: argparse.Namespace,
    action: str,
    body: dict[str, Any],
    unchanged: Callable[[dict[str, Any]], str],
) -> int:
    """POST ``body`` to the incident's ``action``; say what changed, or why nothing did."""
    if args.actor is not None:
        body["actor"] = args.actor
    key = args.idempotency_key or f"incident-bridge-cli-{uuid.uuid4()}"
    answer = apiclient.Client.from_args(args).post(
        f"/api/v1/incidents/{args.id}/{action}", body, idempotency_key=key
    )
    if not answer.ok:
        return apiclient.fail(answer.error())
    if args.output == "json":
        return print_json(answer.body)
    incident = answer.body["incident"]
    if not answer.body["changed"]:
        print(f"#{incident['id']}: nothing to change ({unchanged(incident)})")
    for event in answer.body["events"]:
        print(_told(incident["id"], event))
    return 0


@apiclient.guarded
def _add_item(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"text": _text(args), "kind": "action" if args.action else "check"}
    if args.owner is not None:
        body["owner"] = args.owner
    return _change(args, "followup/items", body, lambda _: "nothing written")


@apiclient.guarded
def _set_item(args: argparse.Namespace) -> int:
    action = {"check": "check", "waive": "waive", "reopen-item": "reopen"}[args.incident_command]
    body: dict[str, Any] = {"item": args.item}
    if action == "waive":
        body["reason"] = args.reason
    elif args.note is not None:
        body["note"] = args.note
    state = {"check": "done", "waive": "waived", "reopen": "open"}[action]
    return _change(args, f"followup/{action}", body, lambda _: f"the item is already {state}")


@apiclient.guarded
def _move(args: argparse.Namespace) -> int:
    move = MOVES[args.incident_command]
    body = {"reason": args.reason} if args.reason is not None else {}
    return _change(args, move, body, lambda _: f"already {DONE.get(move, 'closed')}")


@apiclient.guarded
def _dismiss(args: argparse.Namespace) -> int:
    return _change(args, "dismiss", {"reason": args.reason}, lambda _: "already dismissed")


@apiclient.guarded
def _role(args: argparse.Namespace) -> int:
    role = "responders" if args.role == "responder" else args.role
    if args.person is None and not args.release:
        # argparse cannot say "PERSON unless --release"; the same message and exit code.
        args.parser.error("PERSON is needed to give a role (or --release it)")
    body: dict[str, Any] = {"role": role, "release": args.release}
    if args.person is not None:
        body["person"] = args.person

    def unchanged(_: dict[str, Any]) -> str:
        if args.release:
            return f"nobody holds the role {role}"
        return f"{args.person} is already {'a responder' if role == 'responders' else role}"

    return _change(args, "roles", body, unchanged)


@apiclient.guarded
def _entry(args: argparse.Namespace) -> int:
    kind = args.incident_command
    body: dict[str, Any] = {"text": _text(args)}
    if args.corrects is not None:
        body["corrects"] = args.corrects
    if getattr(args, "owner", None) is not None:
        body["owner"] = args.owner
    return _change(args, ENTRIES[kind], body, lambda _: "nothing written")


@apiclient.guarded
def _update(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"text": _text(args)}
    if args.next is not None:
        name, value = args.next
        body[name] = value
    if args.public:
        body["public"] = True
    # given without --public too: the API's 400 then says that they need it
    if args.public_text is not None:
        body["public_text"] = args.public_text
    if args.public_title is not None:
        body["public_title"] = args.public_title
    return _change(args, "updates", body, lambda _: "nothing sent")


@apiclient.guarded
def _components(args: argparse.Namespace) -> int:
    body = {"add": args.add or [], "remove": args.remove or []}
    return _change(args, "components", body, lambda _: "nothing changed")


@apiclient.guarded
def _severity(args: argparse.Namespace) -> int:
    body = {"severity": args.severity, "reason": args.reason}
    return _change(args, "severity", body, lambda i: f"already {i['severity']}")


def _label(text: str) -> tuple[str, str]:
    """``--label k=v``."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


@apiclient.guarded
def _declare(args: argparse.Namespace) -> int:
    """Declare an incident (docs/incidents.md): the answer's incident in one line."""
    body: dict[str, Any] = {"title": args.title, "severity": args.severity}
    for name in ("team", "route", "description", "commander", "actor"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    if args.label:
        body["labels"] = dict(args.label)
    key = args.idempotency_key or f"incident-bridge-cli-{uuid.uuid4()}"
    answer = apiclient.Client.from_args(args).post("/api/v1/incidents", body, idempotency_key=key)
    if not answer.ok:
        return apiclient.fail(answer.error())
    if args.output == "json":
        return print_json(answer.body)
    i = answer.body["incident"]
    print(
        f"#{i['id']} declared ({shown_text(i['severity'])}, route {shown_text(i['route'])}, "
        f"{shown_text(i['status'])}): {shown_text(i['title'])}"
    )
    return 0


@apiclient.guarded
def _link(args: argparse.Namespace) -> int:
    body = {"group_key": args.group_key}
    return _change(args, "link", body, lambda _: "the group is linked into it already")


@apiclient.guarded
def _merge(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"into": args.into}
    if args.reason is not None:
        body["reason"] = args.reason
    return _change(args, "merge", body, lambda _: "merged already")


def _register_declared(command: Callable[..., argparse.ArgumentParser]) -> None:
    """``declare``, ``link``, ``merge`` (docs/incidents.md)."""
    declare = command("declare", "declare an incident by hand", _declare, writes=True)
    declare.add_argument("--title", required=True, help="what is wrong (1 to 500 characters)")
    declare.add_argument(
        "--severity", required=True, choices=SEVERITIES, metavar="SEV", help=", ".join(SEVERITIES)
    )
    declare.add_argument("--team", help="the team: the routes match it as the label team")
    declare.add_argument("--route", help="a route of the rules by name (else chosen by labels)")
    declare.add_argument("--description", help="what is known so far")
    declare.add_argument("--commander", help="who commands it (default: the route's)")
    declare.add_argument(
        "--label",
        action="append",
        type=_label,
        metavar="NAME=VALUE",
        help="a label, as an alert's (repeat); the routes match on them",
    )
    link = command("link", "link an Alertmanager group into the incident", _link, writes=True)
    link.add_argument(
        "--group-key", required=True, help="the group's groupKey, as its webhooks carry it"
    )
    merge = command("merge", "merge the incident into another, as its duplicate", _merge,
                    writes=True)  # fmt: skip
    merge.add_argument(
        "--into", required=True, type=parse_id, metavar="ID", help="the incident that stays"
    )
    merge.add_argument("--reason", help="why, recorded on both timelines")


# --- the commands ----------------------------------------------------------------------------


def register(commands: Any) -> None:
    group = commands.add_parser(
        "incident", help="list, show and act on incidents (through the service's API)"
    )
    sub = group.add_subparsers(dest="incident_command", metavar="COMMAND", required=True)
    common, write = api_parents()
    write.add_argument(
        "--idempotency-key",
        type=parse_key,
        metavar="KEY",
        help="the change's Idempotency-Key (default: a new one per invocation); the same key "
        "and request again changes nothing and gets the first answer",
    )

    def command(
        name: str, summary: str, func: Callable[[argparse.Namespace], int], *, writes: bool
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, parents=[write if writes else common], help=summary
        )
        parser.set_defaults(func=func, parser=parser)
        if name not in ("list", "declare"):
            parser.add_argument("id", type=parse_id, metavar="ID", help="the incident (12 or #12)")
        return parser

    listing = command("list", "incidents, newest first", _list, writes=False)
    listing.add_argument(
        "--status",
        action="append",
        metavar="STATUS",
        help=f"only these (repeat, or separate with commas): {', '.join(STATUSES)}",
    )
    listing.add_argument(
        "--severity",
        action="append",
        metavar="SEV",
        help=f"only these (repeat, or commas): {', '.join(SEVERITIES)}",
    )
    listing.add_argument("--team", action="append", help="only these teams (repeat, or commas)")
    listing.add_argument("--limit", type=int, help="at most this many (1-500, default 50)")
    listing.add_argument(
        "--before", type=parse_id, metavar="ID", help="continue below this incident"
    )
    command("show", "an incident: milestones, roles, alerts, timeline", _show, writes=False)

    what = {
        "ack": "acknowledge: you are on it",
        "mitigate": "mark it mitigated: it no longer hurts",
        "resolve": "resolve it by hand",
        "close": "close a resolved incident",
    }
    for name, summary in what.items():
        move = command(name, summary, _move, writes=True)
        move.add_argument("--reason", help="why, recorded on the timeline")
    dismiss = command(
        "dismiss",
        "close a false alarm or a test incident at once, without a postmortem",
        _dismiss,
        writes=True,
    )
    dismiss.add_argument("--reason", required=True, help="why it is dismissed (required)")

    role = command("role", "give a role, hand it over or --release it", _role, writes=True)
    role.add_argument("role", choices=[*ROLES, "responder"], metavar="ROLE", help=", ".join(ROLES))
    role.add_argument(
        "person",
        nargs="?",
        metavar="PERSON",
        help="who takes it (a hand-over for commander, scribe, liaison); with --release who "
        f"gives it up (default for {', '.join(SINGLE_ROLES)}: whoever holds it)",
    )
    role.add_argument("--release", action="store_true", help="give the role up")

    for kind in ENTRIES:
        entry = command(kind, f"add {'an' if kind == 'action' else 'a'} {ENTRY_LABELS[kind]}",
                        _entry, writes=True)  # fmt: skip
        entry.add_argument("text", nargs="+", metavar="TEXT", help=f"1 to {MAX_TEXT} characters")
        entry.add_argument(
            "--corrects",
            type=parse_id,
            metavar="N",
            help=f"the id of the earlier {kind} it corrects",
        )
        if kind == "action":
            entry.add_argument("--owner", help="who will do it")

    update = command("update", "send the liaison's status update", _update, writes=True)
    update.add_argument("text", nargs="+", metavar="TEXT")
    update.add_argument(
        "--next",
        type=_next,
        metavar="WHEN",
        help="when the next update is due: 30m, 1h, 1h30m from now, or an RFC 3339 time",
    )
    update.add_argument("--public", action="store_true", help="also on the public status page")
    update.add_argument(
        "--public-text", metavar="TEXT", help="what the status page shows (default: TEXT)"
    )
    update.add_argument(
        "--public-title", metavar="TITLE", help="the incident's title on the status page"
    )
    components = command(
        "components", "link the incident to status page components, or unlink it", _components,
        writes=True,
    )  # fmt: skip
    components.add_argument(
        "--add", action="append", metavar="COMPONENT", help="a component id of the rules"
    )
    components.add_argument(
        "--remove", action="append", metavar="COMPONENT", help="a component id to unlink"
    )

    command("followup", "the follow-up: checklist, findings, validation, tickets", _followup,
            writes=False)  # fmt: skip
    item = command("item", "add a follow-up item (--action: a permanent fix, ticketed)",
                   _add_item, writes=True)  # fmt: skip
    item.add_argument("text", nargs="+", metavar="TEXT", help=f"1 to {MAX_TEXT} characters")
    item.add_argument("--action", action="store_true", help="a permanent fix: opened as a ticket")
    item.add_argument("--owner", help="who will do it")
    for name, summary in (
        ("check", "check a follow-up item off"),
        ("waive", "waive a follow-up item (--reason required)"),
        ("reopen-item", "open a follow-up item again"),
    ):
        setter = command(name, summary, _set_item, writes=True)
        setter.add_argument("item", type=parse_id, metavar="ITEM", help="the item's id")
        if name == "waive":
            setter.add_argument("--reason", required=True, help="why it is not needed")
        else:
            setter.add_argument("--note", help="recorded with the change")

    _register_declared(command)
    severity = command("severity", "raise or lower the severity", _severity, writes=True)
    severity.add_argument("severity", choices=SEVERITIES, metavar="SEV", help=", ".join(SEVERITIES))
    severity.add_argument("--reason", required=True, help="why (required)")
