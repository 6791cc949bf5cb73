"""Incident metrics benchmark: scrape time, start-up time and the 0011 backfill with many
incidents, against an empty store in the same run; and the triggers' cost per incident write.

The big store is built fast with direct SQL (a recursive CTE, no triggers): migrations up to
0010, ``--incidents`` incidents (default 1,000,000; severities, teams, routes and milestones
spread over them, 1 in 50 reopened, a few hundred still open), then migration 0011 timed (the
backfill an upgrade runs once). The search marks are set past the last incident, as in a store
the indexer has caught up with, so that the indexer does not index a million incidents while
the scrapes are timed. Then, for the empty store and the big one alike, ``incident-bridge serve``
as a real process: start-up (exec to ``/-/ready``, median of ``--starts``) and ``GET /metrics``
(median and p99 of ``--scrapes`` sequential scrapes, after a warm-up scrape). The ratios are big
over empty.

``--triggers``: the cost of the triggers on the writes a webhook makes to ``incidents`` (a new
incident, a milestone, an update that changes no milestone), with and without them, in one
process on a scratch file (synchronous=OFF, so that it is CPU, not fsync), alternated
``--rounds`` times.

    .venv/bin/python bench/metrics.py                       # 1,000,000 incidents
    .venv/bin/python bench/metrics.py --incidents 100000 --scrapes 50
    .venv/bin/python bench/metrics.py --triggers-only
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import sqlite_utils

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench._common import SMOKE_HELP, free_port, wait_ready  # noqa: E402
from bridge.store.migrations import MIGRATIONS, migrate  # noqa: E402
from tests.integration.procs import terminate  # noqa: E402

NS = 10**9
TARGET_SCRAPE_MS = 50.0
TARGET_START_S = 5.0


def build(path: Path, incidents: int) -> dict[str, float]:
    """The store with ``incidents`` incidents; returns the build and backfill times."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    db = sqlite_utils.Database(conn)
    migrate(db, [m for m in MIGRATIONS if m[0] < "0011"])
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    # i: the incident; started an hour apart back from now; durations spread by i's residues
    now = time.time_ns()
    conn.execute(
        f"""WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {incidents})
        INSERT INTO incidents (id, key, title, severity, status, route, team, started_at,
            opened_at, acknowledged_at, mitigated_at, resolved_at, closed_at, updated_at)
        SELECT i, 'k' || (i % 5000), 'Incident ' || i,
            'sev' || (1 + i % 4),
            CASE WHEN i > {incidents} - 300 THEN 'triggered' WHEN i % 3 = 0 THEN 'closed'
                 ELSE 'resolved' END,
            CASE i % 3 WHEN 0 THEN 'payments' WHEN 1 THEN 'platform' ELSE 'default' END,
            CASE i % 7 WHEN 0 THEN NULL WHEN 1 THEN 'alert-team-' || (i % 97)
                 ELSE 'team-' || (i % 6) END,
            s, s + 30000000000 + (i % 11) * 10000000000,
            CASE WHEN i > {incidents} - 300 OR i % 9 = 0 THEN NULL
                 ELSE s + (60 + (i % 1000) * 7) * {NS} END,
            CASE WHEN i > {incidents} - 300 THEN NULL ELSE s + (600 + (i % 997) * 60) * {NS} END,
            CASE WHEN i > {incidents} - 300 THEN NULL ELSE s + (3600 + (i % 991) * 300) * {NS} END,
            CASE WHEN i % 3 = 0 THEN s + 900000 * {NS} END,
            s
        FROM (SELECT i, {now} - ({incidents} - i) * 3600 * {NS} AS s FROM c)"""
    )
    conn.execute(
        "INSERT INTO timeline (incident_id, time, kind, actor, text) "
        "SELECT id, opened_at, 'reopened', 'alertmanager', 'Reopened' FROM incidents "
        "WHERE id % 50 = 0"
    )
    conn.execute(
        "UPDATE search_marks SET value = (SELECT max(id) FROM incidents) "
        "WHERE name IN ('incidents', 'similar')"
    )
    conn.execute(
        "UPDATE search_marks SET value = (SELECT max(id) FROM timeline) WHERE name = 'timeline'"
    )
    conn.execute("COMMIT")
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    applied = migrate(db, [m for m in MIGRATIONS if m[0] == "0011_metrics"])
    backfill = time.perf_counter() - t0
    assert applied == ["0011_metrics"], applied
    # the migrations after 0011 (whatever they are by now), as an upgrade runs them: the
    # service refuses to start on a database it has not fully migrated
    t0 = time.perf_counter()
    later = migrate(db)
    later_s = time.perf_counter() - t0
    assert all(name > "0011" for name in later), later
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {
        "build_s": round(built, 2),
        "backfill_0011_s": round(backfill, 2),
        "later_migrations": len(later),
        "later_migrations_s": round(later_s, 2),
    }


def serve(db: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "bridge", "serve", "--listen", f"127.0.0.1:{port}"]
    cmd += ["--db", str(db)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=db.parent,
        )


