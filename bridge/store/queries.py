"""Read queries for the API and metrics; each takes a read-only connection."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from bridge.core.declare import source_view
from bridge.core.incidents import MILESTONES
from bridge.core.timeutil import format_ns

_INCIDENT = (
    "id, key, title, severity, status, route, team, service, "
    + ", ".join(MILESTONES)
    + ", truncated_alerts, previous_id, roles, people, receiver, drill"
)
_COLUMNS = (
    _INCIDENT + ", (SELECT coalesce(sum(n), 0) FROM incident_alert_counts c "
    "WHERE c.incident_id = incidents.id) AS alert_count"
)
_ALERT = (
    "ia.fingerprint, ia.status, a.labels, a.annotations, ia.starts_at, ia.ends_at, "
    "a.generator_url, ia.first_seen, ia.last_seen, ia.mark"
)


def _row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    out = {d[0]: v for d, v in zip(cursor.description, row, strict=True)}
    for name in MILESTONES:
        if name in out:
            out[name] = format_ns(out[name])
    if "drill" in out:  # a drill's incident (core/drills.py): true or false in the API
        out["drill"] = bool(out["drill"])
    for name in ("roles", "people"):
        if name in out:
            text = out[name]
            out[name] = {} if not text or text == "{}" else json.loads(text)
    return out


def list_incidents(
    conn: sqlite3.Connection,
    *,
    statuses: Sequence[str] = (),
    severities: Sequence[str] = (),
    teams: Sequence[str] = (),
    routes: Sequence[str] = (),
    services: Sequence[str] = (),
    since: int | None = None,
    until: int | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Newest first, each filter one of its values (none: any); ``since``/``until`` bound
    ``opened_at`` (ns, ``until`` excluded); ``before`` is the id to continue below (keyset
    pagination)."""
    where: list[str] = []
    args: list[Any] = []
    for column, values in (
        ("status", statuses),
        ("severity", severities),
        ("team", teams),
        ("route", routes),
        ("service", services),
    ):
        if values:
            where.append(f"{column} IN ({','.join('?' * len(values))})")
            args += values
    if since is not None:
        where.append("opened_at >= ?")
        args.append(since)
    if until is not None:
        where.append("opened_at < ?")
        args.append(until)
    if before is not None:
        where.append("id < ?")
        args.append(before)
    sql = f"SELECT {_COLUMNS} FROM incidents"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    cur = conn.execute(sql, (*args, limit))
    return [_row(cur, r) for r in cur.fetchall()]


def get_incident(conn: sqlite3.Connection, incident_id: int) -> dict[str, Any] | None:
    """The incident with its alerts and its whole timeline."""
    incident = get_incident_alerts(conn, incident_id)
    if incident is not None:
        incident["timeline"] = timeline_events(conn, incident_id)
        incident.update(source_of(conn, incident_id))
    return incident


def source_of(conn: sqlite3.Connection, incident_id: int) -> dict[str, Any]:
    """Where the incident came from (declared by whom, or a webhook's) and the incident it was
    merged into, if it was (store/declared.py keeps both)."""
    row = conn.execute(
        "SELECT source, declared_by, description, labels FROM incident_sources "
        "WHERE incident_id = ?",
        (incident_id,),
    ).fetchone()
    merged = conn.execute(
        "SELECT survivor_id FROM incident_merges WHERE duplicate_id = ?", (incident_id,)
    ).fetchone()
    return {"source": source_view(row, merged[0] if merged else None)}


