"""Delivery benchmark: from the webhook's 200 to the message arriving at the target.

Runs everything on 127.0.0.1:

- two contract fakes from ``tests/fakes`` (a Slack incoming webhook and the generic signed
  webhook), in a background thread with its own asyncio loop, with no 429 or failure scripted;
  each records when (``time.time()``) every message arrived;
- ``incident-bridge serve`` as a real process (``tests/integration/procs.Bridge``) with a
  temporary SQLite file and rules whose ``general`` tier holds both targets (``chat``:
  ``slack_webhook``, ``hook``: ``webhook``), bearer auth, default settings;
- a load generator that opens new incidents at a steady rate (open loop: a slow answer does not
  slow the rate down), each webhook a new groupKey and fingerprint and a unique title
  ``bench-<n>`` (``commonAnnotations.summary``), and records when each webhook got its 200.

Each incident calls for one message per target (``opened``, general tier). Messages are matched
to incidents by title (the webhook target's ``incident.title``, the Slack message text), and
latency = receipt at the fake - the webhook's 200 (the same clock: one machine).

Before the bridge runs, the same fakes are hit directly by a plain aiohttp client at the same
rate (``direct:*`` lines: send -> receipt of a bare POST), so the bridge's figures can be read
as a ratio on a noisy machine.

Output, one JSON line each: ``setup``, the two ``direct:*`` baselines, one line per target, an
``ingest`` line (webhook round trips), the bridge's own view (outbox metrics, log levels) and a
summary with the issue's target (p99 < 250 ms at 50 incidents/s, everything delivered). The exit
code is 0 when the target is met, 1 when not.

Slack targets are paced to one message per second per channel by default (``min_interval_s``);
a single channel can then carry 1 message/s, far below 50/s. The issue's target is "when no rate
limit applies", so the benchmark sets ``min_interval_s: 0`` on the Slack target unless
``--slack-min-interval`` says otherwise.

    .venv/bin/python bench/delivery.py                      # 50/s for 20 s, about 35 s in all
    .venv/bin/python bench/delivery.py --rate 100 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._common import SMOKE_HELP  # noqa: E402
from bridge.targets.webhook import sign  # noqa: E402
from tests.fakes import slack as slack_fake  # noqa: E402
from tests.fakes import webhook as webhook_fake  # noqa: E402
from tests.fakes.base import FakeServer  # noqa: E402
from tests.integration.procs import TOKEN, Bridge, http, metric_value  # noqa: E402

T = TypeVar("T")
TARGET_P99_MS = 250.0
TAG = re.compile(r"\b(bench|base)-(\d+)\b")
PREFIX = "incident_bridge_"

RULES = """\
targets:
  hook: {type: webhook, url: "${HOOK_URL}", secret: "${HOOK_SECRET}"}
  chat: {type: slack_webhook, url: "${SLACK_URL}"%(chat_extra)s}
route:
  name: default
  tiers: {general: [chat, hook]}
