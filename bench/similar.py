"""Search and "seen this before" with 100,000 past incidents: what the indexer costs.

1. ``populate``: N past incidents written through the store's own ingest (``apply_webhooks``),
   as webhooks would write them, with the variety of a real history: 300 alert names, 80
   services, 3 environments, instances, severities; a person's note on every 10th incident;
   most of them resolved.
2. ``index``: all of it through ``store/search.index_pending`` in the indexer loop's batch
   sizes, each batch one transaction with its commit (synchronous=FULL, WAL, as the writer runs
   them): incidents and timeline entries per second, and how long a batch holds the writer.
3. ``similar``: K new incidents opened after the N and indexed, then ``find_similar`` for each
   (what the loop runs on a reader when an incident opens): half of them an alert already seen
   on the same service (the same-alert lookup fills the five), half a new alert whose title and
   labels share words with past ones (the text lookup, bm25); and ``record_similar`` (the
   entry, its links and outbox rows, in the writer).
4. ``search``: ``GET /api/v1/search``'s query for a rare word, a common one, a prefix and a
   phrase.

Prints one JSON line per figure. The database is kept with ``--db`` (reused when it exists:
populating takes a minute).

    .venv/bin/python bench/similar.py                     # 100,000 past incidents
    .venv/bin/python bench/similar.py --incidents 20000   # a quick look
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench._common import SMOKE_HELP  # noqa: E402
from bench.ingest import line  # noqa: E402
from bridge.core.alertmanager import fingerprint, parse_webhook  # noqa: E402
from bridge.core.policy import BuiltinPolicy  # noqa: E402
from bridge.store import Store  # noqa: E402
from bridge.store.ingest import IngestItem, apply_webhooks  # noqa: E402
from bridge.store.search import (  # noqa: E402
    find_similar,
    index_pending,
    marks,
    record_similar,
    search,
)

POLICY = BuiltinPolicy()
PREFIXES = ["High", "Low", "Kube", "Node", "Pod", "Disk", "Api", "Db", "Queue", "Cert"]
PROBLEMS = ["Cpu", "Memory", "Latency", "ErrorRate", "CrashLooping", "Full", "Lag", "Down"]
SUFFIXES = ["", "Warning", "Critical", "Sustained"]
WORDS = [
    "rollback",
    "deploy",
    "canary",
    "cache",
    "cold",
    "warmed",
    "restarted",
    "pods",
    "node",
    "drained",
    "disk",
    "rotated",
    "logs",
    "connection",
    "pool",
    "leak",
    "dns",
    "timeout",
    "retry",
    "storm",
    "rate",
    "limit",
    "quota",
    "certificate",
    "expired",
    "renewed",
    "replica",
    "lag",
    "failover",
    "primary",
    "index",
    "rebuilt",
    "query",
    "plan",
    "regression",
    "kafka",
    "consumer",
    "rebalance",
    "throttled",
    "upstream",
    "provider",
    "outage",
    "paged",
    "vendor",
    "config",
    "flag",
    "toggled",
    "memory",
    "oom",
    "killed",
    "gc",
    "pause",
    "heap",
    "tuned",
]


def vocabulary(seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    alerts = sorted(
        {
            rng.choice(PREFIXES) + rng.choice(PROBLEMS) + rng.choice(SUFFIXES) + str(n % 7)
            for n in range(400)
        }
    )[:300]
    services = [
        f"{rng.choice(['checkout', 'payments', 'search', 'auth', 'ledger'])}-{n}" for n in range(80)
    ]
    return alerts, services


def webhook(group: str, alertname: str, service: str, rng: random.Random) -> bytes:
    env = rng.choice(["prod", "staging", "dev"])
    labels = {
        "alertname": alertname,
        "service": service,
        "env": env,
        "severity": rng.choice(["critical", "warning"]),
        "instance": f"{service}-{rng.randint(0, 30)}:9100",
        "job": "node-exporter",
    }
    return json.dumps(
        {
            "version": "4",
            "groupKey": group,
            "status": "firing",
            "receiver": "bridge",
            "truncatedAlerts": 0,
            "groupLabels": {"alertname": alertname},
            "commonLabels": {k: v for k, v in labels.items() if k != "instance"},
            "commonAnnotations": {"summary": f"{alertname} on {service} ({env})"},
            "alerts": [
                {
                    "status": "firing",
                    "labels": labels,
                    "annotations": {},
                    "startsAt": "2026-11-28T06:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": fingerprint(labels),
                }
            ],
        }
    ).encode()


def ingest(conn: sqlite3.Connection, raws: list[bytes], now: int) -> list[int]:
    items = []
    for n, raw in enumerate(raws):
        payload = parse_webhook(raw)
        sha = hashlib.sha256(raw).hexdigest()
        items.append(IngestItem(payload, POLICY.evaluate(payload, now + n), sha, None, now + n))
    conn.execute("BEGIN")
    results = apply_webhooks(conn, items)
    conn.execute("COMMIT")
    return [r.incidents[0].id for r in results]


def populate(db: Path, count: int, seed: int) -> float:
    store = Store(db)
    store.open()  # the schema
    store.close()
    started = time.monotonic()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")  # filling a benchmark database only
    rng = random.Random(seed)
    alerts, services = vocabulary(seed)
    now = time.time_ns() - count * 60 * 10**9
    batch: list[bytes] = []
    for n in range(count):
        batch.append(webhook(f"past-{n}", rng.choice(alerts), rng.choice(services), rng))
        if len(batch) == 1000 or n == count - 1:
            ids = ingest(conn, batch, now + n * 60 * 10**9)
            conn.execute("BEGIN")
            for incident_id in ids[::10]:
                text = " ".join(rng.choice(WORDS) for _ in range(12))
                conn.execute(
                    "INSERT INTO timeline (incident_id, time, kind, actor, text, data) "
                    "VALUES (?, ?, 'note', 'bench', ?, '{}')",
                    (incident_id, now, f"Note: {text}"),
                )
            conn.execute(
                "UPDATE incidents SET status = 'resolved' WHERE id >= ? AND id <= ? AND id % 5 != 0",
                (ids[0], ids[-1]),
            )
            conn.execute("COMMIT")
            batch = []
    conn.close()
    return time.monotonic() - started


def connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def index_all(conn: sqlite3.Connection) -> dict[str, Any]:
    """Everything through ``index_pending`` in the loop's batches; what a batch holds the writer."""
    before = marks(conn)
    held: list[float] = []
    commits: list[float] = []
    incidents = entries = 0
    started = time.perf_counter()
    while True:
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        done = index_pending(conn)
        t1 = time.perf_counter()
        conn.execute("COMMIT")
        held.append((t1 - t) * 1000)
        commits.append((time.perf_counter() - t1) * 1000)
        incidents += done.incidents
        entries += done.entries
        if not done.more:
            break
    seconds = time.perf_counter() - started
    after = marks(conn)
    assert after.incidents >= before.incidents
    return {
        "incidents": incidents,
        "timeline_entries": entries,
        "seconds": round(seconds, 2),
        "incidents_per_s": round(incidents / seconds),
        "documents_per_s": round((incidents + entries) / seconds),
        "batches": len(held),
        # the writer's job (what a webhook queued behind it waits for)...
        "batch_ms_median": round(statistics.median(held), 2),
        "batch_ms_p99": round(sorted(held)[int(len(held) * 0.99)], 2),
        "batch_ms_max": round(max(held), 2),
        # ...and its commit alone (fsync, and a WAL checkpoint now and then, as any commit)
        "commit_ms_median": round(statistics.median(commits), 2),
        "commit_ms_max": round(max(commits), 2),
    }


