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

``--db postgresql`` (a throwaway durable server) or ``--db postgresql://...`` (a running server)
adds a bridge on PostgreSQL to both figures, in the same rounds (bare, SQLite, PostgreSQL), with
the PostgreSQL / SQLite ratio; its incidents are written through the same ingest function.
``--smoke`` includes PostgreSQL whenever its binaries are installed (bench/_pg.py).

    .venv/bin/python bench/api.py                       # 3 rounds of 5 s per case
    .venv/bin/python bench/api.py --db postgresql --rounds 2 --duration 3   # both backends
    .venv/bin/python bench/api.py --rounds 1 --duration 2 --incidents 20000   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench._common import SMOKE_HELP  # noqa: E402
from bench._pg import Place, Server, masked, missing_reason, server, skip_or_fail  # noqa: E402
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

if TYPE_CHECKING:
    from bridge.store.ingest import IngestItem

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


def batches(count: int) -> Iterator[list[IngestItem]]:
    """``count`` incidents (one alert each; teams team-0..team-9) as the store's ingest function
    takes them, as webhooks would write them, 1000 at a time."""
    from bridge.core.alertmanager import parse_webhook
    from bridge.core.policy import Decision
    from bridge.store.ingest import IngestItem

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
            yield batch
            batch = []


def populate(place: Place, count: int) -> float:
    """``count`` incidents written through the store's own ingest function (``batches``) into
    a new store on ``place``'s backend; returns the seconds it took."""
    return fill(place, batches(count))


