"""``incident-bridge notifications list|retry``: the outbox, through the running service's API."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bridge.config import DEFAULT_DB, DEFAULT_LISTEN, ENV_PREFIX, api_token_path, is_loopback


def _base_url(args: argparse.Namespace) -> str:
    if args.url:
        url = str(args.url).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise SystemExit(f"incident-bridge: --url {url!r} must start with http:// or https://")
        return url
    listen = os.environ.get(ENV_PREFIX + "LISTEN") or DEFAULT_LISTEN
    return f"http://{listen}"


def _token(args: argparse.Namespace) -> str | None:
    """``--token-file``, else ``INCIDENT_BRIDGE_API_TOKEN``, else, for a service on this
    machine, the token it generated beside its database (``--db``, ``INCIDENT_BRIDGE_DB``)."""
    if args.token_file:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise SystemExit(f"incident-bridge: --token-file: {exc.strerror}") from None
    token = os.environ.get(ENV_PREFIX + "API_TOKEN", "").strip()
    if token:
        return token
    host = urllib.parse.urlsplit(_base_url(args)).hostname or ""
    if not is_loopback(host):
        return None
    db = Path(args.db or os.environ.get(ENV_PREFIX + "DB") or DEFAULT_DB)
    try:
        return api_token_path(db).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _call(args: argparse.Namespace, method: str, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked in _base_url
        _base_url(args) + path, method=method, data=b"" if method == "POST" else None
    )
    token = _token(args)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, {"error": body.decode("utf-8", "replace")}


def _notifications_list(args: argparse.Namespace) -> int:
    query = f"?limit={args.limit}" + (f"&state={args.state}" if args.state else "")
    try:
        status, body = _call(args, "GET", "/api/v1/notifications" + query)
    except OSError as exc:
        print(f"incident-bridge: cannot reach {_base_url(args)}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"incident-bridge: {status}: {body.get('error')}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(body["notifications"], indent=2))
        return 0
    for n in body["notifications"]:
        error = f"  {n['last_error']}" if n["last_error"] else ""
        print(
            f"{n['id']:>6}  {n['state']:<9} incident {n['incident_id']:<5} {n['target']}/{n['tier']} "
            f"{n['event']}  attempts={n['attempts']}{error}"
        )
    return 0


def _notifications_retry(args: argparse.Namespace) -> int:
    code = 0
    for row_id in args.id:
        try:
            status, body = _call(args, "POST", f"/api/v1/notifications/{row_id}/retry")
        except OSError as exc:
            print(f"incident-bridge: cannot reach {_base_url(args)}: {exc}", file=sys.stderr)
            return 1
        if status == 200:
            print(f"{row_id}: pending again")
        else:
            print(f"{row_id}: {body.get('error')}", file=sys.stderr)
            code = 1
    return code


def register(commands: Any) -> None:
    notes = commands.add_parser("notifications", help="list and retry notifications (outbox)")
    sub = notes.add_subparsers(dest="notifications_command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"the service's URL (default http://${ENV_PREFIX}LISTEN)")
    common.add_argument(
        "--token-file",
        help=f"file holding the API token (default ${ENV_PREFIX}API_TOKEN, else for a URL on "
        "this machine the token the service generated beside its database)",
    )
    common.add_argument(
        "--db",
        help=f"the service's database, to find its generated token (default ${ENV_PREFIX}DB "
        "or ./data/incident-bridge.db)",
    )
    listing = sub.add_parser("list", parents=[common], help="notifications, newest first")
    listing.add_argument("--state", choices=["pending", "delivered", "dead"])
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("-o", "--output", choices=["text", "json"], default="text")
    listing.set_defaults(func=_notifications_list)
    again = sub.add_parser("retry", parents=[common], help="send dead-lettered notifications again")
    again.add_argument("id", nargs="+", type=int)
    again.set_defaults(func=_notifications_retry)
