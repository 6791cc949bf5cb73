"""The facts the insights aggregate (``core/insights.py``, docs/insights.md), in one read.

Incidents opened in the period and in the one before it (the trend), each with its alerts'
alertname (the smallest, when they differ) and whether any of them has a ``runbook_url``; its
reopenings, its alerts firing again after they resolved (flapping), the people its escalation
steps paged, who acknowledged it; the open action items. Drills (``incidents.drill``) are left
out. Counting is done here in SQL (grouped per incident) so that 100,000 incidents cross the
read pool as one row each, not as their whole timelines.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from bridge.core.insights import LABEL_NAME, Facts, IncidentFact, Interaction, OpenItem

# Drills (``incidents.drill``, migration 0023_drills) are practice: they count nowhere here.
_NOT_DRILL = "i.drill = 0"


def _label_filter(labels: Sequence[tuple[str, str]]) -> tuple[str, list[str]]:
    """SQL selecting incidents with an alert carrying every label given (name checked: it is
    spliced into the JSON path, the value is a parameter)."""
    sql, args = "", []
    for name, value in labels:
        if not LABEL_NAME.match(name):
            raise ValueError(f"not a label name: {name!r}")
        sql += (
            " AND EXISTS (SELECT 1 FROM incident_alerts la JOIN alerts a2 "
            "ON a2.fingerprint = la.fingerprint WHERE la.incident_id = i.id "
            f"AND json_extract(a2.labels, '$.{name}') = ?)"
        )
        args.append(value)
    return sql, args


def _incidents(
    conn: sqlite3.Connection, lo: int, hi: int, labels: Sequence[tuple[str, str]]
) -> list[IncidentFact]:
    where, args = _label_filter(labels)
    rows = conn.execute(
        "SELECT i.id, i.severity, coalesce(i.team, ''), coalesce(i.service, ''), "
        "coalesce(i.route, ''), i.status, i.started_at, i.opened_at, i.acknowledged_at, "
        "i.mitigated_at, i.resolved_at, i.dismissed_at IS NOT NULL "
        f"FROM incidents i WHERE i.opened_at >= ? AND i.opened_at < ? AND {_NOT_DRILL}{where}",
        [lo, hi, *args],
    ).fetchall()
    # The alerts' alertname and runbook, and the publications, in one pass each over the
    # period (a subquery per incident read 100,000 incidents' alerts one by one).
    alerts = {
        r[0]: (r[1] or "", bool(r[2]))
        for r in conn.execute(
            "SELECT ia.incident_id, min(json_extract(a.labels, '$.alertname')), "
            "max(CASE WHEN coalesce(json_extract(a.annotations, '$.runbook_url'), '') <> '' "
            "THEN 1 ELSE 0 END) FROM incidents i JOIN incident_alerts ia "
            "ON ia.incident_id = i.id JOIN alerts a ON a.fingerprint = ia.fingerprint "
            "WHERE i.opened_at >= ? AND i.opened_at < ? GROUP BY ia.incident_id",
            [lo, hi],
        ).fetchall()
    }
    published = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT p.incident_id FROM postmortem_publications p JOIN incidents i "
            "ON i.id = p.incident_id WHERE i.opened_at >= ? AND i.opened_at < ?",
            [lo, hi],
        ).fetchall()
    }
    none = ("", False)
    return [
        IncidentFact(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            r[8],
            r[9],
            r[10],
            bool(r[11]),
            *alerts.get(r[0], none),
            published=r[0] in published,
        )
        for r in rows
    ]


def _counts(conn: sqlite3.Connection, lo: int, hi: int) -> dict[int, tuple[int, int, int]]:
    """Per incident of the period: reopenings, alerts fired again after the first firing of
    each (flapping), escalation steps (pages)."""
    rows = conn.execute(
        "SELECT t.incident_id, "
        "sum(CASE WHEN t.kind = 'reopened' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN t.kind = 'alert_fired' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN t.kind = 'escalation_step' THEN 1 ELSE 0 END) "
        "FROM incidents i JOIN timeline t ON t.incident_id = i.id "
        "WHERE i.opened_at >= ? AND i.opened_at < ? "
        "AND t.kind IN ('reopened', 'alert_fired', 'escalation_step') "
        "GROUP BY t.incident_id",
        [lo, hi],
    ).fetchall()
    alerts = dict(
        conn.execute(
            "SELECT ia.incident_id, count(*) FROM incidents i JOIN incident_alerts ia "
            "ON ia.incident_id = i.id WHERE i.opened_at >= ? AND i.opened_at < ? "
            "GROUP BY ia.incident_id",
            [lo, hi],
        ).fetchall()
    )
    return {
        r[0]: (int(r[1] or 0), max(0, int(r[2] or 0) - int(alerts.get(r[0], 0))), int(r[3] or 0))
        for r in rows
    }


def _interactions(conn: sqlite3.Connection, lo: int, hi: int) -> list[Interaction]:
    """The people paged by escalation steps and those who acknowledged, of the period's
    incidents (an acknowledgement is a person's status change to ``acknowledged``)."""
    out: list[Interaction] = []
    rows = conn.execute(
        "SELECT t.incident_id, t.kind, t.actor, t.time, t.data FROM incidents i "
        "JOIN timeline t ON t.incident_id = i.id WHERE i.opened_at >= ? AND i.opened_at < ? "
        "AND (t.kind = 'escalation_step' OR (t.kind = 'status_changed' "
        "AND json_extract(t.data, '$.to') = 'acknowledged'))",
        [lo, hi],
    ).fetchall()
    for incident_id, kind, actor, at, data in rows:
        if kind == "status_changed":
            out.append(Interaction(actor, "ack", incident_id, at))
            continue
        try:
            people = json.loads(data or "{}").get("people") or []
        except (ValueError, AttributeError):
            people = []
        out.extend(Interaction(p, "page", incident_id, at) for p in people if isinstance(p, str))
    return out


def _open_items(conn: sqlite3.Connection) -> list[OpenItem]:
    rows = conn.execute(
        "SELECT f.incident_id, f.text, coalesce(f.owner, ''), f.created_at "
        "FROM followup_items f JOIN incidents i ON i.id = f.incident_id "
        f"WHERE f.state = 'open' AND f.kind = 'action' AND {_NOT_DRILL}"
    ).fetchall()
    return [OpenItem(r[0], r[1], r[2], r[3]) for r in rows]


def read(
    conn: sqlite3.Connection,
    *,
    until: int,
    span: int,
    labels: Sequence[tuple[str, str]] = (),
) -> Facts:
    """The facts of [until - span, until) and of the period of the same length before it."""
    lo, prev = until - span, until - 2 * span
    current = _incidents(conn, lo, until, labels)
    counts = _counts(conn, lo, until)
    current = [_with_counts(i, counts[i.id]) if i.id in counts else i for i in current]
    ids = {i.id for i in current}
    interactions = [x for x in _interactions(conn, lo, until) if x.incident_id in ids]
    return Facts(
        current=current,
        previous=_incidents(conn, prev, lo, labels),
        interactions=interactions,
        open_items=_open_items(conn),
    )


def _with_counts(i: IncidentFact, c: tuple[int, int, int]) -> IncidentFact:
    from dataclasses import replace

    return replace(i, reopens=c[0], flaps=c[1], pages=c[2])
