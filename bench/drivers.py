"""PostgreSQL drivers: psycopg 3 (what the store uses) against asyncpg, on the same server.

One-row insert transactions (BEGIN, INSERT, COMMIT: three round trips, as both drivers' explicit
transaction blocks send them), ``--concurrency`` callers (default 32) sharing a pool of
``--pool`` connections (default 4), on a durable server (fsync and synchronous_commit on: each
COMMIT waits for the disk, as the store's do):

- ``psycopg_sync``: psycopg's ``ConnectionPool``, one thread per caller (the store's shape: its
  SQL functions are synchronous functions of a DB-API connection, run in threads),
- ``psycopg_async``: psycopg's ``AsyncConnectionPool``, one task per caller,
- ``asyncpg``: asyncpg's pool, one task per caller (only when asyncpg is installed; it is not a
  dependency of incident-bridge: ``pip install asyncpg`` into the virtualenv to compare).

The three run in alternating rounds of ``--seconds``; each prints transactions/s, p50/p99 of a
transaction, and its rate as a ratio to ``psycopg_sync`` in the same round (median of the rounds).

    .venv/bin/python bench/drivers.py                      # a throwaway server, 3 rounds of 3 s
    .venv/bin/python bench/drivers.py --db postgresql://bench@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench._common import SMOKE_HELP  # noqa: E402
from bench._pg import masked, missing_reason, server, skip_or_fail  # noqa: E402

TABLE = "CREATE TABLE bench_rows (id BIGSERIAL PRIMARY KEY, caller BIGINT NOT NULL, body TEXT)"
INSERT_PSYCOPG = "INSERT INTO bench_rows (caller, body) VALUES (%s, %s)"
INSERT_ASYNCPG = "INSERT INTO bench_rows (caller, body) VALUES ($1, $2)"
BODY = "x" * 100


def line(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def figures(latencies: list[float], seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)
    if not ordered:
        return {"n": 0, "per_s": 0.0, "p50_ms": 0.0, "p99_ms": 0.0}
    return {
        "n": len(ordered),
        "per_s": len(ordered) / seconds,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


def psycopg_sync(url: str, seconds: float, callers: int, pool_size: int) -> dict[str, float]:
    import psycopg_pool

    latencies: list[float] = []
    errors: list[BaseException] = []
    with psycopg_pool.ConnectionPool(
        url, min_size=pool_size, max_size=pool_size, kwargs={"autocommit": True}
    ) as pool:
        pool.wait()
        start = time.perf_counter()
        stop = start + seconds

        def caller(n: int) -> None:
            mine: list[float] = []
            try:
                while (t0 := time.perf_counter()) < stop:
                    with pool.connection() as conn, conn.transaction():
                        conn.execute(INSERT_PSYCOPG, (n, BODY))
                    mine.append(time.perf_counter() - t0)
            except BaseException as exc:  # counted: a driver's error fails the run
                errors.append(exc)
            latencies.extend(mine)  # list.extend holds the GIL: safe across threads

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"psycopg_sync: {errors[0]!r}")
    return figures(latencies, took)


async def _tasks(
    callers: int, seconds: float, one: Callable[[int], Any]
) -> tuple[list[float], float]:
    latencies: list[float] = []
    start = time.perf_counter()
    stop = start + seconds

    async def caller(n: int) -> None:
        while (t0 := time.perf_counter()) < stop:
            await one(n)
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(caller(n) for n in range(callers)))
    return latencies, time.perf_counter() - start


def psycopg_async(url: str, seconds: float, callers: int, pool_size: int) -> dict[str, float]:
    import psycopg_pool

    async def run() -> dict[str, float]:
        async with psycopg_pool.AsyncConnectionPool(
            url, min_size=pool_size, max_size=pool_size, kwargs={"autocommit": True}
        ) as pool:
            await pool.wait()

            async def one(n: int) -> None:
                async with pool.connection() as conn, conn.transaction():
                    await conn.execute(INSERT_PSYCOPG, (n, BODY))

            latencies, took = await _tasks(callers, seconds, one)
        return figures(latencies, took)

    return asyncio.run(run())


def asyncpg_pool(url: str, seconds: float, callers: int, pool_size: int) -> dict[str, float]:
    import asyncpg  # type: ignore[import-not-found,unused-ignore]

    async def run() -> dict[str, float]:
        pool = await asyncpg.create_pool(url, min_size=pool_size, max_size=pool_size)
        try:

            async def one(n: int) -> None:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(INSERT_ASYNCPG, n, BODY)

            latencies, took = await _tasks(callers, seconds, one)
        finally:
            await pool.close()
        return figures(latencies, took)

    return asyncio.run(run())


def have_asyncpg() -> bool:
    try:
        import asyncpg  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per driver per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument(
        "--db",
        default="postgresql",
        help="`postgresql` (a throwaway server the bench starts, fsync and synchronous_commit "
        "on; the default) or `postgresql://USER@HOST:PORT/DB` (a running server: a new database "
        "is made and dropped)",
    )
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    if not args.db.startswith("postgres"):
        parser.error("--db: `postgresql` or a postgresql:// URL")
    if args.smoke:
        args.seconds, args.rounds = 0.5, 1
    if args.db == "postgresql" and (reason := missing_reason()) is not None:
        return skip_or_fail("bench/drivers.py", reason)
    drivers: dict[str, Callable[[str, float, int, int], dict[str, float]]] = {
        "psycopg_sync": psycopg_sync,
        "psycopg_async": psycopg_async,
    }
    if have_asyncpg():
        drivers["asyncpg"] = asyncpg_pool
    else:
        line(case="asyncpg", skipped="asyncpg is not installed: psycopg measured alone")
    with server(args.db) as pg:
        url = pg.new_database("drivers")
        pg.sql(TABLE, url)
        line(
            case="setup",
            server=masked(url),
            concurrency=args.concurrency,
            pool=args.pool,
            seconds=args.seconds,
            rounds=args.rounds,
            **pg.settings(),
        )
        results: dict[str, list[dict[str, float]]] = {name: [] for name in drivers}
        order = list(drivers)
        for _ in range(args.rounds):
            for name in order:
                results[name].append(drivers[name](url, args.seconds, args.concurrency, args.pool))
            order = order[1:] + order[:1]  # each driver takes each place in turn
        stored = pg.sql("SELECT count(*) FROM bench_rows", url)[0][0]
    base = results["psycopg_sync"]
    for name, runs in results.items():
        ratios = [
            r["per_s"] / b["per_s"] if b["per_s"] else 0.0 for r, b in zip(runs, base, strict=True)
        ]
        line(
            case=name,
            per_s=round(statistics.median(r["per_s"] for r in runs), 1),
            rounds=[round(r["per_s"], 1) for r in runs],
            p50_ms=round(statistics.median(r["p50_ms"] for r in runs), 2),
            p99_ms=round(max(r["p99_ms"] for r in runs), 2),
            ratio_vs_psycopg_sync=round(statistics.median(ratios), 3),
        )
    # every transaction a driver saw committed is in the table, and every run committed some
    committed = sum(int(r["n"]) for runs in results.values() for r in runs)
    ok = int(stored) == committed and all(r["n"] > 0 for rs in results.values() for r in rs)
    line(case="rows", committed=committed, stored=int(stored), ok=ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
