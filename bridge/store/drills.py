"""Drills (core/drills.py) in the store: the incidents marked as drills, the report's facts,
scheduled drills fired once per scheduled time.

- ``incidents.drill`` (migration 0023_drills): 1 for a drill's incident, set when it opens from
  ``Decision.drill``; a partial index finds the few drills without a walk of every incident.
- ``drill_runs`` (route, slot, kind, at): a scheduled drill's announcement (``announce``) and
  its firing (``fire``) claimed once per (route, scheduled time): the key is the claim, so two
  ticks, a restart or another replica never fire a slot twice.

The statements are written once in SQLite's spelling; PostgreSQL runs them through its dialect.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

# The DDL of migration 0023_drills, the same on both backends.
DDL: tuple[str, ...] = (
    "ALTER TABLE incidents ADD COLUMN drill INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX idx_incidents_drill ON incidents (id) WHERE drill = 1",
    "CREATE TABLE drill_runs (route TEXT NOT NULL, slot BIGINT NOT NULL, kind TEXT NOT NULL, "
    "at BIGINT NOT NULL, PRIMARY KEY (route, slot, kind))",
)


def claim_run(conn: sqlite3.Connection, route: str, slot: int, kind: str, now: int) -> bool:
    """Claim a scheduled drill's ``kind`` ("announce", "fire") for ``slot`` (its scheduled time,
    ns): True for the one transaction that claims it, False once it was claimed."""
    cur = conn.execute(
        "INSERT INTO drill_runs (route, slot, kind, at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (route, slot, kind) DO NOTHING",
        (route, slot, kind, now),
    )
    return cur.rowcount == 1


def claimed_runs(conn: sqlite3.Connection, route: str) -> list[tuple[int, str]]:
    """The slots and kinds claimed for ``route``, oldest first."""
    rows = conn.execute(
        "SELECT slot, kind FROM drill_runs WHERE route = ? ORDER BY slot, kind", (route,)
    ).fetchall()
    return [(int(slot), str(kind)) for slot, kind in rows]


def find(conn: sqlite3.Connection, name: str) -> int | None:
    """The drill incident whose alert carries ``drill_id=name`` (core/drills.labels), newest."""
    rows = conn.execute(
        "SELECT i.id, a.labels FROM incidents i "
        "JOIN incident_alerts ia ON ia.incident_id = i.id "
        "JOIN alerts a ON a.fingerprint = ia.fingerprint "
        "WHERE i.drill = 1 ORDER BY i.id DESC LIMIT 1000"
    ).fetchall()
    for incident_id, labels in rows:
        if json.loads(labels or "{}").get("drill_id") == name:
            return int(incident_id)
    return None


def report_facts(conn: sqlite3.Connection, incident_id: int) -> dict[str, Any] | None:
    """What a drill's report reads, in one read: the incident's milestones, its outbox rows
    (target, tier, event, state, attempts, last error) and its timeline's kinds with times.
    None: no such incident, or not a drill."""
    row = conn.execute(
        "SELECT id, title, severity, status, route, started_at, opened_at, acknowledged_at, "
        "mitigated_at, resolved_at, closed_at, roles, drill FROM incidents WHERE id = ?",
        (incident_id,),
    ).fetchone()
    if row is None or not row[12]:
        return None
    keys = (
        "id",
        "title",
        "severity",
        "status",
        "route",
        "started_at",
        "opened_at",
        "acknowledged_at",
        "mitigated_at",
        "resolved_at",
        "closed_at",
    )
    incident: dict[str, Any] = dict(zip(keys, row[:11], strict=True))
    incident["roles"] = json.loads(row[11] or "{}")
    outbox = [
        {
            "target": target,
            "tier": tier,
            "event": event,
            "state": state,
            "attempts": attempts,
            "error": error,
        }
        for target, tier, event, state, attempts, error in conn.execute(
            "SELECT target, tier, event, state, attempts, last_error FROM outbox "
            "WHERE incident_id = ? ORDER BY id",
            (incident_id,),
        ).fetchall()
    ]
    timeline = [
        {"time": time, "kind": kind, "actor": actor, "data": json.loads(data or "{}")}
        for time, kind, actor, data in conn.execute(
            "SELECT time, kind, actor, data FROM timeline WHERE incident_id = ? ORDER BY id",
            (incident_id,),
        ).fetchall()
    ]
    return {"incident": incident, "outbox": outbox, "timeline": timeline}
