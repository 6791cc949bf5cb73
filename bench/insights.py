"""Insights benchmark: the insights page with 100,000 incidents, against the incident list page.

A real ``incident-bridge serve`` over a store filled with ``--incidents`` incidents (written
through the store's ingest function, then given spread times and milestones in SQL: opened over
the last ``--days`` days, 20 services, 50 alertnames, acknowledged, mitigated and resolved, one in
ten acknowledged by one of 20 people, one in twenty reopened). Per round, one after the other on
the same process:

- ``baseline``: ``GET /`` (the incident list page, 50 newest) -- what a page costs;
- ``insights_first`` (``--cold`` times, first, each after a baseline request): ``GET
  /insights?since=...`` with a span no earlier request asked for (``720h``, ``721h``, ...):
  no kept answer, computed while the request waits (from the aggregates the write path keeps,
  migration 0024_insights);
- ``insights`` (``--rounds`` times, each after a baseline request): ``/insights?since=720h``
  again: the kept answer, as every later ask gets it (fresh, or stale by up to 10 minutes while
  the next is computed behind it: service/insights.py).

Prints JSON lines: each case's median and max in ms, then the first ask and the kept answer
each against the baseline (ratio of medians) and whether each met the 300 ms target. ``--db postgresql`` (a throwaway
server, or a postgresql:// URL) runs the same on PostgreSQL; ``--smoke`` runs 2,000 incidents,
3 rounds, and includes PostgreSQL when its binaries are installed (bench/_pg.py).

    .venv/bin/python bench/insights.py                      # 100,000 incidents, SQLite
    .venv/bin/python bench/insights.py --db postgresql      # and PostgreSQL
    .venv/bin/python bench/insights.py --smoke
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench._common import SMOKE_HELP  # noqa: E402
from bench._pg import Place, Server, masked, missing_reason, server, skip_or_fail  # noqa: E402
from bench.api import TOKEN, fill, start_bridge  # noqa: E402
from bench.ingest import line  # noqa: E402

if TYPE_CHECKING:
    from bridge.store.ingest import IngestItem

TARGET_MS = 300.0
NS = 1_000_000_000


def batches(count: int, now: int, days: int) -> Iterator[list[IngestItem]]:
    """``count`` incidents of 20 services and 50 alertnames, as webhooks would write them,
    started over the last ``days`` days (in a spread order) and opened 30 s later."""
    from bridge.core.alertmanager import parse_webhook
    from bridge.core.policy import Decision
    from bridge.core.timeutil import format_ns
    from bridge.store.ingest import IngestItem

    span_s = days * 86_400
    batch: list[IngestItem] = []
    for n in range(count):
        # written at their own times, not moved later by one UPDATE of every incident: on
        # PostgreSQL, one transaction moving 100,000 incidents out of the day they were all
        # opened in rewrites that day's kept sums 100,000 times (row versions it must walk)
        started = now - ((n + 1) * 7919 % span_s) * NS
        group = f"bench-{n}"
        annotations = {"summary": f"bench incident {n}"}
        if n % 50 < 40:  # 10 alertnames of 50 without a runbook
            annotations["runbook_url"] = f"https://runbooks.example/{n % 50}"
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
                        "labels": {"alertname": f"Bench{n % 50}", "group": group},
                        "annotations": annotations,
                        "startsAt": format_ns(started),
                        "endsAt": "0001-01-01T00:00:00Z",
                    }
                ],
            }
        ).encode()
        payload = parse_webhook(raw)
        decision = Decision(
            key=group,
            severity=("sev1", "sev2", "sev3")[n % 3],
            title=f"bench incident {n}",
            fingerprints=tuple(a.fingerprint for a in payload.alerts),
            team=f"team-{n % 10}",
            service=f"service-{n % 20}",
        )
        sha = hashlib.sha256(raw).hexdigest()
        batch.append(IngestItem(payload, (decision,), sha, None, started + 30 * NS))
        if len(batch) == 1000 or n == count - 1:
            yield batch
            batch = []


def shape_sql(now: int) -> list[str]:
    """Milestones, acknowledgements and reopenings (integer arithmetic only: both backends
    read it alike)."""
    ns = "CAST(1000000000 AS INTEGER)"  # a BIGINT on PostgreSQL (dialect.py): no overflow
    return [
        f"UPDATE incidents SET acknowledged_at = started_at + (60 + id % 900) * {ns}, "
        f"mitigated_at = started_at + (600 + id % 7200) * {ns}, "
        f"resolved_at = started_at + (3600 + id % 14400) * {ns}, status = 'resolved' "
        f"WHERE started_at + (3600 + id % 14400) * {ns} < {now}",
        "INSERT INTO timeline (id, incident_id, time, kind, actor, text, data) "
        "SELECT (SELECT max(id) FROM timeline) + i.id, i.id, i.acknowledged_at, "
        "'status_changed', 'person-' || (i.id % 20), 'Acknowledged', '{\"to\": \"acknowledged\"}' "
        "FROM incidents i WHERE i.id % 10 = 0 AND i.acknowledged_at IS NOT NULL",
        "INSERT INTO timeline (id, incident_id, time, kind, actor, text, data) "
        "SELECT (SELECT max(id) FROM timeline) + i.id, i.id, i.opened_at + 60, "
        "'reopened', 'alertmanager', 'Reopened', '{}' FROM incidents i WHERE i.id % 20 = 1",
    ]


def populate(place: Place, count: int, days: int) -> float:
    """A new store on ``place`` with ``count`` incidents; the seconds it took."""
    now = time.time_ns()
    return fill(place, batches(count, now, days), shape_sql(now))


def timed(url: str) -> tuple[float, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as resp:
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url}: {resp.status}")
    return (time.perf_counter() - started) * 1000, body


def measure(url: str, rounds: int, cold: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"baseline": [], "insights_first": [], "insights": []}
    timed(url + "/")  # the first request pays for imports and templates: not measured
    for n in range(cold):
        # a period no request asked for: no kept answer, computed while the request waits
        times["baseline"].append(timed(url + "/")[0])
        ms, body = timed(f"{url}/insights?since={720 + n}h")
        if b"<svg" not in body:
            raise RuntimeError("the insights page has no chart")
        times["insights_first"].append(ms)
    for _ in range(rounds):
        times["baseline"].append(timed(url + "/")[0])
        times["insights"].append(timed(f"{url}/insights?since=720h")[0])
    return times


def report(backend: str, count: int, times: dict[str, list[float]]) -> bool:
    """A line per case, then each insights case against the baseline: the first ask of a
    period (computed) and the kept answer; True when both are under the target."""
    medians = {k: statistics.median(v) for k, v in times.items()}
    for case, values in times.items():
        line(
            case=case,
            backend=backend,
            incidents=count,
            median_ms=round(medians[case], 1),
            max_ms=round(max(values), 1),
        )
    met = True
    for case in ("insights_first", "insights"):
        ok = medians[case] < TARGET_MS
        line(
            case=f"{case}_vs_baseline",
            backend=backend,
            incidents=count,
            ratio=round(medians[case] / medians["baseline"], 2),
            median_ms=round(medians[case], 1),
            target_ms=TARGET_MS,
            met=ok,
        )
        met = met and ok
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30, help="opened over these last days")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cold", type=int, default=10, help="first asks of a period measured")
    parser.add_argument("--db", help="also PostgreSQL: `postgresql` or a postgresql:// URL")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    if args.db is not None and not args.db.startswith("postgres"):
        parser.error("--db: `postgresql` or a postgresql:// URL")
    if args.smoke:
        args.incidents, args.rounds, args.cold = 2000, 3, 2
        if args.db is None:
            reason = missing_reason()
            if reason is None:
                args.db = "postgresql"
            elif skip_or_fail("bench/insights.py --smoke", reason):
                return 1
    work = Path(tempfile.mkdtemp(prefix="incident-bridge-insights-bench-"))
    (work / "rules.yaml").write_text("route:\n  name: root\n")
    ok = True
    with contextlib.ExitStack() as stack:
        # the stores are hundreds of MB at full size: gone after the run, as the servers
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        pg: Server | None = None
        if args.db is not None:
            pg = stack.enter_context(server(args.db, None))
            line(case="postgresql", server=masked(pg.admin_url), **pg.settings())
        places: list[Place] = [Place.sqlite(work / "insights.db")]
        if pg is not None:
            places.append(Place.postgresql(pg, "insights", work / "insights-pg"))
        for place in places:
            seconds = populate(place, args.incidents, args.days)
            line(case="populate", backend=place.backend, incidents=args.incidents,
                 seconds=round(seconds, 1))  # fmt: skip
            with contextlib.ExitStack() as up:
                url, _pid = start_bridge(up, place, work, (None, None))
                times = measure(url, args.rounds, args.cold)
            met = report(place.backend, args.incidents, times)
            # The smoke run checks that it all works, not the figure (a loaded CI machine).
            ok = ok and (met or args.smoke or args.incidents < 100_000)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
