"""Storm benchmark: an Alertmanager HA pair, the bridge and a rate-limited Slack, end to end.

Runs everything on 127.0.0.1:

- the Slack Web API contract fake (``tests/fakes/slack.py``) with Slack's limits: per method
  (``conversations.create``, ``conversations.setTopic``, ``bookmarks.add`` about 20 a minute,
  invites 50...) and one post a second per channel with a burst of 2; 429 with
  ``Retry-After`` as Slack answers; it notes each 429 and any request inside a window it gave;
- two real ``prometheus-alertmanager`` processes clustered on loopback
  (``tests/integration/procs.running_alertmanagers``), group_wait 5s, group_interval 10s;
- ``incident-bridge serve`` (``tests/integration/procs.Bridge``) with rules as the bundled
  ``rules/`` lay them out: the general tier on the ``slack`` target (channel ``C0GENERAL``),
  the dedicated channels on ``rooms`` (the same token), sev1 stakeholders paged through
  PagerDuty's Events API (``pager``, its contract fake); dedicated channels for critical
  alerts only (``--dedicated sev1``, the default), for all, or none.

N alerts in G groups (one alertname a group; ``--critical`` of the groups critical, the rest
warning) are posted to both Alertmanagers, as Prometheus does, spread over ``--window``
seconds; ``--hold`` seconds after the last was posted they are all posted again resolved.

Printed, one JSON line each: ``setup``; ``baseline`` (Alertmanager's own delivery: the first
webhook of each group after its first alert was posted, and the general channel's time to
carry one message per incident at its rate: what the storm costs one by one); ``incidents``
(incidents vs groups, post-to-incident latency and its ratio to Alertmanager's delivery);
one line per tier (first message per incident after the incident opened, p50/p99, how many
first heard at mitigation, sev1 pages before mitigation); ``slack`` (429s per method and
channel, the worst of them, requests inside a window, duplicate channels, bookmarks, invites,
messages per incident); ``bridge`` (drain time after the last resolve, CPU seconds, peak RSS,
rows pending and dead); ``summary`` with the aims and ``ok``. Exit code 0 when every aim is met.

    .venv/bin/python bench/storm.py --smoke                  # < 30 s
    .venv/bin/python bench/storm.py --alerts 2000 --groups 100
    .venv/bin/python bench/storm.py                          # 10,000 alerts in 500 groups
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fakes import paging  # noqa: E402
from tests.fakes import slack as slack_fake  # noqa: E402
from tests.integration.procs import (  # noqa: E402
    ALERTMANAGER,
    TOKEN,
    Bridge,
    alertmanager_config,
    http,
    metric_value,
    running_alertmanagers,
)

T = TypeVar("T")
PREFIX = "incident_bridge_"
GENERAL = "C0GENERAL"
MENTION = re.compile(r"#(\d+)\b")
LINE_STATUS = re.compile(r"#(\d+)\b[^\n]*?· (triggered|acknowledged|mitigated|resolved|closed)")
HEADING = re.compile(r"\*Incident (opened|acknowledged|mitigated|resolved|closed|reopened)\*")
AIM_GENERAL_S, AIM_PAGE_S, AIM_ROOM_S, AIM_DRAIN_S, AIM_RSS_MIB = 60.0, 30.0, 2.0, 60.0, 128.0

RULES = """\
targets:
  slack: {type: slack, token: "${SLACK_TOKEN}", api_url: "${SLACK_API}", channel: C0GENERAL}
  rooms: {type: slack, token: "${SLACK_TOKEN}", api_url: "${SLACK_API}"}
  pager: {type: pagerduty, routing_key: "${PD_KEY}", api_url: "${PD_URL}"}
route:
  name: root
  tiers:
    general: [slack]
    stakeholders: {targets: [pager], min_severity: sev1}
%(routes)s"""
ROOM_ROUTES = {
    "sev1": """  routes:
    - name: critical
      matchers: ['severity="critical"']
      tiers: {incident: rooms}
""",
    "all": """  routes:
    - name: every
      matchers: ['alertname=~".+"']
      tiers: {incident: rooms}
