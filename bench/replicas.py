"""Replicas benchmark: webhook throughput and p99 with one, two and three ``incident-bridge
serve`` replicas on one PostgreSQL database, and how long each background loop takes to move to
another replica when its leader is SIGKILLed (docs/ha.md).

Each round starts one replica (the baseline), then two, then three, each set on a fresh database
of one PostgreSQL server (the benchmark's own: fsync and synchronous_commit on, or
``--db postgresql://...``); wrk sends 1-alert webhooks that each open an incident (the Lua script
of bench/ingest.py), its connections split evenly over the replicas (what a Service spreading
connections does), so the load offered is the same for every count. A line per set gives the
rate, the worst replica's p99 and the errors; ``replicas_vs_one`` the median over the rounds of
each count's rate against one replica's in the same round.

What to expect on this machine (2 cores): the replicas, wrk and PostgreSQL share two cores, and
PostgreSQL's write transactions are serial (one advisory lock: docs/ha.md), so more replicas
bring availability, not throughput; a ratio under 1 is the price of the coordination.

The failover part starts three replicas (the scheduler's tick ``--scheduler-interval`` set to
``--scheduler-tick``, the indexer's lease its fixed 5 s), and for each background loop finds its
leader in ``incident_bridge_leader``, SIGKILLs it, and times until another replica says it leads
(``failover_<loop>``, in seconds and in ticks: a lease lasts one tick and is renewed every half,
so the bound is 1.5 ticks plus the probe's own delay).

    .venv/bin/python bench/replicas.py                      # 3 rounds of 5 s
    .venv/bin/python bench/replicas.py --smoke              # a few seconds (CI)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench._common import SMOKE_HELP, free_port, wait_ready  # noqa: E402
from bench._pg import Missing, Server, missing_reason, server, skip_or_fail  # noqa: E402
from bench.ingest import NO_TARGETS_RULES, TOKEN, WrkResult, line, median, run_wrk  # noqa: E402
from tests.integration.procs import terminate  # noqa: E402

API_TOKEN = "bench-replicas-api-token"
INDEXER_TICK_S = 5.0  # bridge/indexer.py LEASE_TICK_S


class Replica:
    def __init__(self, workdir: Path, url: str, n: int, extra: list[str]) -> None:
        self.workdir = workdir / f"replica-{n}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.database_url = url
        self.n = n
        self.extra = extra
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_BRIDGE_")}
        env.update(
            INCIDENT_BRIDGE_WEBHOOK_TOKEN=TOKEN,
            INCIDENT_BRIDGE_API_TOKEN=API_TOKEN,
            INCIDENT_BRIDGE_DB=self.database_url,
        )
        rules = self.workdir / "rules.yaml"
        rules.write_text(NO_TARGETS_RULES)
        cmd = [
            sys.executable, "-m", "bridge", "serve", "--listen", f"127.0.0.1:{self.port}",
            "--data-dir", str(self.workdir), "--rules", str(rules), "--replica-id",
            f"replica-{self.n}", "--log-format", "json", "--log-level", "warning", *self.extra,
        ]  # fmt: skip
        with (self.workdir / "log").open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        wait_ready(self.url, self.proc, 30)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 15.0)

    def leads(self, loop: str) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(self.url + "/metrics", timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            return False
        return any(
            s.startswith("incident_bridge_leader{") and f'loop="{loop}"' in s and s.endswith(" 1.0")
            for s in text.splitlines()
        )


@contextlib.contextmanager
def replicas(workdir: Path, url: str, count: int, extra: list[str]) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    try:
        for n in range(count):
            replica = Replica(workdir, url, n, extra)
            started.append(replica)
            replica.start()
        yield started
    finally:
        for replica in started:
            replica.stop()


def load(
    args: argparse.Namespace, running: list[Replica], tag: str, number: int
) -> tuple[float, float, int]:
    """wrk against every replica at once, the connections split evenly; (rate, worst p99 ms,
    errors)."""
    per = argparse.Namespace(**vars(args))
    per.connections = max(1, args.connections // len(running))
    per.threads = 1
    with concurrent.futures.ThreadPoolExecutor(len(running)) as pool:
        futures = [
            pool.submit(run_wrk, per, r.url, 1, f"{tag}-{r.n}", number, args.duration, None)
            for r in running
        ]
        results: list[WrkResult] = [f.result() for f in futures]
    seconds = max(r.seconds for r in results)
    rate = sum(r.ok for r in results) / seconds if seconds else 0.0
    return rate, max(r.p99_ms for r in results), sum(r.errors for r in results)


def throughput(args: argparse.Namespace, pg: Server, workdir: Path) -> bool:
    counts = [int(c) for c in args.replicas.split(",")]
    ratios: dict[int, list[float]] = {c: [] for c in counts}
    ok = True
    for round_ in range(args.rounds):
        rates: dict[int, float] = {}
        for count in counts:
            url = pg.new_database(f"r{count}")
            with replicas(workdir / f"round{round_}-{count}", url, count, []) as running:
                rate, p99, errors = load(args, running, f"r{round_}x{count}", round_)
            rates[count] = rate
            ok = ok and errors == 0 and rate > 0
            line(case="replicas", round=round_, replicas=count, per_second=round(rate),
                 p99_ms=round(p99, 1), errors=errors)  # fmt: skip
        for count in counts:
            ratios[count].append(rates[count] / rates[counts[0]] if rates[counts[0]] else 0.0)
    line(
        case="replicas_vs_one",
        **{f"replicas_{c}": round(median(r), 3) for c, r in ratios.items()},
        rounds={c: [round(x, 3) for x in r] for c, r in ratios.items()},
    )
    return ok


def failover(args: argparse.Namespace, pg: Server, workdir: Path) -> bool:
    url = pg.new_database("failover")
    ticks = {"scheduler": args.scheduler_tick, "indexer": INDEXER_TICK_S}
    ok = True
    extra = ["--scheduler-interval", str(args.scheduler_tick)]
    with replicas(workdir / "failover", url, 3, extra) as running:
        for loop, lease in ticks.items():
            deadline = time.monotonic() + 10 * lease
            leaders: list[Replica] = []
            while time.monotonic() < deadline:
                leaders = [r for r in running if r.leads(loop)]
                if len(leaders) == 1:
                    break
                time.sleep(0.05)
            if len(leaders) != 1:
                line(case=f"failover_{loop}", ok=False, why=f"{len(leaders)} leaders")
                ok = False
                continue
            (leader,) = leaders
            leader.kill()
            killed = time.monotonic()
            took = None
            while time.monotonic() - killed < 10 * lease:
                if any(r.leads(loop) for r in running if r is not leader):
                    took = time.monotonic() - killed
                    break
                time.sleep(0.05)
            good = took is not None and took <= 2 * lease + 1.0
            ok = ok and good
            line(
                case=f"failover_{loop}",
                seconds=None if took is None else round(took, 2),
                ticks=None if took is None else round(took / lease, 2),
                tick_seconds=lease,
                ok=good,
            )
            leader.start()
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="postgresql", help="postgresql or postgresql://...")
    parser.add_argument("--replicas", default="1,2,3", help="replica counts, the first the base")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=30)
    parser.add_argument("--scheduler-tick", type=float, default=1.0)
    parser.add_argument("--no-failover", action="store_true")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.rounds, args.replicas = 1.0, 1, "1,2"
    if not Path(args.wrk).exists():
        return skip_or_fail("replicas", "wrk is not installed")
    if args.db == "postgresql" and (reason := missing_reason()) is not None:
        return skip_or_fail("replicas", reason)
    workdir = Path(tempfile.mkdtemp(prefix="incident-bridge-bench-replicas-"))
    try:
        with server(args.db) as pg:
            ok = throughput(args, pg, workdir)
            if not args.no_failover:
                ok = failover(args, pg, workdir) and ok
    except Missing as exc:
        return skip_or_fail("replicas", str(exc))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
