"""``incident-bridge oncall``: who is on call now and next (``GET /api/v1/oncall``), and the
overrides of a rotation (``oncall override add|list|end``), through the running service's API.
A swap between two people is one override each way (two ``override add``)."""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from bridge.cli import apiclient
from bridge.cli.fmt import api_parents, fetch, print_json, shown_text, shown_time, table


@apiclient.guarded
def _show(args: argparse.Namespace) -> int:
    body = fetch(args, "/api/v1/oncall", {"at": args.at} if args.at else None)
    if body is None:
        return 0
    rotations = body["rotations"]
    if not rotations:
        print("no rotations in the rules")
        return 0
    rows = [["ROTATION", "ON CALL", "SINCE", "HANDS OFF", "NEXT"]]
    for r in rotations:
        following = r["next"]
        rows.append(
            [
                shown_text(r["rotation"]),
                shown_text(r["now"]["person"]),
                shown_time(r["now"]["start"]),
                shown_time(r["handoff_at"]),
                shown_text(following["person"] if following else None),
            ]
        )
    print("\n".join(table(rows)))
    return 0


def _override_line(o: dict[str, Any]) -> list[str]:
    ended = f"ended by {shown_text(o['ended_by'])}" if o.get("ended_at") else ""
    return [
        f"#{o['id']}",
        shown_text(o["person"]),
        shown_time(o["start"]),
        shown_time(o["ends_at"]),
        shown_text(o["created_by"]),
        shown_text(o["reason"] or "-") + (f" ({ended})" if ended else ""),
    ]


HEADER = ["ID", "PERSON", "FROM", "UNTIL", "BY", "REASON"]


@apiclient.guarded
def _add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"person": args.person, "end": args.until, "reason": args.reason}
    if args.start is not None:
        body["start"] = args.start
    if args.actor is not None:
        body["actor"] = args.actor
    key = f"incident-bridge-cli-{uuid.uuid4()}"  # a retry after a lost answer makes one
    answer = apiclient.Client.from_args(args).post(
        f"/api/v1/oncall/{_path(args.rotation)}/overrides", body, idempotency_key=key
    )
    if not answer.ok:
        return apiclient.fail(answer.error())
    if args.output == "json":
        return print_json(answer.body)
    o = answer.body
    print(
        f"override #{o['id']}: {shown_text(o['person'])} holds {shown_text(o['rotation'])} "
        f"from {shown_time(o['start'])} until {shown_time(o['end'])}"
    )
    return 0


@apiclient.guarded
def _list(args: argparse.Namespace) -> int:
    query = {"all": "true"} if args.all else None
    body = fetch(args, f"/api/v1/oncall/{_path(args.rotation)}/overrides", query)
    if body is None:
        return 0
    if not body["overrides"]:
        print("no overrides")
        return 0
    print("\n".join(table([HEADER, *(_override_line(o) for o in body["overrides"])])))
    return 0


@apiclient.guarded
def _end(args: argparse.Namespace) -> int:
    answer = apiclient.Client.from_args(args).delete(
        f"/api/v1/oncall/{_path(args.rotation)}/overrides/{args.id}"
    )
    if not answer.ok:
        return apiclient.fail(answer.error())
    if args.output == "json":
        return print_json(answer.body)
    o = answer.body
    print(f"override #{o['id']}: ends {shown_time(o['ends_at'])}")
    return 0


def _path(name: str) -> str:
    """A rotation's name as one path segment (a slash or a space never changes the route)."""
    from urllib.parse import quote

    return quote(name, safe="")


def register(commands: Any) -> None:
    common, _ = api_parents()
    # The subcommands' own copies of the flags (argparse shares a parent's actions), whose
    # defaults give way: --url, --token, -o given before the subcommand (`oncall --url U
    # override list ops`) are kept, and `oncall`'s defaults stand when none is given.
    sub_common, write = api_parents()
    shared = {a.dest for a in common._actions if a.option_strings and a.dest != "help"}
    for action in write._actions:
        if action.dest in shared:
            action.default = argparse.SUPPRESS
    parser = commands.add_parser(
        "oncall",
        parents=[common],
        help="who is on call now and next; overrides",
        description="Every rotation's holder now, since when, the hand-off and who is next "
        "(overrides applied), from the running service.",
    )
    parser.add_argument("--at", metavar="TIME", help="another instant (RFC 3339)")
    parser.set_defaults(func=_show)
    groups = parser.add_subparsers(dest="oncall_command", metavar="COMMAND")
    override = groups.add_parser(
        "override",
        help="someone holds a rotation for a while instead of its schedule",
        description="Overrides made here are stored with who made them and why, applied at "
        "once, and win over the rules file's for their span. A swap is one override each way.",
    )
    actions = override.add_subparsers(dest="override_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", parents=[write], help="make an override")
    add.add_argument("rotation", metavar="ROTATION")
    add.add_argument("person", metavar="PERSON", help="who holds the rotation (a member)")
    add.add_argument("--until", required=True, metavar="TIME", help="the end (RFC 3339)")
    add.add_argument(
        "--from", dest="start", metavar="TIME", help="the start (RFC 3339; default now)"
    )
    add.add_argument("--reason", default="", help="why (kept and shown)")
    add.set_defaults(func=_add)
    listing = actions.add_parser("list", parents=[sub_common], help="the rotation's overrides")
    listing.add_argument("rotation", metavar="ROTATION")
    listing.add_argument("--all", action="store_true", help="ended and past ones too")
    listing.set_defaults(func=_list)
    end = actions.add_parser("end", parents=[sub_common], help="end an override now")
    end.add_argument("rotation", metavar="ROTATION")
    end.add_argument("id", type=int, metavar="ID")
    end.set_defaults(func=_end)