""",
    "none": "",
}


# --- the Slack fake, timed, in its own thread ------------------------------------------------


@dataclass
class Post:
    at: float
    channel: str
    text: str


class TimedSlack(slack_fake.SlackAPIFake):
    """Notes when each message arrived (``time.time()``), before anything else runs."""

    def __init__(self) -> None:
        super().__init__(slack_fake.RateLimits())
        self.users["oncall@example.com"] = "U0ONCALL"
        self.posts: list[Post] = []
        self.created_at: dict[str, float] = {}

    async def handle(self, request: web.Request) -> web.Response:
        arrived = time.time()
        before, channels = len(self.messages), set(self.channels)
        response = await super().handle(request)
        if len(self.messages) > before:
            m = self.messages[-1]
            self.posts.append(Post(arrived, str(m.get("channel")), str(m.get("text") or "")))
        for cid in set(self.channels) - channels:
            self.created_at[cid] = arrived
        return response


class TimedPagerDuty(paging.PagerDutyFake):
    """Notes when each page arrived and for which incident key (its ``dedup_key``)."""

    def routes(self) -> None:
        super().routes()
        self.pages: list[tuple[float, str, str]] = []  # (at, dedup_key, action)

    async def handle(self, request: web.Request) -> web.Response:
        arrived = time.time()
        body = json.loads(await request.read() or b"null")
        response = await super().handle(request)
        if response.status == 202 and isinstance(body, dict):
            self.pages.append((arrived, str(body.get("dedup_key")), str(body.get("event_action"))))
        return response


class FakeThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.fake: TimedSlack | None = None
        self.pager: TimedPagerDuty | None = None

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> TimedSlack:
        self.thread.start()

        async def make() -> tuple[TimedSlack, TimedPagerDuty]:
            fake, pager = TimedSlack(), TimedPagerDuty()
            await fake.start()
            await pager.start()
            return fake, pager

        self.fake, self.pager = self.call(make())
        return self.fake

    def stop(self) -> None:
        for fake in (self.fake, self.pager):
            if fake is not None:
                with contextlib.suppress(Exception):
                    self.call(fake.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


# --- load --------------------------------------------------------------------------------------


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def alerts_of(n: int, groups: int, critical: int, starts: float) -> list[list[dict[str, Any]]]:
    """The alerts of each group: alertname ``Storm<g>``, ``critical`` groups critical, spread
    evenly over the storm."""
    out: list[list[dict[str, Any]]] = [[] for _ in range(groups)]
    for i in range(n):
        g = i % groups
        sev = "critical" if (g + 1) * critical // groups > g * critical // groups else "warning"
        out[g].append(
            {
                "labels": {
                    "alertname": f"Storm{g:04d}",
                    "severity": sev,
                    "service": f"svc-{g:04d}",
                    "instance": f"node-{i:05d}",
                },
                "annotations": {
                    "summary": f"Storm{g:04d} on svc-{g:04d}",
                    "runbook_url": f"https://runbooks.example/storm/{g}",
                },
                "startsAt": iso(starts),
                "endsAt": iso(starts + 3600),
            }
        )
    return out


def post_all(ams: list[Any], alerts: list[dict[str, Any]]) -> None:
    body = json.dumps(alerts).encode()
    for am in ams:
        resp = http(
            "POST", am.url + "/api/v2/alerts", body, {"Content-Type": "application/json"}, 30
        )
        if resp.status != 200:
            raise RuntimeError(
                f"alertmanager refused the alerts: {resp.status} {resp.body[:200]!r}"
            )


def fire(ams: list[Any], groups: list[list[dict[str, Any]]], window: float) -> dict[int, float]:
    """Each group's alerts posted at its turn within ``window``: when each group began."""
    began: dict[int, float] = {}
    start = time.time()
    step = window / max(1, len(groups))
    for g, alerts in enumerate(groups):
        delay = start + g * step - time.time()
        if delay > 0:
            time.sleep(delay)
        began[g] = time.time()
        post_all(ams, alerts)
    return began


