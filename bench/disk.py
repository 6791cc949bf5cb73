"""Disk per incident: the database's size after N incidents, each opened by one webhook of
``--alerts`` alerts from Alertmanager and mitigated by the webhook that resolves them, through
the real ingest (``store/ingest.apply_webhook``, the built-in policy, one console target) into a
real store with the service's settings; then the search index built as the indexer builds it.

Printed: bytes per incident with the webhook journal's raw bodies kept (the first
``--body-retention`` of a service's life, 7 days by default) and once they are pruned, each
after a WAL checkpoint and a VACUUM into a copy (the file as it settles, free pages left out).

    .venv/bin/python bench/disk.py --incidents 2000 --alerts 3
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import sqlite3
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import SMOKE_HELP
from bridge.core.alertmanager import parse_webhook
from bridge.core.policy import BuiltinPolicy
from bridge.store import Store
from bridge.store.ingest import apply_webhook
from bridge.store.queries import prune_webhook_bodies
from bridge.store.search import index_pending

T0 = 1_795_752_400_000_000_000
SECOND = 1_000_000_000


def webhook(n: int, alerts: int, resolved: bool) -> dict[str, Any]:
    status = "resolved" if resolved else "firing"
    name = f"DiskBench{n % 40}"
    service = f"service-{n}"
    items = [
        {
            "status": status,
            "labels": {
                "alertname": name,
                "service": service,
                "instance": f"10.0.{n % 250}.{i}:9100",
                "job": "node",
                "severity": "critical" if n % 3 == 0 else "warning",
                "cluster": "prod-eu-1",
            },
            "annotations": {
                "summary": f"{name} on {service}",
                "description": "Error rate above 5% for 10 minutes on the checkout path; "
                "see the dashboard and the runbook.",
                "runbook_url": "https://runbooks.example.com/" + name,
            },
            "startsAt": "2026-11-27T03:00:00Z",
            "endsAt": "2026-11-27T03:20:00Z" if resolved else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=up",
            "fingerprint": uuid.uuid5(uuid.NAMESPACE_DNS, f"{n}-{i}").hex[:16],
        }
        for i in range(alerts)
    ]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}", service="{service}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "incident-bridge",
        "groupLabels": {"alertname": name, "service": service},
        "commonLabels": {"alertname": name, "service": service},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com:9093",
        "alerts": items,
    }


def _apply(conn: sqlite3.Connection, **kwargs: Any) -> object:
    return apply_webhook(conn, **kwargs)


async def fill(store: Store, incidents: int, alerts: int) -> None:
    policy = BuiltinPolicy()
    for n in range(incidents):
        for step, resolved in enumerate((False, True)):
            raw = json.dumps(webhook(n, alerts, resolved)).encode()
            payload = parse_webhook(raw)
            now = T0 + (2 * n + step) * SECOND
            decisions = policy.evaluate(payload, now)
            sha = hashlib.sha256(raw).hexdigest()
            await store.write(
                functools.partial(
                    _apply, payload=payload, decisions=decisions, sha256=sha, body=raw, now=now
                )
            )
    while True:  # the indexer's batches, until nothing is left
        indexed = await store.write(index_pending)
        if not indexed.more:
            break


def settled_size(path: Path, copy: Path) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        copy.unlink(missing_ok=True)
        conn.execute("VACUUM INTO ?", (str(copy),))
    finally:
        conn.close()
    return copy.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=2000)
    parser.add_argument("--alerts", type=int, default=3, help="alerts per incident")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    if args.smoke:
        args.incidents = 50
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        store = Store(path)
        store.open()
        try:
            asyncio.run(fill(store, args.incidents, args.alerts))
        finally:
            store.close()
        conn = sqlite3.connect(path)
        count = conn.execute("SELECT count(*) FROM incidents").fetchone()[0]
        rows = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("alerts", "timeline", "webhooks", "outbox")
        }
        conn.close()
        with_bodies = settled_size(path, Path(tmp) / "a.db")
        conn = sqlite3.connect(path, isolation_level=None)
        prune_webhook_bodies(conn, T0 + 10**6 * SECOND)
        conn.close()
        without = settled_size(path, Path(tmp) / "b.db")
    print(f"{count} incidents, {args.alerts} alerts each, rows: {rows}")
    print(
        f"with the webhook bodies kept: {with_bodies} bytes, {with_bodies / count:.0f} B/incident"
    )
    print(f"bodies pruned:                {without} bytes, {without / count:.0f} B/incident")


if __name__ == "__main__":
    main()
