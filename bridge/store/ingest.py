"""Writing one webhook: runs in the writer thread, inside the writer's transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.alertmanager import WebhookPayload
from bridge.incidents import AlertState, Incident, Plan, plan_webhook
from bridge.policy import Decision

_INCIDENT_COLUMNS = (
    "id, key, title, severity, status, started_at, opened_at, route, team, service, "
    "acknowledged_at, mitigated_at, resolved_at, closed_at, truncated_alerts, previous_id"
)


@dataclass(frozen=True)
class Touched:
    id: int
    key: str
    status: str
    severity: str
    created: bool
    changed: bool

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "key": self.key, "status": self.status, "changed": self.changed}


@dataclass(frozen=True)
class WebhookResult:
    webhook_id: int
    incidents: tuple[Touched, ...]
    plans: tuple[Plan, ...]

    @property
    def changed(self) -> bool:
        return any(t.changed for t in self.incidents)


def _incident(row: Sequence[Any]) -> Incident:
    return Incident(
        id=row[0],
        key=row[1],
        title=row[2],
        severity=row[3],
        status=row[4],
        started_at=row[5],
        opened_at=row[6],
        route=row[7],
        team=row[8],
        service=row[9],
        acknowledged_at=row[10],
        mitigated_at=row[11],
        resolved_at=row[12],
        closed_at=row[13],
        truncated_alerts=row[14] or 0,
        previous_id=row[15],
    )


def _latest_incident(conn: sqlite3.Connection, key: str) -> Incident | None:
    row = conn.execute(
        f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE key = ? ORDER BY id DESC LIMIT 1",
        (key,),
    ).fetchone()
    return _incident(row) if row else None


def _links(conn: sqlite3.Connection, incident_id: int) -> dict[str, AlertState]:
    rows = conn.execute(
        "SELECT fingerprint, status, starts_at, ends_at FROM incident_alerts WHERE incident_id = ?",
        (incident_id,),
    )
    return {r[0]: AlertState(r[0], r[1], r[2], r[3]) for r in rows}


def _known(
    conn: sqlite3.Connection, key: str, fingerprints: Sequence[str], links: dict[str, AlertState]
) -> dict[str, AlertState]:
    """Newest state per fingerprint across every incident with this key."""
    known = {fp: links[fp] for fp in fingerprints if fp in links}
    missing = [fp for fp in fingerprints if fp not in known]
    if missing:
        marks = ",".join("?" * len(missing))
        rows = conn.execute(
            "SELECT ia.fingerprint, ia.status, ia.starts_at, ia.ends_at FROM incident_alerts ia "
            f"JOIN incidents i ON i.id = ia.incident_id WHERE i.key = ? AND ia.fingerprint IN ({marks}) "
            "ORDER BY ia.incident_id DESC",
            (key, *missing),
        )
        for fp, status, starts_at, ends_at in rows:
            known.setdefault(fp, AlertState(fp, status, starts_at, ends_at))
    return known


def _write_incident(conn: sqlite3.Connection, incident: Incident, now: int) -> int:
    values = (
        incident.key,
        incident.title,
        incident.severity,
        incident.status,
        incident.started_at,
        incident.opened_at,
        incident.route,
        incident.team,
        incident.service,
        incident.acknowledged_at,
        incident.mitigated_at,
        incident.resolved_at,
        incident.closed_at,
        incident.truncated_alerts,
        incident.previous_id,
        now,
    )
    if incident.id is None:
        cur = conn.execute(
            "INSERT INTO incidents (key, title, severity, status, started_at, opened_at, route, "
            "team, service, acknowledged_at, mitigated_at, resolved_at, closed_at, "
            "truncated_alerts, previous_id, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )
        assert cur.lastrowid is not None
        return cur.lastrowid
    conn.execute(
        "UPDATE incidents SET key = ?, title = ?, severity = ?, status = ?, started_at = ?, "
        "opened_at = ?, route = ?, team = ?, service = ?, acknowledged_at = ?, mitigated_at = ?, "
        "resolved_at = ?, closed_at = ?, truncated_alerts = ?, previous_id = ?, updated_at = ? "
        "WHERE id = ?",
        (*values, incident.id),
    )
    return incident.id


def _upsert_alerts(conn: sqlite3.Connection, payload: WebhookPayload, now: int) -> None:
    # The alerts table holds the newest occurrence per fingerprint; a stale copy (older
    # startsAt, or "firing" for an occurrence already resolved) only refreshes last_seen.
    conn.executemany(
        "INSERT INTO alerts (fingerprint, labels, annotations, status, starts_at, ends_at, "
        "generator_url, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(fingerprint) DO UPDATE SET last_seen = excluded.last_seen, "
        "labels = CASE WHEN excluded.starts_at >= starts_at THEN excluded.labels ELSE labels END, "
        "annotations = CASE WHEN excluded.starts_at >= starts_at "
        "THEN excluded.annotations ELSE annotations END, "
        "generator_url = CASE WHEN excluded.starts_at >= starts_at "
        "THEN excluded.generator_url ELSE generator_url END, "
        "status = CASE WHEN excluded.starts_at > starts_at OR "
        "(excluded.starts_at = starts_at AND status = 'firing') THEN excluded.status ELSE status END, "
        "ends_at = CASE WHEN excluded.starts_at > starts_at OR "
        "(excluded.starts_at = starts_at AND status = 'firing') THEN excluded.ends_at ELSE ends_at END, "
        "starts_at = max(starts_at, excluded.starts_at)",
        [
            (
                a.fingerprint,
                json.dumps(a.labels, sort_keys=True),
                json.dumps(a.annotations, sort_keys=True),
                a.status,
                a.starts_at,
                a.ends_at if a.status == "resolved" else None,
                a.generator_url,
                now,
                now,
            )
            for a in payload.alerts
        ],
    )


def apply_webhook(
    conn: sqlite3.Connection,
    *,
    payload: WebhookPayload,
    decisions: Sequence[Decision],
    sha256: str,
    body: bytes | None,
    now: int,
) -> WebhookResult:
    """Store a webhook's alerts, update its incidents and write the timeline, atomically."""
    _upsert_alerts(conn, payload, now)
    by_fp = {a.fingerprint: a for a in payload.alerts}
    touched: list[Touched] = []
    plans: list[Plan] = []
    for decision in decisions:
        alerts = [by_fp[fp] for fp in dict.fromkeys(decision.fingerprints) if fp in by_fp]
        current = _latest_incident(conn, decision.key)
        if current is None or current.id is None:
            links: dict[str, AlertState] = {}
            known: dict[str, AlertState] = {}  # no incident ever had this key
        else:
            links = _links(conn, current.id)
            known = _known(conn, decision.key, [a.fingerprint for a in alerts], links)
        plan = plan_webhook(
            decision=decision,
            alerts=alerts,
            truncated=payload.truncated_alerts,
            current=current,
            current_links=links,
            known=known,
            now=now,
        )
        plans.append(plan)
        if plan.incident is None:
            continue
        incident_id = plan.incident.id
        if plan.changed or incident_id is None:
            incident_id = _write_incident(conn, plan.incident, now)
        conn.executemany(
            "INSERT INTO incident_alerts (incident_id, fingerprint, status, starts_at, ends_at, "
            "first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(incident_id, fingerprint) DO UPDATE SET status = excluded.status, "
            "starts_at = excluded.starts_at, ends_at = excluded.ends_at, last_seen = excluded.last_seen",
            [
                (incident_id, s.fingerprint, s.status, s.starts_at, s.ends_at, now, now)
                for s in plan.links
            ],
        )
        conn.executemany(
            "INSERT INTO timeline (incident_id, time, kind, actor, text, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (incident_id, now, e.kind, e.actor, e.text, json.dumps(e.data))
                for e in plan.events
            ],
        )
        touched.append(
            Touched(
                id=incident_id,
                key=plan.incident.key,
                status=plan.incident.status,
                severity=plan.incident.severity,
                created=plan.created,
                changed=plan.changed,
            )
        )
    status = "applied" if any(t.changed for t in touched) else "unchanged"
    cur = conn.execute(
        "INSERT INTO webhooks (received_at, sha256, group_key, receiver, status, alert_count, "
        "incidents, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            now,
            sha256,
            payload.group_key,
            payload.receiver,
            status,
            len(payload.alerts),
            json.dumps([t.id for t in touched]),
            body,
        ),
    )
    assert cur.lastrowid is not None
    return WebhookResult(webhook_id=cur.lastrowid, incidents=tuple(touched), plans=tuple(plans))