def resolve(ams: list[Any], groups: list[list[dict[str, Any]]]) -> float:
    now = time.time()
    done = [dict(a, endsAt=iso(now)) for alerts in groups for a in alerts]
    for i in range(0, len(done), 2000):
        post_all(ams, done[i : i + 2000])
    return now


# --- figures -----------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))], 2)


def proc_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of a running process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return round(cpu, 1), round(peak, 1)


@dataclass
class Incident:
    id: int
    key: str
    severity: str
    opened: float
    mitigated: float | None
    first: dict[str, float] = field(default_factory=dict)  # tier -> first message
    first_status: str = ""


def read_incidents(db: Path) -> dict[int, Incident]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT id, key, severity, opened_at, mitigated_at FROM incidents"
        ).fetchall()
        return {
            r[0]: Incident(r[0], r[1], r[2], r[3] / 1e9, r[4] / 1e9 if r[4] else None) for r in rows
        }
    finally:
        conn.close()


def outbox_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
    finally:
        conn.close()


def webhook_firsts(db: Path) -> dict[str, float]:
    """groupKey -> when the bridge first received a webhook for it (Alertmanager's delivery)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT group_key, min(received_at) FROM webhooks GROUP BY group_key")
        return {str(k): v / 1e9 for k, v in rows if k}
    finally:
        conn.close()


def emit(fields: dict[str, Any]) -> None:
    print(json.dumps({"bench": "storm", **fields}), flush=True)


def wait_drained(bridge: Bridge, timeout: float) -> float | None:
    """Seconds until the bridge's outbox has nothing pending, or None."""
    start = time.time()
    while time.time() - start < timeout:
        body = http("GET", bridge.url + "/metrics").body.decode()
        if metric_value(body, PREFIX + "outbox_pending") == 0:
            return time.time() - start
        time.sleep(0.5)
    return None