def fill(place: Place, items: Iterable[list[IngestItem]], then: Sequence[str] = ()) -> float:
    """A new store on ``place``'s backend (the schema made, then closed so that `serve` can
    take it), the batches ``items`` written through the store's own ingest function, then the
    statements ``then`` in one transaction, the statistics gathered; the seconds it took."""
    from bridge.core.dburl import DatabaseUrl
    from bridge.store import new_store
    from bridge.store.ingest import apply_webhooks

    store = new_store(place.path, url=None if place.url is None else DatabaseUrl.parse(place.url))
    store.open()
    store.close()
    started = time.monotonic()
    if place.url is None:
        conn = sqlite3.connect(place.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")  # filling a benchmark database only
        for batch in items:
            conn.execute("BEGIN")
            apply_webhooks(conn, batch)
            conn.execute("COMMIT")
        conn.execute("BEGIN")
        for sql in then:
            conn.execute(sql)
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.close()
        return time.monotonic() - started
    import psycopg

    from bridge.store.postgres.connection import PgConnection, configure

    with psycopg.connect(place.url, autocommit=True) as raw:
        configure(raw)
        raw.execute("SET synchronous_commit = off")  # filling a benchmark database only
        pg = cast(sqlite3.Connection, PgConnection(raw))
        for batch in items:
            with raw.transaction():
                apply_webhooks(pg, batch)
        with raw.transaction():
            for sql in then:
                pg.execute(sql)
        raw.execute("ANALYZE")
    return time.monotonic() - started


def compare(
    args: argparse.Namespace,
    case: str,
    mode: str,
    connections: int,
    bridges: dict[str, tuple[str, int]],
    bare_url: str,
    cpus: tuple[int | None, int | None],
) -> list[tuple[WrkResult, dict[str, WrkResult]]]:
    """Rounds of a bare run and one run per bridge (``bridges``: backend -> url, pid), one right
    after the other, the bridges' order swapped every round; a line per backend, and
    PostgreSQL against SQLite when both ran."""
    rounds: list[tuple[WrkResult, dict[str, WrkResult]]] = []
    order = list(bridges)
    for _ in range(args.rounds):
        for _, pid in bridges.values():
            wait_idle(pid)
        if args.warmup > 0:  # wrk runs 1 s at least: --warmup 0 (--smoke) skips it
            wrk(args, bare_url, mode, args.warmup, connections, cpus[1])
        bare = wrk(args, bare_url, mode, args.duration, connections, cpus[1])
        results: dict[str, WrkResult] = {}
        for backend in order:
            url = bridges[backend][0]
            if args.warmup > 0:
                wrk(args, url, mode, args.warmup, connections, cpus[1])
            results[backend] = wrk(args, url, mode, args.duration, connections, cpus[1])
        order.reverse()
        rounds.append((bare, results))
    for backend in bridges:
        runs = [(a, by[backend]) for a, by in rounds]
        ratios = [b.per_second / a.per_second if a.per_second else 0.0 for a, b in runs]
        line(
            case=case,
            backend=backend,
            connections=connections,
            bare_per_s=round(median([a.per_second for a, _ in runs]), 1),
            bare_p99_ms=round(max(a.p99_ms for a, _ in runs), 2),
            bridge_per_s=round(median([b.per_second for _, b in runs]), 1),
            bridge_p50_ms=round(median([b.p50_ms for _, b in runs]), 2),
            bridge_p99_ms=round(max(b.p99_ms for _, b in runs), 2),
            errors=sum(b.errors for _, b in runs),
            ratio_vs_bare=round(median(ratios), 3),
            ratios=[round(x, 3) for x in ratios],
        )
    if "postgresql" in bridges and "sqlite" in bridges:
        vs = [
            by["postgresql"].per_second / by["sqlite"].per_second if by["sqlite"].per_second else 0
            for _, by in rounds
        ]
        line(
            case=f"{case}_postgresql_vs_sqlite",
            connections=connections,
            ratio=round(median(vs), 3),
            ratios=[round(x, 3) for x in vs],
        )
    return rounds


def start_bridge(
    stack: contextlib.ExitStack,
    place: Place,
    work: Path,
    cpus: tuple[int | None, int | None],
) -> tuple[str, int]:
    """``incident-bridge serve`` on ``place`` until ``stack`` closes; its URL and pid."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    where, more_env = place.serve_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_BRIDGE_")}
    env.update(INCIDENT_BRIDGE_API_TOKEN=TOKEN, INCIDENT_BRIDGE_WEBHOOK_TOKEN=TOKEN, **more_env)
    cmd = [
        *pin(cpus[0]),
        sys.executable,
        "-m",
        "bridge",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        *where,
        "--rules",
        str(work / "rules.yaml"),
        "--log-level",
        "warning",
    ]
    log = work / f"{place.path.name}-{place.backend}.log"
    bridge = stack.enter_context(process(cmd, log, env=env))
    wait_ready(url, bridge)
    return url, bridge.pid


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
    parser.add_argument(
        "--db",
        help="also PostgreSQL, in the same rounds as SQLite: `postgresql` (a throwaway server "
        "the bench starts, fsync and synchronous_commit on) or `postgresql://USER@HOST:PORT/DB` "
        "(a running server; new databases are created through it and dropped)",
    )
    parser.add_argument(
        "--pg-unpinned",
        action="store_true",
        help="do not pin the throwaway PostgreSQL server to the bridge's CPU",
    )
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    if args.db is not None and not args.db.startswith("postgres"):
        parser.error("--db: `postgresql` or a postgresql:// URL")
    if args.smoke:
        args.duration, args.rounds, args.warmup, args.incidents = 0.5, 1, 0.0, 1000
        if args.db is None:
            reason = missing_reason()
            if reason is None:
                args.db = "postgresql"
            elif skip_or_fail("bench/api.py --smoke", reason):
                return 1
    if not Path(args.wrk).exists():
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    cpus: tuple[int | None, int | None] = (None, None)
    if not args.no_pin and shutil.which("taskset") and len(os.sched_getaffinity(0)) >= 2:
        mine = sorted(os.sched_getaffinity(0))
        cpus = (mine[0], mine[1])
    work = Path(tempfile.mkdtemp(prefix="incident-bridge-api-bench-"))
    ok = True
    stack = contextlib.ExitStack()  # the PostgreSQL server, when there is one
    try:
        line(case="setup", pinned=cpus[0] is not None, python=sys.version.split()[0])
        pg: Server | None = None
        if args.db is not None:
            pg_cpu = None if args.pg_unpinned else cpus[0]
            pg = stack.enter_context(server(args.db, pg_cpu))
            line(case="postgresql", server=masked(pg.admin_url), **pg.settings())
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
            (work / "rules.yaml").write_text("route:\n  name: root\n")
            for case, count in (("writes", WRITE_INCIDENTS), ("list", args.incidents)):
                with contextlib.ExitStack() as bridges_up:
                    places: list[Place] = [Place.sqlite(work / f"{case}.db")]
                    if pg is not None:
                        places.append(Place.postgresql(pg, case, work / f"{case}-pg"))
                    bridges: dict[str, tuple[str, int]] = {}
                    for place in places:
                        seconds = populate(place, count)
                        line(
                            case=f"{case}_setup",
                            backend=place.backend,
                            incidents=count,
                            populate_s=round(seconds, 1),
                        )
                        bridges[place.backend] = start_bridge(bridges_up, place, work, cpus)
                    if case == "writes":
                        rounds = compare(args, "writes", "write", 32, bridges, bare_url, cpus)
                        for place in places:
                            # 3 of 4 requests are notes (the rest acknowledges)
                            answered = sum(round(by[place.backend].ok * 3 / 4) for _, by in rounds)
                            stored = place.count(
                                "SELECT count(*) FROM timeline WHERE kind = 'note'"
                            )
                            # wrk's warm-up runs wrote notes too: at least the measured ones are in.
                            durable = stored >= answered * 0.99
                            ok = ok and durable
                            line(
                                case="writes_durable",
                                backend=place.backend,
                                notes_stored=stored,
                                notes_measured_approx=answered,
                                ok=durable,
                            )
                    else:
                        # One client: the latency a request has on its own (the target);
                        # then 8 at once, where each also waits for the others.
                        rounds = compare(args, "list", "list", 1, bridges, bare_url, cpus)
                        rounds += compare(
                            args, "list_filtered", "list-filtered", 1, bridges, bare_url, cpus
                        )
                        if not args.smoke:  # the smoke's seconds go to the two above
                            compare(args, "list_8_connections", "list", 8, bridges, bare_url, cpus)
                        for place in places:
                            p99 = max(by[place.backend].p99_ms for _, by in rounds)
                            line(
                                case="target_list_p99",
                                backend=place.backend,
                                incidents=count,
                                p99_ms=round(p99, 2),
                                p99_max_ms=TARGET_LIST_P99_MS,
                                met=p99 <= TARGET_LIST_P99_MS,
                            )
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
