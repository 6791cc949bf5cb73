"""Upgrades from every earlier schema version: a database left at each prefix of MIGRATIONS, with
rows as that version wrote them, is opened by today's Store (every later migration runs at
start); its rows are intact, and a webhook is ingested and read back."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from bridge.store import Store
from bridge.store.migrations import MIGRATIONS, migrate
from bridge.store.queries import get_incident, integrity_check, list_incidents
from tests.conftest import SECOND, T0, fixture_body
from tests.store.test_store import ingest

LABELS = {"alertname": "DiskFull", "service": "billing", "severity": "critical"}

# A row per table as an older release wrote it; only the columns the table has at that version
# are written (later migrations add the rest with their defaults).
ROWS: dict[str, list[dict[str, Any]]] = {
    "incidents": [
        {
            "id": 1,
            "key": "old-open",
            "title": "DiskFull on billing",
            "severity": "critical",
            "status": "acknowledged",
            "route": "default",
            "team": "payments",
            "service": "billing",
            "started_at": T0 - 600 * SECOND,
            "opened_at": T0 - 590 * SECOND,
            "acknowledged_at": T0 - 500 * SECOND,
            "updated_at": T0 - 500 * SECOND,
            "roles": json.dumps({"incident_commander": "alice"}),
        },
        {
            "id": 2,
            "key": "old-mitigated",
            "title": "Latency on search",
            "severity": "warning",
            "status": "mitigated",
            "route": "default",
            "team": "search",
            "service": "search",
            "started_at": T0 - 900 * SECOND,
            "opened_at": T0 - 890 * SECOND,
            "mitigated_at": T0 - 300 * SECOND,
            "updated_at": T0 - 300 * SECOND,
        },
    ],
    "alerts": [
        {
            "fingerprint": "0123456789abcdef",
            "labels": json.dumps(LABELS, sort_keys=True),
            "annotations": json.dumps({"summary": "disk 97% full"}),
            "status": "firing",
            "starts_at": T0 - 600 * SECOND,
            "generator_url": "http://prometheus/graph",
            "first_seen": T0 - 590 * SECOND,
            "last_seen": T0 - 500 * SECOND,
        }
    ],
    "incident_alerts": [
        {
            "incident_id": 1,
            "fingerprint": "0123456789abcdef",
            "status": "firing",
            "starts_at": T0 - 600 * SECOND,
            "first_seen": T0 - 590 * SECOND,
            "last_seen": T0 - 500 * SECOND,
        }
    ],
    "timeline": [
        {
            "id": 1,
            "incident_id": 1,
            "time": T0 - 590 * SECOND,
            "kind": "opened",
            "actor": "alertmanager",
            "text": "Opened: DiskFull on billing",
            "data": "{}",
        },
        {
            "id": 2,
            "incident_id": 1,
            "time": T0 - 500 * SECOND,
            "kind": "acknowledged",
            "actor": "alice",
            "text": "Acknowledged by alice",
            "data": "{}",
        },
    ],
    "webhooks": [
        {
            "id": 1,
            "received_at": T0 - 590 * SECOND,
            "sha256": "ab" * 32,
            "group_key": '{}:{alertname="DiskFull"}',
            "receiver": "incident-bridge",
            "status": "firing",
            "alert_count": 1,
            "incidents": "[1]",
            "body": b'{"version": "4"}',
        }
    ],
    "outbox": [
        {
            "id": 1,
            "incident_id": 1,
            "target": "console",
            "tier": "incident",
            "event": "opened",
            "event_id": 1,
            "idempotency_key": "1:console:incident:1",
            "state": "delivered",
            "attempts": 1,
            "next_attempt_at": T0 - 590 * SECOND,
            "created_at": T0 - 590 * SECOND,
            "updated_at": T0 - 589 * SECOND,
            "delivered_at": T0 - 589 * SECOND,
        }
    ],
}


def _build(path: Path, version: int) -> dict[str, list[str]]:
    """A database at MIGRATIONS[:version] holding ROWS where their tables exist; the columns
    written, per table."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(sqlite_utils.Database(conn), MIGRATIONS[:version])
        written = {}
        for table, rows in ROWS.items():
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if not have:
                continue
            columns = [c for c in rows[0] if c in have]
            for row in rows:
                values = [row.get(c) for c in columns]
                conn.execute(
                    f"INSERT INTO {table} ({', '.join(columns)}) "
                    f"VALUES ({', '.join('?' for _ in columns)})",
                    values,
                )
            written[table] = columns
        return written
    finally:
        conn.close()
        path.chmod(0o600)


def _snapshot(path: Path, tables: dict[str, list[str]]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows as they were written: those columns, in key order."""
    conn = sqlite3.connect(path)
    try:
        return {
            table: conn.execute(
                f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1, 2"
            ).fetchall()
            for table, columns in tables.items()
        }
    finally:
        conn.close()


@pytest.mark.parametrize(
    "version", range(1, len(MIGRATIONS)), ids=[name for name, _ in MIGRATIONS[:-1]]
)
async def test_an_older_database_is_upgraded_at_start_with_its_rows_intact(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "old.db"
    tables = _build(path, version)
    assert {"incidents", "alerts", "incident_alerts", "timeline", "webhooks"} <= set(tables)
    assert ("outbox" in tables) == (version >= 2)
    before = _snapshot(path, tables)

    store = Store(path)
    applied = store.open()
    try:
        assert applied == [name for name, _ in MIGRATIONS[version:]]
        assert _snapshot(path, tables) == before

        old = await store.read(lambda conn: get_incident(conn, 1))
        assert old is not None
        assert old["title"] == "DiskFull on billing"
        assert old["status"] == "acknowledged"
        assert [e["text"] for e in old["timeline"]] == [
            "Opened: DiskFull on billing",
            "Acknowledged by alice",
        ]
        assert [a["fingerprint"] for a in old["alerts"]] == ["0123456789abcdef"]

        result = await ingest(store, fixture_body("firing-group-bearer.json"), now=T0)
        (new_id,) = {t.id for t in result.incidents} - {1, 2}
        new = await store.read(lambda conn: get_incident(conn, new_id))
        assert new is not None and new["status"] == "triggered"
        assert new["alerts"] and new["timeline"]
        listed = await store.read(lambda conn: list_incidents(conn))
        assert [i["id"] for i in listed] == [new_id, 2, 1]
        assert await store.read(integrity_check) == "ok"
    finally:
        store.close()
