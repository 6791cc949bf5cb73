"""``incident-bridge drill``: fire a drill (docs/drills.md), straight into the bridge through its
API (``POST /api/v1/drills``) or, with ``--through-alertmanager``, as an alert posted to
Alertmanager's API (``POST /api/v2/alerts``) that Alertmanager routes to the bridge's webhook:
the whole chain proven. ``incident-bridge drill report ID`` shows a drill's report and writes
it into the knowledge base."""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from bridge.cli import apiclient
from bridge.cli.fmt import print_json, shown_text
from bridge.config import ENV_PREFIX
from bridge.core import drills
from bridge.core.policy import SEVERITIES

AM_ENV = ENV_PREFIX + "ALERTMANAGER_URL"
WAIT_S = 60.0


def _stages(steps: list[dict[str, Any]]) -> list[str]:
    out = []
    for s in steps:
        mark = "ok" if s.get("ok") else "REFUSED"
        why = f": {shown_text(str(s['error']))}" if s.get("error") else ""
        out.append(f"  {shown_text(s['stage'])}: {mark}{why}")
    return out


def _post_to_alertmanager(url: str, labels: dict[str, str]) -> None:
    body = json.dumps(drills.alertmanager_alert(labels)).encode()
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked below
        url.rstrip("/") + "/api/v2/alerts",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            if answer.status >= 300:
                raise apiclient.Failure(f"Alertmanager {url} answered {answer.status}")
    except urllib.error.HTTPError as exc:
        with exc:
            raise apiclient.Failure(
                f"Alertmanager {url} refused the drill's alert: {exc.code}"
            ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise apiclient.Failure(f"cannot reach Alertmanager {url}: {exc}") from None


def _through_alertmanager(args: argparse.Namespace, client: apiclient.Client) -> dict[str, Any]:
    url = args.alertmanager_url or os.environ.get(AM_ENV, "").split(",")[0].strip()
    if not url:
        raise apiclient.Usage(f"--through-alertmanager needs --alertmanager-url or ${AM_ENV}")
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise apiclient.Usage(f"--alertmanager-url: {url!r} is not an http:// or https:// URL")
    name = uuid.uuid4().hex[:12]
    labels = drills.labels(
        name=name, route=args.route, severity=args.severity, stakeholders=args.stakeholders
    )
    _post_to_alertmanager(url, labels)
    # Alertmanager sends it after its group_wait: wait for the incident it opens.
    deadline = time.monotonic() + args.wait
    while True:
        answer = client.get("/api/v1/drills", {"name": name})
        if answer.ok:
            return {"drill": name, "incidents": [answer.body["incident"]], "labels": labels}
        if answer.status != 404:
            raise apiclient.Failure(answer.error())
        if time.monotonic() >= deadline:
            raise apiclient.Failure(
                f"the drill {name} was posted to Alertmanager, but no incident opened within "
                f"{args.wait:g} s: does Alertmanager route it to the bridge's webhook?"
            )
        time.sleep(0.5)


@apiclient.guarded
def _drill(args: argparse.Namespace) -> int:
    client = apiclient.Client.from_args(args)
    if args.through_alertmanager:
        fired = _through_alertmanager(args, client)
        if args.auto:
            steps: list[dict[str, Any]] = []
            for incident_id in fired["incidents"]:
                answer = client.post(f"/api/v1/drills/{incident_id}/auto", {}, idempotency_key=None)
                if not answer.ok:
                    raise apiclient.Failure(answer.error())
                steps += answer.body["auto"]
            fired["auto"] = steps
    else:
        body: dict[str, Any] = {"stakeholders": args.stakeholders, "auto": args.auto}
        if args.route:
            body["route"] = args.route
        if args.severity:
            body["severity"] = args.severity
        answer = client.post("/api/v1/drills", body, idempotency_key=None)
        if not answer.ok:
            raise apiclient.Failure(answer.error())
        fired = answer.body
    if args.output == "json":
        print_json(fired)
        return 0
    ids = ", ".join(f"#{i}" for i in fired["incidents"]) or "no incident (no route took it)"
    print(f"drill {fired['drill']}: {ids}")
    if "auto" in fired:
        print("stages:")
        print("\n".join(_stages(fired["auto"])))
        if any(not s.get("ok") for s in fired["auto"]):
            return 1
    return 0


@apiclient.guarded
def _report(args: argparse.Namespace) -> int:
    client = apiclient.Client.from_args(args)
    path = f"/api/v1/drills/{args.id}/report"
    answer = client.get(path) if args.no_kb else client.post(path, {}, idempotency_key=None)
    if not answer.ok:
        raise apiclient.Failure(answer.error())
    if args.output == "json":
        print_json(answer.body)
        return 0
    print(shown_text(answer.body["markdown"]), end="")
    written = answer.body.get("knowledge_base") or {}
    if written.get("path"):
        print(f"\n(written into the knowledge base as {shown_text(written['path'])})")
    return 0


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "drill",
        help="fire a drill: a synthetic alert whose incident is practice, marked DRILL",
        description='Fire a drill: a synthetic alert (labelled drill="true") whose incident '
        "is a drill everywhere (DRILL: first in every message, stakeholders left out unless "
        "--stakeholders, its MTTx kept apart). Straight into the bridge, or with "
        "--through-alertmanager through Alertmanager's API. `drill report ID` shows its report.",
    )
    apiclient.add_flags(parser)
    apiclient.add_output(parser)
    parser.add_argument("--route", help="the route of the rules it goes to (default: by labels)")
    parser.add_argument(
        "--severity", choices=SEVERITIES, help="its severity (default: the route's)"
    )
    parser.add_argument(
        "--through-alertmanager",
        action="store_true",
        help="post the alert to Alertmanager's API (--alertmanager-url) and wait for the incident",
    )
    parser.add_argument(
        "--alertmanager-url",
        help=f"Alertmanager's URL for --through-alertmanager (default ${AM_ENV}, its first)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=WAIT_S,
        help=f"seconds to wait for Alertmanager to deliver the drill (default {WAIT_S:g})",
    )
    parser.add_argument(
        "--auto", action="store_true", help="walk the four stages at once (a smoke test)"
    )
    parser.add_argument(
        "--stakeholders", action="store_true", help="alert the stakeholders tier too"
    )
    parser.set_defaults(func=_drill, parser=parser)
    sub = parser.add_subparsers(dest="drill_command", metavar="report")
    report = sub.add_parser(
        "report",
        help="a drill's report, written into the knowledge base",
        description="The drill's report: each target delivered or failed (with the error), "
        "each stage's time against the severity's target, what was skipped. Written into the "
        "knowledge base as drills/ID.md unless --no-kb.",
    )
    apiclient.add_flags(report)
    apiclient.add_output(report)
    report.add_argument("id", type=int, metavar="ID", help="the drill's incident")
    report.add_argument("--no-kb", action="store_true", help="show it without writing it")
    report.set_defaults(func=_report, parser=report)
