"""Delivery cost against incident size: CPU per message about a 50,000-alert incident and about a
1-alert one, measured in the same run, and their ratio.

Everything runs in this process, on 127.0.0.1:

- the generic webhook contract fake (``tests/fakes/webhook.py``) on its own asyncio loop in a
  thread; the CPU that thread spends is measured there and left out of the figures;
- a real store (a temporary SQLite file, the service's settings) and the real outbox worker
  with one ``webhook`` target (``hook``, signed, ``max_alerts`` at its default of 100), driven
  as the service drives it: ``run_once`` then the sends, one message at a time;
- per case, one incident built through the real ingest (``store/ingest.apply_webhook``): its
  base alerts in webhooks of 1,000 that notify nobody, then one more alert that flaps (firing,
  resolved, firing...) in webhooks whose events go to ``hook``'s incident tier. The worker's
  group size is 1, so every flap event is one message.

The ``small`` incident has 1 alert (the flapper); ``shown`` 100, as many as a message shows
(``bridge.delivery.snapshot.MAX_ALERTS``); ``large`` 50,000 (``--alerts``). Fingerprints look
random, as Alertmanager's do. A message's CPU is the process's CPU time (every thread: the
event loop, the store's writer and readers) less the fake's thread, over ``--messages``
messages. The cases alternate over ``--rounds`` rounds (this machine's speed drifts); the
ratios are per round: large / small (the figure asked for) and large / shown (what the
incident's size costs beyond the alerts a message carries).

Output, one JSON line per case and round, then a summary line with the median ratios.

    .venv/bin/python bench/delivery_size.py                       # 50,000 alerts, 100 messages, 2 rounds
    .venv/bin/python bench/delivery_size.py --alerts 2000 --messages 20 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._common import SMOKE_HELP  # noqa: E402
from bridge.core.alertmanager import parse_webhook  # noqa: E402
from bridge.core.policy import Decision, Tiers  # noqa: E402
from bridge.delivery.worker import DeliveryPolicy, OutboxWorker  # noqa: E402
from bridge.metrics import Metrics  # noqa: E402
from bridge.store import Store  # noqa: E402
from bridge.store import outbox as q  # noqa: E402
from bridge.store.ingest import apply_webhook  # noqa: E402
from bridge.targets import build_target  # noqa: E402
from bridge.targets.base import TargetDeps  # noqa: E402
from tests.fakes.webhook import SECRET, WebhookFake  # noqa: E402

T = TypeVar("T")
SECOND = 1_000_000_000
T0 = 1_795_752_400_000_000_000  # 2026-11-27T04:06:40Z
CHUNK = 1000  # alerts per building webhook


class FakeThread:
    """The webhook fake on its own loop in a daemon thread, with that thread's CPU time."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="bench-fake", daemon=True)
        self.fake = WebhookFake()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start(self) -> WebhookFake:
        self.thread.start()
        self.call(self.fake.start())
        return self.fake

    def cpu(self) -> float:
        async def thread_time() -> float:
            return time.thread_time()

        return self.call(thread_time())

    def stop(self) -> None:
        self.call(self.fake.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Case:
    name: str
    alerts: int


def alert(i: int, status: str, starts_at: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "SizeBench", "instance": f"node-{i}", "severity": "critical"},
        "annotations": {"summary": f"node-{i} is down", "description": "x" * 80},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-27T06:59:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": hashlib.sha256(str(i).encode()).hexdigest()[:16],
    }


def webhook(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "receiver": "bridge",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": "SizeBench"},
        "commonLabels": {"alertname": "SizeBench"},
        "commonAnnotations": {"summary": "size bench"},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}:{alertname="SizeBench"}',
        "truncatedAlerts": 0,
    }


async def ingest(store: Store, body: dict[str, Any], now: int, tiers: Tiers) -> None:
    raw = json.dumps(body).encode()
    payload = parse_webhook(raw)
    fps = tuple(a.fingerprint for a in payload.alerts)
    decision = Decision("size-bench", "sev2", "size bench", fps, tiers=tiers)
    await store.write(
        lambda c: apply_webhook(
            c,
            payload=payload,
            decisions=[decision],
            sha256=hashlib.sha256(raw).hexdigest(),
            body=None,
            now=now,
        )
    )


