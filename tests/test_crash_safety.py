"""Nothing that got a 200 is lost when the bridge is killed with SIGKILL mid-stream.

A bridge subprocess receives webhooks from 32 concurrent connections (distinct groups, distinct
fingerprints, 1-3 alerts each). Once enough have been answered 200 it is killed with SIGKILL while
requests are still in flight, restarted on the same SQLite file, and every alert of every request
that got a 200 must be there: through the read API and in the database file itself.

What this proves is "commit before answer": SIGKILL loses the process, not the OS page cache, so a
power loss (which also needs `synchronous=FULL`'s fsync) is out of its reach.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.procs import Bridge

pytestmark = pytest.mark.slow

CONNECTIONS = 32
MAX_REQUESTS = 4000
KILL_AFTER_ACKS = 600


@dataclass
class Run:
    tag: str
    acked: dict[int, list[str]] = field(default_factory=dict)  # request -> fingerprints
    failed: set[int] = field(default_factory=set)
    in_flight_at_kill: int = 0
    in_flight: int = 0
    sent: int = 0


def group_key(run: Run, n: int) -> str:
    return f'{{}}:{{alertname="CrashSafety", run="{run.tag}", n="{n}"}}'


def payload(run: Run, n: int) -> tuple[dict[str, Any], list[str]]:
    alerts = []
    fingerprints = []
    for j in range(1 + n % 3):
        fp = f"{n:010x}{j:06x}"
        fingerprints.append(fp)
        alerts.append(
            {
                "status": "firing",
                "labels": {"alertname": "CrashSafety", "run": run.tag, "n": str(n), "j": str(j)},
                "annotations": {"summary": f"crash safety {n}/{j}"},
                "startsAt": "2026-11-27T04:05:13.998173144Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": fp,
            }
        )
    body = {
        "version": "4",
        "groupKey": group_key(run, n),
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "bridge",
        "groupLabels": {"alertname": "CrashSafety", "n": str(n)},
        "commonLabels": {"alertname": "CrashSafety", "run": run.tag, "n": str(n)},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.test:9093",
        "alerts": alerts,
    }
    return body, fingerprints


async def blast_then_kill(bridge: Bridge, run: Run, sig: int = signal.SIGKILL) -> None:
    """Send from CONNECTIONS workers; signal the bridge once KILL_AFTER_ACKS got a 200."""
    assert bridge.proc is not None
    pid = bridge.proc.pid
    killed = asyncio.Event()
    counter = iter(range(MAX_REQUESTS))
    url = bridge.url + "/api/v1/alerts"
    headers = {"Content-Type": "application/json", **bridge.auth()}

    async def worker(session: aiohttp.ClientSession) -> None:
        for n in counter:
            if killed.is_set():
                return
            body, fingerprints = payload(run, n)
            run.sent += 1
            run.in_flight += 1
            try:
                async with session.post(url, data=json.dumps(body), headers=headers) as resp:
                    answer = await resp.json(content_type=None) if resp.status == 200 else None
                    if resp.status == 200 and answer and answer.get("status") == "ok":
                        run.acked[n] = fingerprints
                    else:
                        run.failed.add(n)
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                run.failed.add(n)
            finally:
                run.in_flight -= 1
            if len(run.acked) >= KILL_AFTER_ACKS and not killed.is_set():
                run.in_flight_at_kill = run.in_flight
                os.kill(pid, sig)
                killed.set()

    timeout = aiohttp.ClientTimeout(total=20)
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(CONNECTIONS)))
    assert killed.is_set(), f"only {len(run.acked)} of {run.sent} requests got a 200"


def check_store(bridge: Bridge, run: Run) -> None:
    """Every acknowledged alert is in the (stopped) bridge's file, and the file is sound."""
    alerts, linked, integrity, fk = stored_fingerprints(bridge.db)
    acked_fps = {fp for fps in run.acked.values() for fp in fps}
    assert acked_fps <= alerts, f"{len(acked_fps - alerts)} acknowledged alerts missing"
    assert acked_fps <= linked
    assert integrity == "ok"
    assert fk == []
    print(
        f"\n{run.tag}: {run.sent} sent, {len(run.acked)} acknowledged "
        f"({len(acked_fps)} alerts), {len(run.failed)} failed, "
        f"{run.in_flight_at_kill} in flight at the signal, {len(alerts)} alerts stored"
    )


def stored_fingerprints(db: Path) -> tuple[set[str], set[str], str, list[Any]]:
    """(alerts, incident-linked alerts, integrity_check, foreign_key_check) from the file."""
    conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        alerts = {r[0] for r in conn.execute("SELECT fingerprint FROM alerts")}
        linked = {r[0] for r in conn.execute("SELECT fingerprint FROM incident_alerts")}
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        fk = conn.execute("PRAGMA foreign_key_check").fetchall()
    finally:
        conn.close()
    return alerts, linked, integrity, fk


def test_every_acknowledged_alert_survives_sigkill(tmp_path: Path) -> None:
    bridge = Bridge(tmp_path / "bridge")
    run = Run(tag="sigkill-" + uuid.uuid4().hex[:8])
    try:
        bridge.start()
        asyncio.run(blast_then_kill(bridge, run))
        assert bridge.proc is not None
        assert bridge.proc.wait(10) == -signal.SIGKILL
        assert run.in_flight_at_kill > 0, "the kill should land while requests are in flight"

        bridge.start()  # same database file
        acked_keys = {group_key(run, n) for n in run.acked}
        incidents = {i["key"]: i for i in bridge.incidents()}
        missing = acked_keys - incidents.keys()
        assert not missing, f"{len(missing)} acknowledged webhooks lost, e.g. {sorted(missing)[:3]}"
        for n, fingerprints in run.acked.items():
            assert incidents[group_key(run, n)]["alert_count"] == len(fingerprints)
            assert incidents[group_key(run, n)]["status"] == "triggered"

        # Replaying what was acknowledged changes nothing; what was not, lands now (as
        # Alertmanager's retry would deliver it).
        sample = sorted(run.acked)[:: max(1, len(run.acked) // 50)]
        for n in sample:
            resp = bridge.post_webhook(payload(run, n)[0])
            assert resp.status == 200
            assert [i["changed"] for i in resp.json()["incidents"]] == [False], n
        for n in sorted(run.failed)[:50]:
            assert bridge.post_webhook(payload(run, n)[0]).status == 200
        assert bridge.stop() == 0, bridge.logs()[-2000:]
    finally:
        bridge.stop()

    check_store(bridge, run)


def test_sigterm_mid_stream_finishes_in_flight_writes_and_exits_0(tmp_path: Path) -> None:
    """Graceful stop under load: what got a 200 is stored, and the exit code is 0."""
    bridge = Bridge(tmp_path / "bridge")
    run = Run(tag="sigterm-" + uuid.uuid4().hex[:8])
    try:
        bridge.start()
        asyncio.run(blast_then_kill(bridge, run, signal.SIGTERM))
        assert bridge.proc is not None
        assert bridge.proc.wait(20) == 0, bridge.logs()[-3000:]
    finally:
        bridge.stop()
    check_store(bridge, run)