def timeline_events(
    conn: sqlite3.Connection, incident_id: int, ids: list[int] | None = None
) -> list[dict[str, Any]]:
    """The incident's timeline in order, or only the events with these ids."""
    sql = "SELECT id, time, kind, actor, text, data FROM timeline WHERE incident_id = ?"
    args: list[Any] = [incident_id]
    if ids is not None:
        sql += f" AND id IN ({','.join('?' * len(ids))})"
        args += ids
    cur = conn.execute(sql + " ORDER BY id", args)
    events = [
        {
            "id": eid,
            "time": format_ns(time),
            "kind": kind,
            "actor": actor,
            "text": text,
            "data": json.loads(data or "{}"),
        }
        for eid, time, kind, actor, text, data in cur.fetchall()
    ]
    # History is never rewritten: an entry that a later one corrects keeps its text and says
    # by which entry, and what the text now reads.
    by_id = {e["id"]: e for e in events}
    for e in events:
        target = by_id.get(e["data"].get("corrects"))
        if target is not None:
            target["corrected_by"] = e["id"]
            target["corrected_text"] = e["data"].get("text", e["text"])
    return events


def timeline_since(
    conn: sqlite3.Connection, incident_id: int, after: int, limit: int = 500
) -> list[dict[str, Any]]:
    """The entries after id ``after`` (what a live page has not shown yet), in order."""
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM timeline WHERE incident_id = ? AND id > ? ORDER BY id LIMIT ?",
            (incident_id, after, limit),
        )
    ]
    return timeline_events(conn, incident_id, ids) if ids else []


def last_change(conn: sqlite3.Connection, incident_id: int) -> tuple[int, str] | None:
    """(newest timeline id, status) of an incident: what a live page watches (two index
    lookups), or None when there is no such incident."""
    row = conn.execute(
        "SELECT status, (SELECT max(id) FROM timeline WHERE incident_id = ?1) FROM incidents "
        "WHERE id = ?1",
        (incident_id,),
    ).fetchone()
    return None if row is None else (int(row[1] or 0), str(row[0]))


def incident_summary(conn: sqlite3.Connection, incident_id: int) -> dict[str, Any] | None:
    """The incident's row as the list shows it: no alerts, no timeline."""
    cur = conn.execute(f"SELECT {_COLUMNS} FROM incidents WHERE id = ?", (incident_id,))
    row = cur.fetchone()
    return None if row is None else _row(cur, row)


def get_incident_alerts(conn: sqlite3.Connection, incident_id: int) -> dict[str, Any] | None:
    """The incident with its alerts, without the timeline."""
    cur = conn.execute(f"SELECT {_COLUMNS} FROM incidents WHERE id = ?", (incident_id,))
    row = cur.fetchone()
    if row is None:
        return None
    incident = _row(cur, row)
    incident["alerts"] = _alerts(
        conn.execute(
            f"SELECT {_ALERT} FROM incident_alerts ia "
            "JOIN alerts a ON a.fingerprint = ia.fingerprint WHERE ia.incident_id = ? "
            "ORDER BY ia.starts_at, ia.fingerprint",
            (incident_id,),
        )
    )
    return incident


def get_incident_for_message(
    conn: sqlite3.Connection, incident_id: int, *, max_alerts: int
) -> dict[str, Any] | None:
    """The incident as one message shows it: its row, how many alerts it has
    (``alert_count``, ``firing_count``, ``resolved_count``) and its ``max_alerts`` newest alerts
    (by start, listed oldest first as ``get_incident_alerts`` lists them).

    The outbox worker reads this for every message: only the shown alerts are loaded, decoded
    and handed on, the newest picked by a short walk of an index, and the counts read from the
    table the triggers keep, so the cost does not grow with the incident (docs/performance.md).
    """
    cur = conn.execute(f"SELECT {_INCIDENT} FROM incidents WHERE id = ?", (incident_id,))
    row = cur.fetchone()
    if row is None:
        return None
    incident = _row(cur, row)
    # Counts the triggers keep (migration 0004): a few rows, whatever the incident's size.
    total, firing, resolved = conn.execute(
        "SELECT coalesce(sum(n), 0), "
        "coalesce(sum(CASE WHEN status = 'firing' THEN n ELSE 0 END), 0), "
        "coalesce(sum(CASE WHEN status = 'resolved' THEN n ELSE 0 END), 0) "
        "FROM incident_alert_counts "
        "WHERE incident_id = ?",
        (incident_id,),
    ).fetchone()
    incident.update(alert_count=total, firing_count=firing, resolved_count=resolved)
    # The newest are picked by a walk of the (incident_id, starts_at, fingerprint) index, then
    # only they are read, by primary key.
    incident["alerts"] = _alerts(
        conn.execute(
            f"SELECT {_ALERT} FROM (SELECT fingerprint FROM incident_alerts "
            "WHERE incident_id = ?1 ORDER BY starts_at DESC, fingerprint DESC LIMIT ?2) newest "
            "JOIN incident_alerts ia ON ia.incident_id = ?1 AND ia.fingerprint = newest.fingerprint "
            "JOIN alerts a ON a.fingerprint = ia.fingerprint "
            "ORDER BY ia.starts_at, ia.fingerprint",
            (incident_id, max_alerts),
        )
    )
    return incident