def measure(db: Path, starts: int, scrapes: int) -> dict[str, float]:
    start_times: list[float] = []
    scrape_ms: list[float] = []
    size = 0
    for n in range(starts):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        proc = serve(db, port, db.parent / "serve.log")
        try:
            wait_ready(url, proc, 120.0, what="serve", every=0.01)
            start_times.append(time.perf_counter() - t0)
            if n == 0:
                with urllib.request.urlopen(url + "/metrics", timeout=30) as resp:
                    resp.read()  # warm-up
                for _ in range(scrapes):
                    t1 = time.perf_counter()
                    with urllib.request.urlopen(url + "/metrics", timeout=30) as resp:
                        body = resp.read()
                    scrape_ms.append((time.perf_counter() - t1) * 1000)
                    size = len(body)
        finally:
            terminate(proc, 30.0)
    scrape_ms.sort()
    return {
        "start_s": round(statistics.median(start_times), 3),
        "scrape_ms_p50": round(statistics.median(scrape_ms), 2),
        "scrape_ms_p99": round(scrape_ms[min(len(scrape_ms) - 1, int(len(scrape_ms) * 0.99))], 2),
        "scrape_bytes": size,
    }


UPSERT = (
    "INSERT INTO incidents (id, key, title, severity, status, route, team, started_at, "
    "opened_at, acknowledged_at, updated_at) VALUES (?, 'k', 't', 'sev1', ?, 'r', 'pay', 0, ?, "
    "?, ?) ON CONFLICT(id) DO UPDATE SET status = excluded.status, severity = excluded.severity, "
    "route = excluded.route, team = excluded.team, acknowledged_at = excluded.acknowledged_at, "
    "mitigated_at = excluded.mitigated_at, resolved_at = excluded.resolved_at, "
    "updated_at = excluded.updated_at"
)


def trigger_round(triggers: bool, n: int) -> dict[str, float]:
    """Microseconds per transaction: a new incident, its acknowledgement, an update changing no
    milestone (the same upsert ingest uses: every column assigned, so every UPDATE OF trigger
    evaluates its WHEN)."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "t.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        migrate(sqlite_utils.Database(conn))
        if not triggers:
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'metric_%'"
            ).fetchall():
                conn.execute(f"DROP TRIGGER {name}")
        out = {}
        for phase, status, ack in (
            ("insert", "triggered", None),
            ("milestone", "acknowledged", 100 * NS),
            ("no_milestone", "acknowledged", 100 * NS),
        ):
            t0 = time.perf_counter()
            for i in range(1, n + 1):
                conn.execute("BEGIN")
                conn.execute(UPSERT, (i, status, 45 * NS, ack, time.time_ns()))
                conn.execute("COMMIT")
            out[phase] = (time.perf_counter() - t0) / n * 1e6
        conn.close()
        return out


def triggers_bench(rounds: int, n: int) -> dict[str, object]:
    without: list[dict[str, float]] = []
    with_: list[dict[str, float]] = []
    for _ in range(rounds):
        without.append(trigger_round(False, n))
        with_.append(trigger_round(True, n))
    result: dict[str, object] = {"case": "triggers", "writes_per_phase": n, "rounds": rounds}
    for phase in ("insert", "milestone", "no_milestone"):
        a = statistics.median(r[phase] for r in without)
        b = statistics.median(r[phase] for r in with_)
        result[phase] = {
            "without_us": round(a, 1),
            "with_us": round(b, 1),
            "added_us": round(b - a, 1),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=100)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trigger-writes", type=int, default=20_000)
    parser.add_argument("--triggers-only", action="store_true")
    parser.add_argument("--no-triggers", action="store_true")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    if args.smoke:
        args.incidents, args.scrapes, args.starts, args.rounds = 2000, 5, 1, 1
        args.trigger_writes = 200
    if not args.no_triggers:
        print(json.dumps(triggers_bench(args.rounds, args.trigger_writes)), flush=True)
    if args.triggers_only:
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        empty_dir, big_dir = Path(tmp) / "empty", Path(tmp) / "big"
        empty_dir.mkdir()
        big_dir.mkdir()
        empty, big = empty_dir / "bridge.db", big_dir / "bridge.db"
        conn = sqlite3.connect(empty, isolation_level=None)
        migrate(sqlite_utils.Database(conn))
        conn.close()
        built = build(big, args.incidents)
        print(
            json.dumps(
                {
                    "case": "build",
                    "incidents": args.incidents,
                    **built,
                    "db_mb": round(big.stat().st_size / 2**20, 1),
                }
            ),
            flush=True,
        )
        base = measure(empty, args.starts, args.scrapes)
        print(json.dumps({"case": "empty", **base}), flush=True)
        many = measure(big, args.starts, args.scrapes)
        print(json.dumps({"case": "big", "incidents": args.incidents, **many}), flush=True)
        print(
            json.dumps(
                {
                    "case": "ratios",
                    "scrape_p50": round(many["scrape_ms_p50"] / base["scrape_ms_p50"], 2),
                    "start": round(many["start_s"] / base["start_s"], 2),
                    "met": many["scrape_ms_p50"] < TARGET_SCRAPE_MS
                    and many["start_s"] < TARGET_START_S,
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
