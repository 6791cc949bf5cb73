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

``--db postgresql`` (a throwaway durable server) or ``--db postgresql://...`` (a running server)
measures PostgreSQL after SQLite the same way: the big store built by one ``INSERT ... SELECT``
over ``generate_series`` (no webhooks), migration 0011 timed, then start-up and scrapes of an
empty and a big database, and the PostgreSQL / SQLite ratios of the big store's figures.
``--smoke`` includes PostgreSQL whenever its binaries are installed (bench/_pg.py).

``--triggers``: the cost of the triggers on the writes a webhook makes to ``incidents`` (a new
incident, a milestone, an update that changes no milestone), with and without them, in one
process on a scratch file (synchronous=OFF, so that it is CPU, not fsync), alternated
``--rounds`` times.

    .venv/bin/python bench/metrics.py                       # 1,000,000 incidents
    .venv/bin/python bench/metrics.py --incidents 100000 --scrapes 50
    .venv/bin/python bench/metrics.py --triggers-only
    .venv/bin/python bench/metrics.py --db postgresql --no-triggers   # both backends
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import sqlite_utils

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench._common import SMOKE_HELP, free_port, wait_ready  # noqa: E402
from bench._pg import Place, Server, masked, missing_reason, server, skip_or_fail  # noqa: E402
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


def build_pg(url: str, incidents: int) -> dict[str, float]:
    """The same store as ``build`` on PostgreSQL: migrations up to 0010, the incidents from
    ``generate_series`` in one statement (no webhooks, no triggers yet), then 0011's backfill
    timed and the later migrations."""
    import psycopg

    from bridge.store.postgres import schema

    def migrate_pg(raw: psycopg.Connection[Any], keep: Callable[[str], bool]) -> list[str]:
        steps = [m for m in schema.MIGRATIONS if keep(m[0])]
        with mock.patch.object(schema, "MIGRATIONS", steps):
            return schema.migrate(raw)

    with psycopg.connect(url, autocommit=True) as raw:
        migrate_pg(raw, lambda name: name < "0011")
        now = time.time_ns()
        t0 = time.perf_counter()
        with raw.transaction():
            # the same rows as build's, i a bigint so that the products do not overflow
            raw.execute(
                f"""INSERT INTO incidents (id, key, title, severity, status, route, team,
                    started_at, opened_at, acknowledged_at, mitigated_at, resolved_at, closed_at,
                    updated_at)
                SELECT i, 'k' || (i % 5000), 'Incident ' || i,
                    'sev' || (1 + i % 4),
                    CASE WHEN i > {incidents} - 300 THEN 'triggered' WHEN i % 3 = 0 THEN 'closed'
                         ELSE 'resolved' END,
                    CASE i % 3 WHEN 0 THEN 'payments' WHEN 1 THEN 'platform' ELSE 'default' END,
                    CASE i % 7 WHEN 0 THEN NULL WHEN 1 THEN 'alert-team-' || (i % 97)
                         ELSE 'team-' || (i % 6) END,
                    s, s + 30000000000 + (i % 11) * 10000000000,
                    CASE WHEN i > {incidents} - 300 OR i % 9 = 0 THEN NULL
                         ELSE s + (60 + (i % 1000) * 7) * {NS}::bigint END,
                    CASE WHEN i > {incidents} - 300 THEN NULL
                         ELSE s + (600 + (i % 997) * 60) * {NS}::bigint END,
                    CASE WHEN i > {incidents} - 300 THEN NULL
                         ELSE s + (3600 + (i % 991) * 300) * {NS}::bigint END,
                    CASE WHEN i % 3 = 0 THEN s + 900000 * {NS}::bigint END,
                    s
                FROM (SELECT i, {now}::bigint - ({incidents} - i) * 3600 * {NS}::bigint AS s
                      FROM generate_series(1::bigint, {incidents}::bigint) AS i) AS c"""  # type: ignore[arg-type]
            )
            raw.execute(  # SQLite's rowid is the store's to give here: id / 50 is unique
                "INSERT INTO timeline (id, incident_id, time, kind, actor, text) "
                "SELECT id / 50, id, opened_at, 'reopened', 'alertmanager', 'Reopened' "
                "FROM incidents WHERE id % 50 = 0"
            )
            raw.execute(
                "UPDATE search_marks SET value = (SELECT coalesce(max(id), 0) FROM incidents) "
                "WHERE name IN ('incidents', 'similar')"
            )
            raw.execute(
                "UPDATE search_marks SET value = (SELECT coalesce(max(id), 0) FROM timeline) "
                "WHERE name = 'timeline'"
            )
        raw.execute("ANALYZE")
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        applied = migrate_pg(raw, lambda name: name == "0011_metrics")
        backfill = time.perf_counter() - t0
        assert applied == ["0011_metrics"], applied
        t0 = time.perf_counter()
        later = schema.migrate(raw)
        later_s = time.perf_counter() - t0
        assert all(name > "0011" for name in later), later
        raw.execute("VACUUM ANALYZE")
        size = raw.execute("SELECT pg_database_size(current_database())").fetchone()
        assert size is not None
    return {
        "build_s": round(built, 2),
        "backfill_0011_s": round(backfill, 2),
        "later_migrations": len(later),
        "later_migrations_s": round(later_s, 2),
        "db_mb": round(int(size[0]) / 2**20, 1),
    }