async def build(store: Store, alerts: int, flaps: int) -> None:
    """An incident of ``alerts`` alerts whose last one flaps ``flaps`` times towards ``hook``."""
    quiet, loud = Tiers(), Tiers(incident="hook")
    now = T0
    base = alerts - 1
    for start in range(0, base, CHUNK):
        batch = [
            alert(i, "firing", f"2026-11-27T0{5 + i % 2}:{i % 60:02d}:{(i // 60) % 60:02d}Z")
            for i in range(start, min(base, start + CHUNK))
        ]
        await ingest(store, webhook(batch), now, quiet)
    for n in range(flaps):
        now += SECOND
        status = "firing" if n % 2 == 0 else "resolved"
        starts = f"2026-11-27T06:{(n // 2) // 60 % 60:02d}:{(n // 2) % 60:02d}Z"
        await ingest(store, webhook([alert(base, status, starts)]), now, loud)


async def measure(case: Case, messages: int, workdir: Path, fake: FakeThread) -> dict[str, Any]:
    store = Store(workdir / f"{case.name}.db")
    store.open()
    try:
        started = time.perf_counter()
        await build(store, case.alerts, messages + 1)
        build_s = time.perf_counter() - started
        pending = await store.read(q.stats)
        count = await store.read(
            lambda c: c.execute("SELECT count(*) FROM incident_alerts").fetchone()[0]
        )
        async with aiohttp.ClientSession() as session:
            target = build_target(
                "hook",
                "webhook",
                {"url": fake.fake.hook_url, "secret": SECRET},
                TargetDeps(session=session),
            )
            worker = OutboxWorker(
                store, {"hook": target}, Metrics.create(), policy=DeliveryPolicy(group_size=1)
            )
            await worker.run_once()  # warm-up: templates compiled, connection open
            await worker.drain()
            before = len(fake.fake.received)
            cpu0, fake0, wall0 = time.process_time(), fake.cpu(), time.perf_counter()
            sent = 0
            while sent < messages:
                started_now = await worker.run_once()
                await worker.drain()
                if not started_now:
                    break
                sent += started_now
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0 - (fake.cpu() - fake0)
        delivered = len(fake.fake.received) - before
        sizes = {len(m["incident"]["alerts"]) for m in fake.fake.received[before:]}
        return {
            "bench": "delivery_size",
            "case": case.name,
            "incident_alerts": count,
            "messages": delivered,
            "rows_pending_before": pending.pending,
            "alerts_per_message": sorted(sizes),
            "build_s": round(build_s, 2),
            "cpu_ms_per_message": round(cpu / max(1, delivered) * 1000, 3),
            "messages_per_s": round(delivered / wall, 1) if wall > 0 else None,
        }
    finally:
        store.close()


async def run(args: argparse.Namespace, workdir: Path) -> int:
    fake = FakeThread()
    fake.start()
    try:
        cases = [Case("small", 1), Case("shown", 100), Case("large", args.alerts)]
        ratios: list[float] = []
        beyond: list[float] = []
        for r in range(args.rounds):
            lines = {}
            for case in cases:
                line = await measure(case, args.messages, workdir / f"round{r}", fake)
                line["round"] = r + 1
                print(json.dumps(line), flush=True)
                lines[case.name] = line
            large = lines["large"]["cpu_ms_per_message"]
            ratios.append(large / lines["small"]["cpu_ms_per_message"])
            beyond.append(large / lines["shown"]["cpu_ms_per_message"])
        print(
            json.dumps(
                {
                    "bench": "delivery_size",
                    "case": "summary",
                    "alerts": args.alerts,
                    "messages": args.messages,
                    "cpu_ratio_large_to_small": [round(x, 2) for x in ratios],
                    "median_ratio": round(statistics.median(ratios), 2),
                    "cpu_ratio_large_to_shown": [round(x, 2) for x in beyond],
                    "median_ratio_large_to_shown": round(statistics.median(beyond), 2),
                    "cpus": os.cpu_count(),
                    "python": sys.version.split()[0],
                }
            ),
            flush=True,
        )
        return 0
    finally:
        fake.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=50_000, help="alerts of the large incident")
    parser.add_argument("--messages", type=int, default=100, help="messages measured per case")
    parser.add_argument("--rounds", type=int, default=2, help="small/large pairs, alternating")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    if args.smoke:
        args.alerts, args.messages, args.rounds = 300, 3, 1
    if args.alerts < 101 or args.messages < 1 or args.rounds < 1:
        parser.error("--alerts must be more than 100, --messages and --rounds at least 1")
    workdir = Path(tempfile.mkdtemp(prefix="incident-bridge-delivery-size-"))
    try:
        for r in range(args.rounds):
            (workdir / f"round{r}").mkdir()
        return asyncio.run(run(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
