"""The dead man's switch's table (docs/heartbeats.md): one row per heartbeat the service has
seen in its rules, with when it first saw it, the last beat, and the start of the lateness
episode whose alert the scheduler has raised (``core/heartbeats``).

A beat is one upsert of a few rows, outside the webhook's transaction: it never holds the
webhook's writer work up, and the beat is no part of an incident. ``last_seen`` only moves
forward (a late retry of an older beat changes nothing). ``late_since`` is set after the
heartbeat's alert was written and cleared after its resolve was: a crash between the two sends
the same alert again, which changes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection

from bridge.core.heartbeats import Seen


def create_table(conn: sqlite3.Connection) -> None:
    """Migration 0020_heartbeats (SQLite's spelling; postgres/schema.py has PostgreSQL's)."""
    conn.execute(
        "CREATE TABLE heartbeats (name TEXT PRIMARY KEY, first_seen INTEGER NOT NULL, "
        "last_seen INTEGER, late_since INTEGER) WITHOUT ROWID"
    )


def register(conn: sqlite3.Connection, *, names: Collection[str], now: int) -> list[Seen]:
    """The rules' heartbeats seen now for the first time get their row (a never-beaten one is
    late from then on); every row of ``names`` after."""
    for name in sorted(names):
        conn.execute(
            "INSERT INTO heartbeats (name, first_seen) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (name, now),
        )
    return read(conn, names=names)


def beat(conn: sqlite3.Connection, *, names: Collection[str], at: int) -> None:
    """Each heartbeat of ``names`` beaten at ``at`` (first seen then, when it had no row)."""
    for name in sorted(names):  # one order for every writer: no deadlock between two
        conn.execute(
            "INSERT INTO heartbeats (name, first_seen, last_seen) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen "
            "WHERE heartbeats.last_seen IS NULL OR heartbeats.last_seen < excluded.last_seen",
            (name, at, at),
        )


def read(conn: sqlite3.Connection, *, names: Collection[str] | None = None) -> list[Seen]:
    """The rows (of ``names``, or all), by name."""
    rows = conn.execute(
        "SELECT name, first_seen, last_seen, late_since FROM heartbeats ORDER BY name"
    ).fetchall()
    wanted = None if names is None else set(names)
    return [Seen(r[0], r[1], r[2], r[3]) for r in rows if wanted is None or r[0] in wanted]


def mark(
    conn: sqlite3.Connection,
    *,
    name: str,
    late_since: int | None,
    key: str | None = None,
    now: int = 0,
) -> bool:
    """The episode raised (``late_since`` its start) or cleared (None): False when the row was
    already so (another writer got there first) or is gone. Raised with the incident ``key``
    its alert went to, that incident's source is kept as ``heartbeat`` (the API's ``source``;
    an incident reopened by a later episode keeps the row it has)."""
    if late_since is not None and key is not None:
        conn.execute(
            "INSERT INTO incident_sources "
            "(incident_id, source, declared_by, description, labels, created_at) "
            "SELECT id, 'heartbeat', 'incident-bridge', ?, '{}', ? FROM incidents "
            "WHERE key = ? ORDER BY id DESC LIMIT 1 ON CONFLICT (incident_id) DO NOTHING",
            (f"heartbeat {name} late", now, key),
        )
    if late_since is None:
        cur = conn.execute(
            "UPDATE heartbeats SET late_since = NULL WHERE name = ? AND late_since IS NOT NULL",
            (name,),
        )
    else:
        cur = conn.execute(
            "UPDATE heartbeats SET late_since = ? WHERE name = ? AND late_since IS NULL",
            (late_since, name),
        )
    return cur.rowcount > 0