def line(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def serve(place: Place, port: int, log: Path) -> subprocess.Popen[bytes]:
    where, more_env = place.serve_args()
    cmd = [sys.executable, "-m", "bridge", "serve", "--listen", f"127.0.0.1:{port}", *where]
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_BRIDGE_")}
    # a PostgreSQL service generates no API token: it is given one, as replicas are
    env.update(
        PYTHONPATH=str(REPO), INCIDENT_BRIDGE_API_TOKEN="bench-metrics-api-token", **more_env
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log.parent,
        )


def measure(place: Place, log: Path, starts: int, scrapes: int) -> dict[str, float]:
    start_times: list[float] = []
    scrape_ms: list[float] = []
    size = 0
    for n in range(starts):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        proc = serve(place, port, log)
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
    parser.add_argument(
        "--db",
        help="also PostgreSQL, after SQLite: `postgresql` (a throwaway server the bench starts) "
        "or `postgresql://USER@HOST:PORT/DB` (a running server: new databases made and dropped)",
    )
    args = parser.parse_args(argv)
    if args.db is not None and not args.db.startswith("postgres"):
        parser.error("--db: `postgresql` or a postgresql:// URL")
    if args.smoke:
        args.incidents, args.scrapes, args.starts, args.rounds = 2000, 5, 1, 1
        args.trigger_writes = 200
        if args.db is None:
            reason = missing_reason()
            if reason is None:
                args.db = "postgresql"
            elif skip_or_fail("bench/metrics.py --smoke", reason):
                return 1
    if not args.no_triggers:
        print(json.dumps(triggers_bench(args.rounds, args.trigger_writes)), flush=True)
    if args.triggers_only:
        return 0
    backends = ["sqlite"] + ([] if args.db is None else ["postgresql"])
    big: dict[str, dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        pg: Server | None = None
        if args.db is not None:
            pg = stack.enter_context(server(args.db))
            line(case="postgresql", server=masked(pg.admin_url), **pg.settings())
        for backend in backends:
            folder = Path(tmp) / backend
            folder.mkdir()
            if pg is None or backend == "sqlite":
                empty, many = Place.sqlite(folder / "empty.db"), Place.sqlite(folder / "big.db")
                conn = sqlite3.connect(empty.path, isolation_level=None)
                migrate(sqlite_utils.Database(conn))
                conn.close()
                built = build(many.path, args.incidents)
                built["db_mb"] = round(many.path.stat().st_size / 2**20, 1)
            else:
                empty = Place.postgresql(pg, "empty", folder / "empty")
                many = Place.postgresql(pg, "big", folder / "big")
                assert empty.url is not None and many.url is not None
                build_pg(empty.url, 0)
                built = build_pg(many.url, args.incidents)
            line(case="build", backend=backend, incidents=args.incidents, **built)
            base = measure(empty, folder / "serve.log", args.starts, args.scrapes)
            line(case="empty", backend=backend, **base)
            big[backend] = measure(many, folder / "serve.log", args.starts, args.scrapes)
            line(case="big", backend=backend, incidents=args.incidents, **big[backend])
            line(
                case="ratios",
                backend=backend,
                scrape_p50=round(big[backend]["scrape_ms_p50"] / base["scrape_ms_p50"], 2),
                start=round(big[backend]["start_s"] / base["start_s"], 2),
                met=big[backend]["scrape_ms_p50"] < TARGET_SCRAPE_MS
                and big[backend]["start_s"] < TARGET_START_S,
            )
        if pg is not None:
            lite, post = big["sqlite"], big["postgresql"]
            line(
                case="postgresql_vs_sqlite",
                incidents=args.incidents,
                scrape_p50=round(post["scrape_ms_p50"] / lite["scrape_ms_p50"], 2),
                scrape_p99=round(post["scrape_ms_p99"] / lite["scrape_ms_p99"], 2),
                start=round(post["start_s"] / lite["start_s"], 2),
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