def timed(fn: Callable[[], Any], runs: int = 1) -> tuple[float, Any]:
    started = time.perf_counter()
    result = None
    for _ in range(runs):
        result = fn()
    return (time.perf_counter() - started) * 1000 / runs, result


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "ms_median": round(statistics.median(ordered), 3),
        "ms_p95": round(ordered[int(len(ordered) * 0.95)], 3),
        "ms_max": round(ordered[-1], 3),
    }


def bench_similar(conn: sqlite3.Connection, new: int, seed: int) -> str:
    """The figures; returns the name of a new alert, a word no past incident has."""
    rng = random.Random(seed + 1)
    alerts, services = vocabulary(seed)
    seen = [
        webhook(f"new-seen-{n}", rng.choice(alerts), rng.choice(services), rng)
        for n in range(new // 2)
    ]
    # New alerts (never seen) whose names and services share words with past ones.
    fresh = [
        webhook(
            f"new-fresh-{n}",
            f"{rng.choice(PREFIXES)}{rng.choice(PROBLEMS)}Novel{n}",
            f"{rng.choice(services)}-canary",
            rng,
        )
        for n in range(new - new // 2)
    ]
    now = time.time_ns()
    ids = {
        "same_alert_and_service": ingest(conn, seen, now),
        "similar_text": ingest(conn, fresh, now),
    }
    index_all(conn)
    records: list[float] = []
    for case, incident_ids in ids.items():
        costs: list[float] = []
        found_counts: list[int] = []
        for incident_id in incident_ids:
            ms, found = timed(lambda i=incident_id: find_similar(conn, i))
            costs.append(ms)
            found_counts.append(len(found))
            t = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            record_similar(conn, [(incident_id, found)], upto=incident_id, now=now)
            conn.execute("COMMIT")
            records.append((time.perf_counter() - t) * 1000)
        line(
            case=f"similar_{case}",
            new_incidents=len(incident_ids),
            similar_found_mean=round(statistics.mean(found_counts), 2),
            **summary(costs),
        )
    line(case="similar_record", **summary(records))
    return str(json.loads(fresh[0])["alerts"][0]["labels"]["alertname"])


def bench_search(conn: sqlite3.Connection, rare: str) -> None:
    for name, text in (
        ("rare_word", rare),
        ("note_word", "rebalance"),
        ("common_word", "prod"),
        ("prefix", "kubecrash*"),
        ("phrase", '"pool leak"'),
        ("two_words", "rollback kafka"),
    ):
        ms, hits = timed(lambda t=text: search(conn, t, limit=20), runs=3)
        line(case=f"search_{name}", q=text, hits=len(hits), ms=round(ms, 2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--incidents", type=int, default=100_000, help="past incidents")
    parser.add_argument("--new", type=int, default=200, help="new incidents looked up")
    parser.add_argument("--db", type=Path, help="keep (and reuse) the database here")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    if args.smoke:
        args.incidents, args.new = 500, 10
    workdir = Path(tempfile.mkdtemp(prefix="incident-bridge-similar-"))
    try:
        return run(args.db or workdir / "similar.db", args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # a --db elsewhere is kept


def run(db: Path, args: argparse.Namespace) -> int:
    if not db.exists():
        seconds = populate(db, args.incidents, args.seed)
        line(case="populate", incidents=args.incidents, seconds=round(seconds, 1))
    conn = connect(db)
    try:
        (past,) = conn.execute("SELECT count(*) FROM incidents").fetchone()
        line(
            case="setup",
            past_incidents=past,
            sqlite=sqlite3.sqlite_version,
            python=sys.version.split()[0],
        )
        line(case="index", **index_all(conn))
        rare = bench_similar(conn, args.new, args.seed)
        bench_search(conn, rare)
        size = (
            db.stat().st_size + Path(f"{db}-wal").stat().st_size
            if Path(f"{db}-wal").exists()
            else db.stat().st_size
        )
        pages = (
            dict(
                conn.execute(
                    "SELECT name, sum(pgsize) FROM dbstat WHERE name LIKE 'search%' OR name LIKE 'similar%' GROUP BY name"
                ).fetchall()
            )
            if _has_dbstat(conn)
            else {}
        )
        line(
            case="size",
            database_mb=round(size / 2**20, 1),
            search_tables_mb=round(sum(pages.values()) / 2**20, 1) if pages else None,
        )
    finally:
        conn.close()
    return 0


def _has_dbstat(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1 FROM dbstat LIMIT 1").fetchall()
    except sqlite3.OperationalError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