"""


# --- the fakes, with receipt times ----------------------------------------------------------


@dataclass
class Receipts:
    """When each tagged message first arrived, and how often (written by the fakes' thread)."""

    first: dict[str, float] = field(default_factory=dict)
    count: Counter[str] = field(default_factory=Counter)
    untagged: int = 0

    def record(self, tag: str | None, at: float) -> None:
        if tag is None:
            self.untagged += 1
            return
        self.count[tag] += 1
        self.first.setdefault(tag, at)


def tag_of(text: Any) -> str | None:
    found = TAG.search(text) if isinstance(text, str) else None
    return found.group(0) if found else None


@web.middleware
async def _arrival(request: web.Request, handler: Any) -> web.StreamResponse:
    request["arrived_at"] = time.time()  # before the fake reads the body or checks anything
    response: web.StreamResponse = await handler(request)
    return response


class TimedWebhookFake(webhook_fake.WebhookFake):
    def __init__(self) -> None:
        super().__init__()
        self.app.middlewares.insert(0, _arrival)  # outermost: before the fake's own middleware
        self.receipts = Receipts()

    async def handle(self, request: web.Request) -> web.Response:
        before = len(self.received)
        response = await super().handle(request)
        if response.status == 200 and len(self.received) > before:
            incident = self.received[-1].get("incident") or {}
            self.receipts.record(tag_of(incident.get("title")), request["arrived_at"])
        return response


class TimedSlackWebhookFake(slack_fake.SlackWebhookFake):
    def __init__(self) -> None:
        super().__init__()
        self.app.middlewares.insert(0, _arrival)
        self.receipts = Receipts()

    async def handle(self, request: web.Request) -> web.Response:
        before = len(self.messages)
        response = await super().handle(request)
        if response.status == 200 and len(self.messages) > before:
            self.receipts.record(tag_of(self.messages[-1].get("text")), request["arrived_at"])
        return response


class FakesThread:
    """The fakes on their own asyncio loop in a daemon thread; ``stop`` closes them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="bench-fakes", daemon=True)
        self.fakes: list[FakeServer] = []

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> tuple[TimedSlackWebhookFake, TimedWebhookFake]:
        self.thread.start()

        async def make() -> tuple[TimedSlackWebhookFake, TimedWebhookFake]:
            chat, hook = TimedSlackWebhookFake(), TimedWebhookFake()
            for fake in (chat, hook):
                self.fakes.append(fake)
                await fake.start()
            return chat, hook

        return self.call(make())

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        for fake in self.fakes:
            with contextlib.suppress(Exception):
                self.call(fake.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


# --- load --------------------------------------------------------------------------------------


@dataclass
class Sent:
    tag: str
    status: int  # 0: no answer (connection error, timeout)
    sent_at: float
    answered_at: float
    error: str | None = None


async def steady(
    rate: float, seconds: float, send: Callable[[int], Coroutine[Any, Any, Sent]]
) -> tuple[list[Sent], float]:
    """Start ``send(n)`` at ``rate`` per second for ``seconds`` (open loop); wait for all."""
    total = max(1, round(rate * seconds))
    start = time.monotonic() + 0.05
    tasks: list[asyncio.Task[Sent]] = []
    for n in range(total):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(n)))
    sent = await asyncio.gather(*tasks)
    return list(sent), time.monotonic() - start


async def post(session: aiohttp.ClientSession, tag: str, url: str, **kwargs: Any) -> Sent:
    sent_at = time.time()
    try:
        async with session.post(url, **kwargs) as resp:
            await resp.read()
            return Sent(tag, resp.status, sent_at, time.time())
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Sent(tag, 0, sent_at, time.time(), f"{type(exc).__name__}: {exc}")


def alertmanager_webhook(n: int, run: str) -> dict[str, Any]:
    """A firing group of one alert; new groupKey, fingerprint and title for every ``n``."""
    title = f"bench-{n}"
    labels = {"alertname": "BenchDelivery", "bench": f"{run}-{n}", "severity": "critical"}
    return {
        "receiver": "bridge",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": title},
                "startsAt": "2026-11-27T06:00:00.000Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": f"{run[:8]}{n:08x}",
            }
        ],
        "groupLabels": {"bench": f"{run}-{n}"},
        "commonLabels": labels,
        "commonAnnotations": {"summary": title},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": f'{{}}:{{bench="{run}-{n}"}}',
        "truncatedAlerts": 0,
    }


def session(limit: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        timeout=aiohttp.ClientTimeout(total=30),
    )


async def direct_load(
    rate: float, seconds: float, chat_url: str, hook_url: str
) -> tuple[list[Sent], list[Sent], float]:
    """The baseline: the fakes posted to directly, one message each per tick."""

    async def both(n: int) -> Sent:
        tag = f"base-{n}"
        body = json.dumps({"incident": {"title": tag}, "text": tag}).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": tag,
            "X-Incident-Bridge-Signature": sign(webhook_fake.SECRET, int(time.time()), body),
        }
        chat, hook = await asyncio.gather(
            post(client, tag, chat_url, json={"text": tag}),
            post(client, tag, hook_url, data=body, headers=headers),
        )
        chat_sent.append(chat)
        return hook

    chat_sent: list[Sent] = []
    async with session(200) as client:
        hook_sent, elapsed = await steady(rate, seconds, both)
    return chat_sent, hook_sent, elapsed


async def bridge_load(rate: float, seconds: float, url: str) -> tuple[list[Sent], float]:
    run = uuid.uuid4().hex[:8]
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def one(n: int) -> Sent:
        body = alertmanager_webhook(n, run)
        return await post(client, f"bench-{n}", url + "/api/v1/alerts", json=body, headers=headers)

    async with session(200) as client:
        return await steady(rate, seconds, one)


# --- figures -----------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def wait_delivered(receipts: list[Receipts], tags: set[str], timeout: float) -> float:
    """Poll until every tag has arrived at every fake; the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if all(tags <= r.first.keys() for r in receipts):
            break
        time.sleep(0.05)
    return time.monotonic() - start


def target_line(
    name: str, rate: float, sent: list[Sent], receipts: Receipts, *, since: str, **extra: Any
) -> dict[str, Any]:
    """Latency from ``since`` (``sent_at`` or ``answered_at``) to the first receipt."""
    acked = [s for s in sent if 200 <= s.status < 300]
    latencies = []
    last_receipt = None
    for s in acked:
        at = receipts.first.get(s.tag)
        if at is not None:
            latencies.append(at - getattr(s, since))
            last_receipt = at if last_receipt is None else max(last_receipt, at)
    first = min((getattr(s, since) for s in acked), default=None)
    span = (last_receipt - first) if last_receipt is not None and first is not None else 0.0
    duplicates = sum(receipts.count[s.tag] - 1 for s in acked if receipts.count[s.tag] > 1)
    return {
        "bench": "delivery",
        "target": name,
        "rate_incidents_per_s": rate,
        "sent_webhooks": len(sent),
        "delivered": len(latencies),
        "expected": len(acked),
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
        "max_ms": ms(max(latencies, default=None)),
        "delivered_per_s": round(len(latencies) / span, 1) if span > 0 else None,
        "duplicates": duplicates,
        **extra,
    }


def log_levels(text: str) -> tuple[Counter[str], list[str]]:
    """Count the bridge's JSON log lines by level; the first few warnings and errors."""
    levels: Counter[str] = Counter()
    notable: list[str] = []
    for raw in text.splitlines():
        try:
            entry = json.loads(raw)
            level = str(entry.get("level", "?")).lower()
        except (ValueError, AttributeError):
            level = "unparsed"
        levels[level] += 1
        if level in ("warning", "error", "critical", "unparsed") and len(notable) < 5:
            notable.append(raw[:300])
    return levels, notable


def emit(fields: dict[str, Any]) -> None:
    print(json.dumps(fields), flush=True)


# --- the run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace, workdir: Path) -> bool:
    fakes = FakesThread()
    bridge: Bridge | None = None
    try:
        chat, hook = fakes.start()
        emit(
            {
                "bench": "delivery",
                "case": "setup",
                "rate_incidents_per_s": args.rate,
                "seconds": args.seconds,
                "baseline_seconds": args.baseline_seconds,
                "slack_min_interval_s": args.slack_min_interval,
                "cpus": os.cpu_count(),
                "loadavg_1m": round(os.getloadavg()[0], 2),
                "python": sys.version.split()[0],
            }
        )

        # 1. Baseline: a bare POST to the same fakes at the same rate.
        if args.baseline_seconds > 0:
            chat_sent, hook_sent, _ = asyncio.run(
                direct_load(args.rate, args.baseline_seconds, chat.hook_url, hook.hook_url)
            )
            tags = {s.tag for s in hook_sent if s.status == 200}
            wait_delivered([chat.receipts, hook.receipts], tags, 5.0)
            for name, sent, fake in (
                ("direct:chat", chat_sent, chat),
                ("direct:hook", hook_sent, hook),
            ):
                emit(target_line(name, args.rate, sent, fake.receipts, since="sent_at"))
            baseline = {
                "chat": percentile([s.answered_at - s.sent_at for s in chat_sent], 99),
                "hook": percentile([s.answered_at - s.sent_at for s in hook_sent], 99),
            }
        else:
            baseline = {}

        # 2. The bridge, a real process, pointed at the fakes.
        chat_extra = ""
        if args.slack_min_interval is not None:
            chat_extra = f", min_interval_s: {args.slack_min_interval:g}"
        rules = workdir / "rules.yaml"
        rules.write_text(RULES % {"chat_extra": chat_extra})
        env = {
            "HOOK_URL": hook.hook_url,
            "HOOK_SECRET": webhook_fake.SECRET,
            "SLACK_URL": chat.hook_url,
        }
        bridge = Bridge(workdir / "bridge", args=["--rules", str(rules)], env=env)
        bridge.start()
        sent, elapsed = asyncio.run(bridge_load(args.rate, args.seconds, bridge.url))
        acked = {s.tag for s in sent if 200 <= s.status < 300}
        waited = wait_delivered(
            [chat.receipts, hook.receipts],
            acked,
            args.drain_timeout,
        )
        time.sleep(0.5)  # late duplicates, if any, arrive now

        lines = []
        for name, fake in (("chat", chat), ("hook", hook)):
            line = target_line(name, args.rate, sent, fake.receipts, since="answered_at")
            line["type"] = "slack_webhook" if name == "chat" else "webhook"
            direct = baseline.get(name)
            if direct and line["p99_ms"] is not None:
                line["p99_vs_direct_rtt"] = round(line["p99_ms"] / (direct * 1000), 1)
            lines.append(line)
            emit(line)

        rtts = [s.answered_at - s.sent_at for s in sent if s.status]
        statuses = Counter(str(s.status) for s in sent)
        errors = Counter(s.error.split(":")[0] for s in sent if s.error)
        emit(
            {
                "bench": "delivery",
                "target": "ingest",
                "sent_webhooks": len(sent),
                "send_rate_per_s": round(len(sent) / elapsed, 1) if elapsed else None,
                "statuses": dict(statuses),
                "client_errors": dict(errors),
                "p50_ms": ms(percentile(rtts, 50)),
                "p99_ms": ms(percentile(rtts, 99)),
                "max_ms": ms(max(rtts, default=None)),
            }
        )

        metrics = http("GET", bridge.url + "/metrics").body.decode()
        bridge_view = {
            "bench": "delivery",
            "case": "bridge",
            "drain_wait_s": round(waited, 2),
            "outbox_pending": metric_value(metrics, PREFIX + "outbox_pending"),
            "notifications_dead": metric_value(metrics, PREFIX + "notifications_dead"),
            "notifications_failed": metric_value(metrics, PREFIX + "notifications_failed_total"),
            "notifications_sent": metric_value(metrics, PREFIX + "notifications_total"),
        }
        exit_code = bridge.stop()
        levels, notable = log_levels(bridge.logs())
        bridge_view.update(exit_code=exit_code, log_levels=dict(levels), log_notable=notable)
        emit(bridge_view)

        worst = max((x["p99_ms"] for x in lines if x["p99_ms"] is not None), default=None)
        all_delivered = all(x["delivered"] == x["expected"] == len(sent) for x in lines)
        ok = worst is not None and worst < TARGET_P99_MS and all_delivered
        emit(
            {
                "bench": "delivery",
                "case": "summary",
                "rate_incidents_per_s": args.rate,
                "target_p99_ms": TARGET_P99_MS,
                "p99_ms": worst,
                "all_delivered": all_delivered,
                "ok": ok,
            }
        )
        return ok
    finally:
        if bridge is not None:
            bridge.stop()
        fakes.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50.0, help="new incidents per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of load")
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=5.0,
        help="seconds of direct POSTs to the fakes before the bridge runs (0: none)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=20.0,
        help="seconds to wait after the load for the last messages",
    )
    parser.add_argument(
        "--slack-min-interval",
        type=float,
        default=0.0,
        help="min_interval_s of the Slack target (default 0: no pacing; -1: the type's default, 1 s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    if args.smoke:
        args.rate, args.seconds = 10.0, 1.0
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")
    if args.slack_min_interval is not None and args.slack_min_interval < 0:
        args.slack_min_interval = None

    def terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # so that the finally blocks stop the bridge and the fakes

    signal.signal(signal.SIGTERM, terminated)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with it ignored
    workdir = Path(tempfile.mkdtemp(prefix="incident-bridge-delivery-"))
    try:
        return 0 if run(args, workdir) else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
