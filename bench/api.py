"""API benchmark: people's writes and the incident list, the bridge next to a bare aiohttp handler.

Two figures, each as the bridge against bench/bare_server.py (same framework, same requests, no
auth, no store) in alternating rounds, the ratio being the median of the rounds' ratios:

- ``writes``: notes (3 of 4) and acknowledges (1 of 4) over 100 incidents at 32 connections
  (``incident-bridge serve`` as a real process, a real SQLite file, synchronous=FULL, every 200
  answered after its commit). It prints throughput and p99, then checks that the database holds
  one timeline entry per note answered 200.
- ``list``: ``GET /api/v1/incidents?limit=50`` (and a filtered one, ``status=triggered&team=``)
  with 100,000 incidents in the store, from one client (p99 against the 20 ms target: what a
  request costs on its own) and at 8 connections (where each also waits for the others).

    .venv/bin/python bench/api.py                       # 3 rounds of 5 s per case
    .venv/bin/python bench/api.py --rounds 1 --duration 2 --incidents 20000   # a quick look
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench._common import SMOKE_HELP  # noqa: E402
from bench.ingest import (  # noqa: E402
    WrkResult,
    free_port,
    line,
    median,
    pin,
    process,
    wait_idle,
    wait_ready,
)

LUA = HERE / "api.lua"
TOKEN = "bench-api-token-0123456789"
TARGET_LIST_P99_MS = 20.0
WRITE_INCIDENTS = 100


def wrk(
    args: argparse.Namespace, url: str, mode: str, seconds: float, connections: int, cpu: int | None
) -> WrkResult:
    cmd = [
        *pin(cpu),
        args.wrk,
        f"-t{min(args.threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        url,
        "--",
        mode,
        TOKEN,
        str(WRITE_INCIDENTS),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    out = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or out is None:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr}{done.stdout}")
    data = json.loads(out.removeprefix("WRK_JSON "))
    return WrkResult.of(data)


def populate(db: Path, count: int) -> float:
    """``count`` incidents (one alert each; teams team-0..team-9) written through the store's
    own ingest function, as webhooks would write them; returns the seconds it took."""
    from bridge.core.alertmanager import parse_webhook
    from bridge.core.policy import Decision
    from bridge.store import Store
    from bridge.store.ingest import IngestItem, apply_webhooks

    store = Store(db)
    store.open()  # the schema, then the store is closed so that `serve` can take the lock
    store.close()
    started = time.monotonic()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # filling a benchmark database only
    now = time.time_ns()
    batch: list[IngestItem] = []
    for n in range(count):
        group = f"bench-{n}"
        raw = json.dumps(
            {
                "version": "4",
                "groupKey": group,
                "status": "firing",
                "receiver": "bridge",
                "truncatedAlerts": 0,
                "alerts": [
                    {
                        "status": "firing",
                        "labels": {"alertname": "BenchDown", "group": group},
                        "annotations": {"summary": f"bench incident {n}"},
                        "startsAt": "2026-11-28T06:00:00Z",
                        "endsAt": "0001-01-01T00:00:00Z",
                    }
                ],
            }
        ).encode()
        payload = parse_webhook(raw)
        decision = Decision(
            key=group,
            severity="sev2",
            title=f"bench incident {n}",
            fingerprints=tuple(a.fingerprint for a in payload.alerts),
            team=f"team-{n % 10}",
        )
        sha = hashlib.sha256(raw).hexdigest()
        batch.append(IngestItem(payload, (decision,), sha, None, now + n))
        if len(batch) == 1000 or n == count - 1:
            conn.execute("BEGIN")
            apply_webhooks(conn, batch)
            conn.execute("COMMIT")
            batch = []
    conn.close()
    return time.monotonic() - started


def timeline_notes(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM timeline WHERE kind = 'note'").fetchone()[0])
    finally:
        conn.close()


def compare(
    args: argparse.Namespace,
    case: str,
    mode: str,
    connections: int,
    bridge_url: str,
    bare_url: str,
    bridge_pid: int,
    cpus: tuple[int | None, int | None],
) -> list[tuple[WrkResult, WrkResult]]:
    rounds = []
    for _ in range(args.rounds):
        wait_idle(bridge_pid)
        if args.warmup > 0:  # wrk runs 1 s at least: --warmup 0 (--smoke) skips it
            wrk(args, bare_url, mode, args.warmup, connections, cpus[1])
        bare = wrk(args, bare_url, mode, args.duration, connections, cpus[1])
        if args.warmup > 0:
            wrk(args, bridge_url, mode, args.warmup, connections, cpus[1])
        bridge = wrk(args, bridge_url, mode, args.duration, connections, cpus[1])
        rounds.append((bare, bridge))
    ratios = [b.per_second / a.per_second if a.per_second else 0.0 for a, b in rounds]
    line(
        case=case,
        connections=connections,
        bare_per_s=round(median([a.per_second for a, _ in rounds]), 1),
        bare_p99_ms=round(max(a.p99_ms for a, _ in rounds), 2),
        bridge_per_s=round(median([b.per_second for _, b in rounds]), 1),
        bridge_p50_ms=round(median([b.p50_ms for _, b in rounds]), 2),
        bridge_p99_ms=round(max(b.p99_ms for _, b in rounds), 2),
        errors=sum(b.errors for _, b in rounds),
        ratio_vs_bare=round(median(ratios), 3),
        ratios=[round(x, 3) for x in ratios],
    )
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.rounds, args.warmup, args.incidents = 0.5, 1, 0.0, 1000
    if not Path(args.wrk).exists():
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    cpus: tuple[int | None, int | None] = (None, None)
    if not args.no_pin and shutil.which("taskset") and len(os.sched_getaffinity(0)) >= 2:
        mine = sorted(os.sched_getaffinity(0))
        cpus = (mine[0], mine[1])
    work = Path(tempfile.mkdtemp(prefix="incident-bridge-api-bench-"))
    ok = True
    try:
        line(case="setup", pinned=cpus[0] is not None, python=sys.version.split()[0])
        bare_port = free_port()
        bare_url = f"http://127.0.0.1:{bare_port}"
        bare_cmd = [
            *pin(cpus[0]),
            sys.executable,
            str(HERE / "bare_server.py"),
            "--listen",
            f"127.0.0.1:{bare_port}",
        ]
        with process(bare_cmd, work / "bare.log") as bare:
            wait_ready(bare_url, bare)
            for case, count in (("writes", WRITE_INCIDENTS), ("list", args.incidents)):
                db = work / f"{case}.db"
                seconds = populate(db, count)
                line(case=f"{case}_setup", incidents=count, populate_s=round(seconds, 1))
                (work / "rules.yaml").write_text("route:\n  name: root\n")
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_BRIDGE_")}
                env.update(INCIDENT_BRIDGE_API_TOKEN=TOKEN, INCIDENT_BRIDGE_WEBHOOK_TOKEN=TOKEN)
                cmd = [
                    *pin(cpus[0]),
                    sys.executable,
                    "-m",
                    "bridge",
                    "serve",
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--db",
                    str(db),
                    "--rules",
                    str(work / "rules.yaml"),
                    "--log-level",
                    "warning",
                ]
                with process(cmd, work / f"{case}.log", env=env) as bridge:
                    wait_ready(url, bridge)
                    if case == "writes":
                        rounds = compare(
                            args, "writes", "write", 32, url, bare_url, bridge.pid, cpus
                        )
                        # 3 of 4 requests are notes (the rest acknowledges)
                        answered = sum(round(b.ok * 3 / 4) for _, b in rounds)
                        stored = timeline_notes(db)
                        # wrk's warm-up runs wrote notes too: at least the measured ones are in.
                        durable = stored >= answered * 0.99
                        ok = ok and durable
                        line(
                            case="writes_durable",
                            notes_stored=stored,
                            notes_measured_approx=answered,
                            ok=durable,
                        )
                    else:
                        # One client: the latency a request has on its own (the target);
                        # then 8 at once, where each also waits for the others.
                        run = (url, bare_url, bridge.pid, cpus)
                        rounds = compare(args, "list", "list", 1, *run)
                        rounds += compare(args, "list_filtered", "list-filtered", 1, *run)
                        compare(args, "list_8_connections", "list", 8, *run)
                        p99 = max(b.p99_ms for _, b in rounds)
                        met = p99 <= TARGET_LIST_P99_MS
                        line(
                            case="target_list_p99",
                            incidents=count,
                            p99_ms=round(p99, 2),
                            p99_max_ms=TARGET_LIST_P99_MS,
                            met=met,
                        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
