"""Ingest benchmark: the bridge against a bare aiohttp endpoint, driven by wrk, then SIGKILL.

For each payload size (1 and 10 alerts per webhook) it runs wrk (Lua-generated Alertmanager
payloads, a new groupKey and new fingerprints on every request, 32 connections) against

- ``bare``: bench/bare_server.py, aiohttp parsing the JSON and answering 200 (the ceiling), and
- the bridge: ``incident-bridge serve`` as a real process with a real SQLite file, bearer auth,
  synchronous=FULL, every 200 answered only after the commit that holds its rows. Two cases:
  ``bridge_ingest`` (rules that notify nobody: receive, validate, decide, commit, answer; the
  core issue's target is about this path) and ``bridge_shipped`` (the bundled rules: their
  console targets print two or three messages per new incident, on the same core, while the
  load runs);

in rounds: a bare run, then a bridge run right after it, three times; the ratio is the median of
the three neighbours' ratios, because this machine's speed drifts by tens of percent over a
minute. Before each run it waits until the bridge processes (and the benchmark's PostgreSQL
server) are idle: a bridge still delivering, or indexing the previous run's new incidents, would
slow the run after it down. It prints one JSON line per case, and after each
bridge case kills the bridge with SIGKILL and checks that the database holds at least every
alert of every webhook that got a 200.

CPU pinning (on by default when ``taskset`` exists and there are at least 2 CPUs): the server
gets CPU 0 and wrk CPU 1, so that the load generator does not steal the server's core and the
figure is "what one core of server does" (the design figures in docs/performance.md are measured
the same way). ``--no-pin`` lets the scheduler decide.

``--db postgresql`` (a throwaway server the bench starts: fsync and synchronous_commit on, as
durable as SQLite's synchronous=FULL, pinned to the bridge's CPU unless ``--pg-unpinned``) or
``--db postgresql://USER@HOST:PORT/DB`` (a running server; a new database per bridge is created
through it and dropped) adds a bridge on PostgreSQL to every case: each round is then a bare run,
the SQLite bridge and the PostgreSQL bridge one after the other (the two bridges' order swapped
every round), and a ``postgresql_vs_sqlite`` line gives the median of the rounds' PostgreSQL /
SQLite rates; ``target_postgresql_1_alert`` holds it against 0.5, p99 against 50 ms. ``--smoke``
includes PostgreSQL whenever Debian's server binaries are installed (says so when they are not,
and fails then under CI=true).

    .venv/bin/python bench/ingest.py                 # 3 rounds of 5 s per case
    .venv/bin/python bench/ingest.py --db postgresql --alerts 1 --ingest-only   # PostgreSQL too
    .venv/bin/python bench/ingest.py --duration 2 --rounds 1 --ingest-only   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench._common import SMOKE_HELP, free_port, wait_ready  # noqa: E402
from bench._pg import Place, Server, masked, missing_reason, server, skip_or_fail  # noqa: E402
from tests.integration.procs import terminate  # noqa: E402

LUA = HERE / "webhook.lua"
TOKEN = "bench-token"
# Targets from the core issue, for 1-alert payloads.
TARGET_RATIO = 0.3
TARGET_P99_MS = 50.0
# PostgreSQL's target (same machine, synchronous_commit on): this share of SQLite's rate
TARGET_PG_RATIO = 0.5


def pin(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None else []


@contextlib.contextmanager
def process(
    cmd: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        yield proc
    finally:
        terminate(proc, 15.0)


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: int
    non_2xx: int
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, data: dict[str, Any]) -> WrkResult:
        """From the ``WRK_JSON`` line the Lua scripts print at the end of a run."""
        errors = data["errors"]
        return cls(
            requests=data["requests"],
            seconds=data["duration_us"] / 1e6,
            errors=sum(errors.values()),
            non_2xx=errors["status"],
            p50_ms=data["latency_us"]["p50"] / 1000,
            p99_ms=data["latency_us"]["p99"] / 1000,
        )

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> int:
        """Responses with a 2xx/3xx status (wrk counts the rest as status errors)."""
        return self.requests - self.non_2xx


def run_wrk(
    args: argparse.Namespace,
    url: str,
    alerts: int,
    run: str,
    number: int,
    seconds: float,
    cpu: int | None,
) -> WrkResult:
    cmd = [
        *pin(cpu),
        args.wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{max(1, round(seconds))}s",  # wrk takes whole seconds
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        url + "/api/v1/alerts",
        "--",
        str(alerts),
        TOKEN,
        run,
        str(number),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr}{done.stdout}")
    out = done.stdout
    line = next((x for x in out.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no WRK_JSON line:\n{out}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    return WrkResult.of(data)


def wait_idle(pid: int, timeout: float = 120.0) -> None:
    """Until process ``pid`` uses under 5% of a CPU over 0.25 s (or ``timeout``)."""

    def cpu_ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    if not Path(f"/proc/{pid}/stat").exists():
        return
    hz = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_ticks()
        time.sleep(0.25)
        if (cpu_ticks() - before) / hz < 0.0125:
            return


def line(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def bench_size(
    args: argparse.Namespace,
    alerts: int,
    workdir: Path,
    bare_url: str,
    cpus: tuple[int | None, int | None],
    pg: Server | None,
) -> bool:
    durable = True
    backends = ["sqlite"] + (["postgresql"] if pg is not None else [])
    for case, extra in bridge_variants(args, workdir):
        rounds, ok = bench_bridge(args, case, extra, alerts, workdir, bare_url, cpus, pg)
        durable = durable and ok
        bare_rates = [bare.per_second for bare, _ in rounds]
        line(
            case="bare",
            payload_alerts=alerts,
            next_to=case,
            webhooks_per_s=round(median(bare_rates), 1),
            rounds=[round(x, 1) for x in bare_rates],
            p99_ms=round(max(a.p99_ms for a, _ in rounds), 2),
            errors=sum(a.errors for a, _ in rounds),
        )
        for backend in backends:
            runs = [(bare, by[backend]) for bare, by in rounds]
            ratios = [b.per_second / a.per_second if a.per_second else 0.0 for a, b in runs]
            ratio = median(ratios)
            p99 = max(b.p99_ms for _, b in runs)
            errors = sum(b.errors for _, b in runs)
            line(
                case=case,
                backend=backend,
                payload_alerts=alerts,
                webhooks_per_s=round(median([b.per_second for _, b in runs]), 1),
                rounds=[round(b.per_second, 1) for _, b in runs],
                p50_ms=round(median([b.p50_ms for _, b in runs]), 2),
                p99_ms=round(p99, 2),
                errors=errors,
                ratio_vs_bare=round(ratio, 3),
                ratios=[round(x, 3) for x in ratios],
            )
            if alerts == 1 and case == TARGET_CASE and backend == "sqlite":
                met = ratio >= TARGET_RATIO and p99 <= TARGET_P99_MS and errors == 0
                line(
                    case="target_1_alert",
                    measured_on=case,
                    ratio=round(ratio, 3),
                    ratio_min=TARGET_RATIO,
                    p99_ms=round(p99, 2),
                    p99_max_ms=TARGET_P99_MS,
                    errors=errors,
                    errors_max=0,
                    durable=ok,
                    met=met and ok,
                )
        if pg is not None:
            # PostgreSQL against SQLite: the median of each round's neighbours' ratio
            lite = [by["sqlite"] for _, by in rounds]
            post = [by["postgresql"] for _, by in rounds]
            vs = [
                p.per_second / s.per_second if s.per_second else 0.0
                for s, p in zip(lite, post, strict=True)
            ]
            ratio = median(vs)
            p99 = max(p.p99_ms for p in post)
            errors = sum(p.errors for p in post)
            line(
                case="postgresql_vs_sqlite",
                bridge_case=case,
                payload_alerts=alerts,
                ratio=round(ratio, 3),
                ratios=[round(x, 3) for x in vs],
            )
            if alerts == 1 and case == TARGET_CASE:
                met = ratio >= TARGET_PG_RATIO and p99 <= TARGET_P99_MS and errors == 0
                line(
                    case="target_postgresql_1_alert",
                    measured_on=case,
                    ratio_vs_sqlite=round(ratio, 3),
                    ratio_min=TARGET_PG_RATIO,
                    p99_ms=round(p99, 2),
                    p99_max_ms=TARGET_P99_MS,
                    errors=errors,
                    errors_max=0,
                    durable=ok,
                    met=met and ok,
                )
    return durable


# With no route tiers nothing is notified: the webhook -> rules -> store path alone.
NO_TARGETS_RULES = "route:\n  name: root\n"
# The core issue's target is about ingest: receive, validate, decide, commit, answer.
TARGET_CASE = "bridge_ingest"


def bridge_variants(args: argparse.Namespace, workdir: Path) -> list[tuple[str, list[str]]]:
    """``bridge_ingest``: rules that notify nobody, the ingest path the target is about.
    ``bridge_shipped``: the bundled rules, whose console targets print two or three messages per
    new incident while the load runs, on the same core (delivery is measured on its own by
    bench/delivery.py)."""
    rules = workdir / "no-targets.yaml"
    rules.write_text(NO_TARGETS_RULES)
    variants: list[tuple[str, list[str]]] = [(TARGET_CASE, ["--rules", str(rules)])]
    if not args.ingest_only:
        variants.append(("bridge_shipped", ["--rules", str(REPO / "rules")]))
    return variants


def bench_bridge(
    args: argparse.Namespace,
    case: str,
    extra: list[str],
    alerts: int,
    workdir: Path,
    bare_url: str,
    cpus: tuple[int | None, int | None],
    pg: Server | None,
) -> tuple[list[tuple[WrkResult, dict[str, WrkResult]]], bool]:
    """One bridge process per backend, each on a fresh database: warm-up, then rounds of a bare
    run and one run per backend taken one right after the other (this machine's speed drifts;
    a ratio of neighbours does not; the backends' order swaps every round), SIGKILL,
    durability."""
    server_cpu, client_cpu = cpus
    places = [Place.sqlite(workdir / f"{case}-{alerts}.db")]
    if pg is not None:
        places.append(Place.postgresql(pg, f"{case}{alerts}", workdir / f"{case}-{alerts}-pg"))
    acked = {p.backend: 0 for p in places}
    rounds: list[tuple[WrkResult, dict[str, WrkResult]]] = []
    run_number = 0
    with contextlib.ExitStack() as stack:
        bridges: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
        for place in places:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            where, more_env = place.serve_args()
            env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_BRIDGE_")}
            env["INCIDENT_BRIDGE_WEBHOOK_TOKEN"] = TOKEN
            # the API's token given, not generated into a file: with PostgreSQL the service
            # asks for one (replicas share it); the same on both backends
            env["INCIDENT_BRIDGE_API_TOKEN"] = "bench-api-token"
            env.update(more_env)
            cmd = [
                *pin(server_cpu),
                sys.executable,
                "-m",
                "bridge",
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                *where,
                "--log-format",
                "json",
                "--log-level",
                "warning",
                *extra,
                *args.bridge_arg,
            ]
            log = workdir / f"{case}-{alerts}-{place.backend}.log"
            bridge = stack.enter_context(process(cmd, log, env))
            wait_ready(url, bridge)
            bridges[place.backend] = (url, bridge)
        # Every wrk run (the warm-up too) writes to the databases: count all of their 2xx.
        if args.warmup > 0:
            run_wrk(args, bare_url, alerts, "bare-warmup", 0, args.warmup, client_cpu)
            for backend, (url, _) in bridges.items():
                warm = run_wrk(
                    args, url, alerts, f"{case}{alerts}-{backend}-warmup", 0, args.warmup,
                    client_cpu,
                )  # fmt: skip
                acked[backend] += warm.ok
        order = list(bridges)

        def settle() -> None:
            # Each run starts on a quiet machine: the other runs' work still going on (a
            # bridge's indexer catching up on a round's new incidents, mostly in PostgreSQL's
            # processes for the PostgreSQL bridge; autovacuum after a round's inserts) would
            # land on the core the measured server runs on. The smoke's figures mean nothing.
            if args.smoke:
                return
            for pid in [b.pid for _, b in bridges.values()] + (pg.pids() if pg else []):
                wait_idle(pid)

        for _ in range(args.rounds):
            settle()
            bare = run_wrk(args, bare_url, alerts, "bare", 0, args.duration, client_cpu)
            results: dict[str, WrkResult] = {}
            run_number += 1
            for backend in order:
                settle()
                url = bridges[backend][0]
                # The round in the run's name: webhook.lua's groups are named after it, and a
                # round that reused the previous round's names added alerts to its incidents
                # instead of opening new ones (a slower path on PostgreSQL, docs/performance.md)
                tag = f"{case}{alerts}-{backend}-{run_number}"
                result = run_wrk(args, url, alerts, tag, run_number, args.duration, client_cpu)
                acked[backend] += result.ok
                results[backend] = result
            order.reverse()
            rounds.append((bare, results))
        for _, bridge in bridges.values():
            bridge.kill()  # SIGKILL, right after the load: nothing gets a graceful flush
            bridge.wait(15)
    durable = True
    for place in places:
        stored = place.count("SELECT count(*) FROM incident_alerts")
        # Every webhook is a group of its own (webhook.lua): each one answered 200 opened an
        # incident; fewer means runs shared groups and measured another path.
        opened = place.count("SELECT count(*) FROM incidents")
        ok = stored >= acked[place.backend] * alerts and opened >= acked[place.backend]
        durable = durable and ok
        outbox = place.count("SELECT count(*) FROM outbox")
        webhooks = place.count("SELECT count(*) FROM webhooks")
        line(
            case="durability_after_sigkill",
            bridge_case=case,
            backend=place.backend,
            payload_alerts=alerts,
            acked_webhooks=acked[place.backend],
            acked_alerts=acked[place.backend] * alerts,
            stored_alerts=stored,
            opened_incidents=opened,
            notifications_per_webhook=round(outbox / max(1, webhooks), 2),
            ok=ok,
        )
    return rounds, durable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds per measured run (default 5)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="(bare, bridge) pairs per case; the ratio is their median (default 3)",
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of warm-up before each run (default 1)"
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--alerts", default="1,10", help="alerts per webhook, comma-separated (default 1,10)"
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin server and wrk to separate CPUs"
    )
    parser.add_argument(
        "--ingest-only",
        action="store_true",
        help="skip the bridge_shipped case (bundled rules, console deliveries)",
    )
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    parser.add_argument(
        "--bridge-arg",
        action="append",
        default=[],
        help="extra argument for `incident-bridge serve` (repeatable), e.g. --bridge-arg=--sqlite-synchronous=NORMAL",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (databases, logs)"
    )
    parser.add_argument(
        "--db",
        help="also PostgreSQL, in the same rounds as SQLite: `postgresql` (a throwaway server "
        "the bench starts, fsync and synchronous_commit on) or `postgresql://USER@HOST:PORT/DB` "
        "(a running server; a new database per bridge is created through it and dropped)",
    )
    parser.add_argument(
        "--pg-unpinned",
        action="store_true",
        help="do not pin the throwaway PostgreSQL server to the bridge's CPU",
    )
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    if args.db is not None and args.db != "postgresql" and not args.db.startswith("postgres"):
        parser.error("--db: `postgresql` or a postgresql:// URL")
    if args.smoke:
        # two rounds: the second must open incidents of its own too (durability_after_sigkill)
        args.duration, args.warmup, args.rounds, args.alerts = 1.0, 0.0, 2, "1"
        if args.db is None:
            reason = missing_reason()
            if reason is None:
                args.db = "postgresql"
            elif skip_or_fail("bench/ingest.py --smoke", reason):
                return 1
    if not Path(args.wrk).exists():
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    can_pin = (
        not args.no_pin
        and shutil.which("taskset") is not None
        and len(os.sched_getaffinity(0)) >= 2
    )
    cpus: tuple[int | None, int | None] = (None, None)
    if can_pin:
        mine = sorted(os.sched_getaffinity(0))
        cpus = (mine[0], mine[1])
    sizes = [int(x) for x in args.alerts.split(",") if x]

    workdir = Path(tempfile.mkdtemp(prefix="incident-bridge-bench-"))
    ok = True
    stack = contextlib.ExitStack()  # the PostgreSQL server, when there is one
    try:
        line(
            case="setup",
            pinned={"server_cpu": cpus[0], "wrk_cpu": cpus[1]} if can_pin else None,
            cpus=os.cpu_count(),
            connections=args.connections,
            wrk_threads=args.threads,
            duration_s=args.duration,
            python=sys.version.split()[0],
        )
        pg: Server | None = None
        if args.db is not None:
            pg_cpu = None if args.pg_unpinned else cpus[0]
            pg = stack.enter_context(server(args.db, pg_cpu))
            line(
                case="postgresql",
                server=masked(pg.admin_url),
                started_by_bench=pg.owned,
                pinned_cpu=pg_cpu if pg.owned else None,
                **pg.settings(),
            )
        port = free_port()
        bare_url = f"http://127.0.0.1:{port}"
        bare_cmd = [
            *pin(cpus[0]),
            sys.executable,
            str(HERE / "bare_server.py"),
            "--listen",
            f"127.0.0.1:{port}",
        ]
        with process(bare_cmd, workdir / "bare.log") as bare:
            wait_ready(bare_url, bare)
            for alerts in sizes:
                ok = bench_size(args, alerts, workdir, bare_url, cpus, pg) and ok
    finally:
        stack.close()
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