def _alerts(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    out = []
    for row in cur.fetchall():
        fp, status, labels, annotations, starts_at, ends_at, url, first, last, mark = row
        kept = json.loads(mark) if mark else {}
        out.append(
            {
                "fingerprint": fp,
                "status": status,
                "labels": json.loads(labels),
                "annotations": json.loads(annotations or "{}"),
                "starts_at": format_ns(starts_at),
                "ends_at": format_ns(ends_at),
                "generator_url": url or "",
                "first_seen": format_ns(first),
                "last_seen": format_ns(last),
                # what Alertmanager's API said of it (docs/reconcile.md): silenced or
                # inhibited (with by what), and whether its resolve came from the API
                "suppressed": kept.get("suppressed"),
                "resolved_via": kept.get("resolved_via"),
            }
        )
    return out


def incident_counts(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    """(severity, status) -> how many incidents are being worked (triggered, acknowledged).
    A walk of the (status, severity) index over those incidents only: resolved, closed and
    mitigated ones, the whole history, are never read."""
    rows = conn.execute(
        "SELECT severity, status, count(*) FROM incidents "
        "WHERE status IN ('triggered', 'acknowledged') GROUP BY severity, status"
    )
    return {(sev, status): n for sev, status, n in rows}


def integrity_check(conn: sqlite3.Connection) -> str:
    return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def prune_webhook_bodies(conn: sqlite3.Connection, older_than: int) -> int:
    """Drop raw bodies of journalled webhooks received before ``older_than`` (ns)."""
    cur = conn.execute(
        "UPDATE webhooks SET body = NULL WHERE received_at < ? AND body IS NOT NULL", (older_than,)
    )
    return cur.rowcount


def activity(conn: sqlite3.Connection) -> tuple[int, int]:
    """The newest webhook and timeline entry: they move when the service is being used."""
    row = conn.execute(
        "SELECT (SELECT coalesce(max(id), 0) FROM webhooks), "
        "(SELECT coalesce(max(id), 0) FROM timeline)"
    ).fetchone()
    return int(row[0]), int(row[1])


def ready_check(conn: sqlite3.Connection) -> None:
    """Raises when the database cannot be read (missing, locked past the timeout, corrupt)."""
    conn.execute("SELECT 1 FROM incidents LIMIT 1").fetchall()


def newest_first(
    conn: sqlite3.Connection,
    table: str,
    columns: str,
    *,
    state: str | None,
    before: int | None,
    limit: int,
) -> list[tuple[Any, ...]]:
    """A page of a queue's rows (the outbox, the channel messages), newest first: of one
    ``state``, with ids below ``before``. ``table`` and ``columns`` are the caller's constants."""
    where: list[str] = []
    args: list[Any] = []
    if state:
        where.append("state = ?")
        args.append(state)
    if before is not None:
        where.append("id < ?")
        args.append(before)
    sql = f"SELECT {columns} FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return list(conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall())
