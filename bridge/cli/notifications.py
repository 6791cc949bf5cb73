"""``incident-bridge notifications list|retry``: the outbox, and with ``--messages`` the channel
messages tied to no incident, through the running service's API."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bridge.cli import apiclient


@apiclient.guarded
def _notifications_list(args: argparse.Namespace) -> int:
    query = {"limit": str(args.limit)} | ({"state": args.state} if args.state else {})
    what = "messages" if args.messages else "notifications"
    answer = apiclient.Client.from_args(args).get(f"/api/v1/{what}", query)
    if not answer.ok:
        return apiclient.fail(answer.error())
    body = answer.body
    if args.output == "json":
        print(json.dumps(body[what], indent=2))
        return 0
    if args.messages:
        for m in body["messages"]:
            error = f"  {m['last_error']}" if m["last_error"] else ""
            line = (
                f"{m['id']:>6}  {m['state']:<9} {m['kind']} {m['key']} to {m['target']}  "
                f"attempts={m['attempts']}{error}"
            )
            print(apiclient.printable(line).replace("\n", " "))
        return 0
    for n in body["notifications"]:
        # last_error quotes what a target answered: made safe for the terminal.
        error = f"  {n['last_error']}" if n["last_error"] else ""
        line = (
            f"{n['id']:>6}  {n['state']:<9} incident {n['incident_id']:<5} {n['target']}/{n['tier']} "
            f"{n['event']}  attempts={n['attempts']}{error}"
        )
        print(apiclient.printable(line).replace("\n", " "))
    return 0


@apiclient.guarded
def _notifications_retry(args: argparse.Namespace) -> int:
    client = apiclient.Client.from_args(args)
    code = 0
    for row_id in args.id:
        # Sent once: a retry that was done answers 409 (not dead) when repeated.
        what = "messages" if args.messages else "notifications"
        answer = client.post(f"/api/v1/{what}/{row_id}/retry", idempotency_key=None)
        if answer.ok:
            print(f"{row_id}: pending again")
        else:
            print(f"{row_id}: {answer.error()}", file=sys.stderr)
            code = 1
    return code


def register(commands: Any) -> None:
    notes = commands.add_parser("notifications", help="list and retry notifications (outbox)")
    sub = notes.add_subparsers(dest="notifications_command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    apiclient.add_flags(common)
    listing = sub.add_parser("list", parents=[common], help="notifications, newest first")
    listing.add_argument("--state", choices=["pending", "delivered", "dead"])
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("-o", "--output", choices=["text", "json"], default="text")
    listing.add_argument(
        "--messages",
        action="store_true",
        help="channel messages (hand-offs, drill announcements) instead of the outbox",
    )
    listing.set_defaults(func=_notifications_list)
    again = sub.add_parser("retry", parents=[common], help="send dead-lettered notifications again")
    again.add_argument("id", nargs="+", type=int)
    again.add_argument(
        "--messages", action="store_true", help="the ids are channel messages' (list --messages)"
    )
    again.set_defaults(func=_notifications_retry)
