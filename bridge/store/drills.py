"""Drills (core/drills.py) in the store: the incidents marked as drills, the report's facts,
scheduled drills fired once per scheduled time.

- ``incidents.drill`` (migration 0023_drills): 1 for a drill's incident, set when it opens from
  ``Decision.drill``; a partial index finds the few drills without a walk of every incident.
- ``drill_runs`` (route, slot, kind, at): a scheduled drill's announcement (``announce``) and
  its firing (``fire``) claimed once per (route, scheduled time): the key is the claim, so two
  ticks, a restart or another replica never fire a slot twice. The announcement's channel
  message (``store/messages``) is written with its claim (``announce``).

The statements are written once in SQLite's spelling; PostgreSQL runs them through its dialect.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping
from typing import Any

from bridge.core.mttx import HISTOGRAMS
from bridge.store import messages
from bridge.store.metrics import DRILL_TEAM, count_sql, observe_sql

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


def announce(
    conn: sqlite3.Connection,
    route: str,
    slot: int,
    now: int,
    data: Mapping[str, Any],
    targets: Collection[str],
) -> bool:
    """Claim the announcement of ``route``'s drill at ``slot`` and write its channel message
    (``store/messages``, kind ``drill_announcement``) to ``targets`` in this transaction:
    the message goes out once however many ticks, restarts or replicas claim it. False (and
    nothing written) once it was claimed."""
    if not claim_run(conn, route, slot, "announce", now):
        return False
    key = f"drill:{route}:{slot}"
    messages.enqueue(conn, key=key, kind="drill_announcement", data=data, targets=targets, now=now)
    return True


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


# --- drills' MTTx kept apart --------------------------------------------------------------------
#
# The MTTx aggregates (store/metrics.py, migration 0011) are kept by triggers as each milestone
# is written. For a drill's incident, triggers of its own (``metric_drill_*``, same events and
# conditions, ``new.drill = 1``) move each of its observations out of the (severity, team) row
# and into the row of team ``DRILL_TEAM``: the two write additively (n - 1 there, n + 1 here),
# so the order in which the triggers of one statement fire does not matter. The collector
# exports the drills' rows as families of their own (``incident_bridge_drill_*``), out of the
# MTTx families, the shipped dashboard and the recording rules.

_TEAM = "coalesce(new.team, '')"


def _moved(statement: str) -> list[str]:
    """An observation or count statement of store/metrics as its move: taken back from its
    row, added to the drills' row."""
    if ", 1, d FROM" in statement:  # a histogram observation
        back = statement.replace(", 1, d FROM", ", -1, -d FROM", 1)
    else:  # a counter
        back = statement.replace(", 1) ON CONFLICT", ", -1) ON CONFLICT", 1)
    back = back.replace("SET n = n + 1", "SET n = n - 1", 1)
    assert back != statement and _TEAM in statement
    return [back, statement.replace(_TEAM, f"'{DRILL_TEAM}'", 1)]


def metric_moves() -> dict[str, tuple[str, str, list[str]]]:
    """trigger name -> (SQLite's event, the condition on old/new, the statements), for both
    backends (postgres/schema.py spells them in PL/pgSQL)."""
    inserted = _moved(count_sql("opened")) + _moved(observe_sql("detect"))
    for metric in ("ack", "mitigate", "resolve"):
        column = HISTOGRAMS[metric][1]
        inserted += [
            s.replace("WHERE true", f"WHERE new.{column} IS NOT NULL", 1)
            for s in _moved(observe_sql(metric))
        ]
    out = {"metric_drill_insert": ("AFTER INSERT", "new.drill = 1", inserted)}
    for metric in ("ack", "resolve"):
        column = HISTOGRAMS[metric][1]
        out[f"metric_drill_{metric}"] = (
            f"AFTER UPDATE OF {column}",
            f"new.drill = 1 AND old.{column} IS NULL AND new.{column} IS NOT NULL",
            _moved(observe_sql(metric)),
        )
    out["metric_drill_mitigate"] = (
        "AFTER UPDATE OF mitigated_at",
        "new.drill = 1 AND old.mitigated_at IS NULL AND new.mitigated_at IS NOT NULL AND NOT "
        "EXISTS (SELECT 1 FROM metric_reopened r WHERE r.incident_id = new.id)",
        _moved(observe_sql("mitigate")),
    )
    out["metric_drill_reopen"] = (
        "AFTER UPDATE OF status",
        "new.drill = 1 AND old.status = 'mitigated' AND new.status = 'triggered'",
        _moved(count_sql("reopened")),
    )
    out["metric_drill_dismissed"] = (
        "AFTER UPDATE OF dismissed_at",
        "new.drill = 1 AND old.dismissed_at IS NULL AND new.dismissed_at IS NOT NULL",
        _moved(count_sql("dismissed")),
    )
    return out


def install_metric_moves(conn: sqlite3.Connection) -> None:
    """SQLite's triggers of ``metric_moves`` (migration 0023_drills)."""
    for name, (event, when, statements) in metric_moves().items():
        conn.execute(
            f"CREATE TRIGGER {name} {event} ON incidents WHEN {when} BEGIN "
            f"{' '.join(statements)} END"
        )