def run(args: argparse.Namespace, workdir: Path) -> bool:
    fakes = FakeThread()
    bridge: Bridge | None = None
    slack = fakes.start()
    try:
        critical = round(args.groups * args.critical)
        emit(
            {
                "case": "setup",
                "alerts": args.alerts,
                "groups": args.groups,
                "critical_groups": critical,
                "window_s": args.window,
                "hold_s": args.hold,
                "dedicated": args.dedicated,
                "cpus": os.cpu_count(),
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
        )
        rules = workdir / "rules.yaml"
        rules.write_text(RULES % {"routes": ROOM_ROUTES[args.dedicated]})
        assert fakes.pager is not None
        env = {
            "SLACK_TOKEN": slack_fake.TOKEN,
            "SLACK_API": slack.url + "/api",
            "PD_KEY": paging.ROUTING_KEY,
            "PD_URL": fakes.pager.url + "/v2/enqueue",
        }
        bridge = Bridge(
            workdir / "bridge",
            args=["--rules", str(rules), "--external-url", "https://bridge.example"],
            env=env,
        )
        bridge.start()
        config = alertmanager_config(
            bridge.url, TOKEN, group_by=("alertname",), group_wait="5s", group_interval="10s"
        )
        with running_alertmanagers(workdir, config, peers=2) as ams:
            groups = alerts_of(args.alerts, args.groups, critical, time.time())
            began = fire(ams, groups, args.window)
            time.sleep(max(0.0, args.hold - (time.time() - max(began.values()))))
            resolve(ams, groups)
            drained = wait_drained(bridge, args.drain_timeout)
            cpu, rss = proc_usage(bridge.proc.pid) if bridge.proc else (0.0, 0.0)
        time.sleep(1.0)
        bridge.stop()
        return report(args, slack, fakes.pager, bridge.db, began, drained, cpu, rss)
    finally:
        if bridge is not None:
            bridge.stop()
        fakes.stop()


def report(
    args: argparse.Namespace,
    slack: TimedSlack,
    pager: TimedPagerDuty,
    db: Path,
    began: dict[int, float],
    drained: float | None,
    cpu: float,
    rss: float,
) -> bool:
    incidents = read_incidents(db)
    by_key = {inc.key: inc for inc in incidents.values()}
    delivered = webhook_firsts(db)
    am_latency = [
        delivered[k] - began[g]
        for g in began
        for k in delivered
        if f'alertname="Storm{g:04d}"' in k
    ]
    open_latency = [
        inc.opened - began[int(m.group(1))]
        for inc in incidents.values()
        if (m := re.search(r"Storm(\d{4})", inc.key))
    ]
    rooms = {cid: ch for cid, ch in slack.channels.items() if cid != GENERAL}
    room_of = {int(ch["name"].split("-")[1]): cid for cid, ch in rooms.items()}
    lines_seen: Counter[str] = Counter()  # a digest line (incident, status, news) seen twice
    for post in slack.posts:
        if post.channel == GENERAL:
            heading = HEADING.search(post.text)
            digest = "incidents at once" in post.text
            for m in LINE_STATUS.finditer(post.text) if digest else ():
                inc = incidents.get(int(m.group(1)))
                if inc is not None:
                    line = post.text[m.start() :].split("\n", 1)[0]
                    lines_seen[line] += 1
                    if "general" not in inc.first:
                        inc.first["general"], inc.first_status = post.at, m.group(2)
            if not digest and heading and (ids := MENTION.findall(post.text)):
                inc = incidents.get(int(ids[0]))
                if inc is not None and "general" not in inc.first:
                    inc.first["general"], inc.first_status = post.at, heading.group(1)
        else:
            for iid, cid in room_of.items():
                if cid == post.channel and iid in incidents:
                    incidents[iid].first.setdefault("incident", post.at)
    for at, key, action in pager.pages:
        page_of = by_key.get(key)
        if page_of is not None and action == "trigger":
            page_of.first.setdefault("stakeholders", at)
    baseline_am = pct(am_latency, 99)
    one_by_one_s = len(incidents) * 1.0  # the general channel at Slack's one message a second
    emit(
        {
            "case": "baseline",
            "alertmanager_delivery_p50_s": pct(am_latency, 50),
            "alertmanager_delivery_p99_s": baseline_am,
            "general_channel_one_by_one_s": one_by_one_s,
        }
    )
    emit(
        {
            "case": "incidents",
            "incidents": len(incidents),
            "groups": args.groups,
            "sev1": sum(i.severity == "sev1" for i in incidents.values()),
            "post_to_incident_p50_s": pct(open_latency, 50),
            "post_to_incident_p99_s": pct(open_latency, 99),
            "vs_alertmanager_p99": round(pct(open_latency, 99) / baseline_am, 2)
            if baseline_am and open_latency
            else None,
        }
    )
    ok = len(incidents) == args.groups and len(by_key) == args.groups
    tiers: dict[str, list[float]] = {"general": [], "stakeholders": [], "incident": []}
    for inc in incidents.values():
        for tier, at in inc.first.items():
            tiers[tier].append(at - inc.opened)
    late_general = [
        i.id for i in incidents.values() if i.first.get("general", 1e18) - i.opened > AIM_GENERAL_S
    ]
    first_at_mitigation = sum(
        i.first_status in ("mitigated", "resolved") for i in incidents.values()
    )
    sev1 = [i for i in incidents.values() if i.severity == "sev1"]
    pages_late = [
        i.id
        for i in sev1
        if "stakeholders" not in i.first
        or i.first["stakeholders"] - i.opened > AIM_PAGE_S
        or (i.mitigated is not None and i.first["stakeholders"] > i.mitigated)
    ]
    never_general = [i.id for i in incidents.values() if "general" not in i.first]
    creates = sorted(slack.created_at.values())
    after_create = [
        incidents[iid].first["incident"] - slack.created_at[cid]
        for iid, cid in room_of.items()
        if iid in incidents and "incident" in incidents[iid].first and cid in slack.created_at
    ]
    emit(
        {
            "case": "channels",
            "created": len(creates),
            "creates_per_minute": round((len(creates) - 1) * 60 / (creates[-1] - creates[0]), 1)
            if len(creates) > 1 and creates[-1] > creates[0]
            else None,
            "first_post_after_create_p50_s": pct(after_create, 50),
            "first_post_after_create_p99_s": pct(after_create, 99),
        }
    )
    for tier, values in tiers.items():
        emit(
            {
                "case": "tier",
                "tier": tier,
                "incidents_reached": len(values),
                "first_message_p50_s": pct(values, 50),
                "first_message_p99_s": pct(values, 99),
                "max_s": pct(values, 100),
            }
        )
    limited = slack.limits.limited if slack.limits else {}
    inside = slack.limits.inside if slack.limits else []
    dup_lines = sum(n - 1 for n in lines_seen.values() if n > 1)
    dup_bookmarks = sum(
        len(ch["bookmarks"]) - len({b["link"] for b in ch["bookmarks"]}) for ch in rooms.values()
    )
    channels_per_incident = Counter(int(ch["name"].split("-")[1]) for ch in rooms.values())
    second_channels = sum(n - 1 for n in channels_per_incident.values())
    emit(
        {
            "case": "slack",
            "messages": len(slack.posts),
            "messages_general": sum(p.channel == GENERAL for p in slack.posts),
            "messages_per_incident": round(len(slack.posts) / max(1, len(incidents)), 2),
            "channels_created": len(rooms),
            "rate_limited": sum(limited.values()),
            "rate_limited_worst_scope": max(limited.values(), default=0),
            "rate_limited_by_scope": dict(sorted(limited.items(), key=lambda kv: -kv[1])[:8]),
            "requests_inside_a_window": len(inside),
            "duplicate_digest_lines": dup_lines,
            "duplicate_bookmarks": dup_bookmarks,
            "reinvited": slack.reinvited,
            "second_channels": second_channels,
        }
    )
    counts = outbox_counts(db)
    emit(
        {
            "case": "bridge",
            "drained_after_last_resolve_s": round(drained, 1) if drained is not None else None,
            "cpu_s": cpu,
            "peak_rss_mib": rss,
            "outbox": counts,
        }
    )
    aims = {
        "incidents_equal_groups": ok,
        "general_within_60s": not late_general and not never_general,
        "sev1_pages_within_30s_before_mitigation": not pages_late,
        "at_most_one_429_per_scope": max(limited.values(), default=0) <= 1,
        "no_request_inside_a_window": not inside,
        "drained_within_60s": drained is not None and drained <= AIM_DRAIN_S,
        "nothing_lost": counts.get("pending", 0) == 0 and counts.get("dead", 0) == 0,
        "nothing_duplicated": not (
            dup_lines or dup_bookmarks or slack.reinvited or second_channels
        ),
        "peak_rss_under_128mib": rss < AIM_RSS_MIB,
    }
    emit(
        {
            "case": "summary",
            "first_heard_at_mitigation": first_at_mitigation,
            "general_late": len(late_general),
            "general_never": len(never_general),
            "sev1_pages_late": len(pages_late),
            "drain_vs_one_by_one": round((drained or 0) / one_by_one_s, 3)
            if one_by_one_s
            else None,
            "aims": aims,
            "ok": all(aims.values()),
        }
    )
    return all(aims.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=10_000, help="alerts in the storm")
    parser.add_argument("--groups", type=int, default=500, help="Alertmanager groups (incidents)")
    parser.add_argument("--critical", type=float, default=0.418, help="share of critical groups")
    parser.add_argument("--window", type=float, default=60.0, help="seconds to post the alerts")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds before they resolve")
    parser.add_argument(
        "--dedicated",
        choices=sorted(ROOM_ROUTES),
        default="sev1",
        help="which incidents get a dedicated channel",
    )
    parser.add_argument("--drain-timeout", type=float, default=900.0, help="seconds to wait")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes (< 30 s): checks that it runs"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.alerts, args.groups, args.window, args.hold = 60, 12, 2.0, 6.0
        args.drain_timeout = 60.0
    if args.alerts < args.groups or args.groups < 1:
        parser.error("--alerts must be at least --groups, and --groups at least 1")
    if not Path(ALERTMANAGER).exists():
        print(f"{ALERTMANAGER} is not installed", file=sys.stderr)
        return 2

    def terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    workdir = Path(tempfile.mkdtemp(prefix="incident-bridge-storm-"))
    try:
        return 0 if run(args, workdir) else 1
    except KeyboardInterrupt:
        return 130
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
