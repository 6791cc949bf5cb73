"""Replicas on one database (docs/postgresql.md, "Replicas"): what several ``serve`` processes
agree on through the database alone, with no coordinator of their own.

- ``leases``: one row per background loop that must run once cluster-wide (the scheduler, the
  indexer, the reconciler): who holds it and until when. Taken or renewed by one upsert in a
  write transaction: the row goes to the asker when it is the holder already, or when the
  holder's lease has expired, or when there is no row. Write transactions run one after another
  on both backends (SQLite's one writer; PostgreSQL's advisory write lock), so two askers never
  both win. Released (``expires_at`` set to 0) on a clean stop, so a rolling restart hands over
  at once.
- ``replicas``: one row per live process (its id, the hash of its rules, when it started, when
  it was last seen), written by each on a heartbeat and pruned long after it stops.
- ``shared_secrets``: a value every replica must share (the web session's signing key), made
  once: the first ``INSERT ... ON CONFLICT DO NOTHING`` wins and everyone reads what is there.

Times are the callers' wall clocks (ns): replicas' clocks must agree to well under a lease's
length, as they do under NTP.
"""

from __future__ import annotations

import sqlite3

from bridge.core.values import immutable


def create_tables(conn: sqlite3.Connection) -> None:
    """Migration 0016_coordination (SQLite's spelling; postgres/schema.py has PostgreSQL's)."""
    conn.execute(
        "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, "
        "taken_at INTEGER NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE replicas (id TEXT PRIMARY KEY, rules_hash TEXT NOT NULL, "
        "started_at INTEGER NOT NULL, seen_at INTEGER NOT NULL) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE shared_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL, "
        "created_at INTEGER NOT NULL) WITHOUT ROWID"
    )


@immutable
class Lease:
    """A lease as the database holds it after the asker's transaction."""

    name: str
    holder: str
    taken_at: int  # when the current holder got it (kept across its renewals)
    expires_at: int


@immutable
class Replica:
    id: str
    rules_hash: str
    started_at: int
    seen_at: int


def take_lease(conn: sqlite3.Connection, *, name: str, holder: str, now: int, until: int) -> Lease:
    """Take or renew ``name`` for ``holder`` until ``until`` when it is free, expired or already
    ``holder``'s; the lease as it stands after (``holder`` says who won)."""
    conn.execute(
        "INSERT INTO leases (name, holder, taken_at, expires_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
        "taken_at = CASE WHEN leases.holder = excluded.holder AND leases.expires_at >= ? "
        "THEN leases.taken_at ELSE excluded.taken_at END, expires_at = excluded.expires_at "
        "WHERE leases.holder = excluded.holder OR leases.expires_at < ?",
        (name, holder, now, until, now, now),
    )
    found = read_lease(conn, name=name)
    assert found is not None  # the row exists: inserted now or before
    return found


def read_lease(conn: sqlite3.Connection, *, name: str) -> Lease | None:
    row = conn.execute(
        "SELECT name, holder, taken_at, expires_at FROM leases WHERE name = ?", (name,)
    ).fetchone()
    return Lease(row[0], row[1], row[2], row[3]) if row is not None else None


def release_lease(conn: sqlite3.Connection, *, name: str, holder: str) -> bool:
    """Give ``name`` up when ``holder`` holds it (a clean stop): expired at once, so the next
    asker takes it without waiting. False when someone else held it."""
    cur = conn.execute(
        "UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ?", (name, holder)
    )
    return cur.rowcount > 0


def heartbeat(
    conn: sqlite3.Connection,
    *,
    replica: str,
    rules_hash: str,
    started_at: int,
    now: int,
    live_after: int,
    prune_before: int,
) -> list[Replica]:
    """This replica seen now (with its rules' hash), the rows of replicas not seen since
    ``prune_before`` deleted, and the replicas seen since ``live_after`` (this one among them),
    by id: one write transaction, a few rows."""
    conn.execute(
        "INSERT INTO replicas (id, rules_hash, started_at, seen_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET rules_hash = excluded.rules_hash, "
        "started_at = excluded.started_at, seen_at = excluded.seen_at",
        (replica, rules_hash, started_at, now),
    )
    conn.execute("DELETE FROM replicas WHERE seen_at < ?", (prune_before,))
    return live_replicas(conn, live_after=live_after)


def live_replicas(conn: sqlite3.Connection, *, live_after: int) -> list[Replica]:
    rows = conn.execute(
        "SELECT id, rules_hash, started_at, seen_at FROM replicas WHERE seen_at >= ? ORDER BY id",
        (live_after,),
    ).fetchall()
    return [Replica(r[0], r[1], r[2], r[3]) for r in rows]


def leave(conn: sqlite3.Connection, *, replica: str) -> None:
    """A clean stop: the replica's row goes, so the others stop counting it at once."""
    conn.execute("DELETE FROM replicas WHERE id = ?", (replica,))


def shared_secret(conn: sqlite3.Connection, *, name: str, candidate: str, now: int) -> str:
    """The value every replica uses for ``name``: ``candidate`` if this call is the first to
    ask, else the one the first kept (never replaced)."""
    conn.execute(
        "INSERT OR IGNORE INTO shared_secrets (name, value, created_at) VALUES (?, ?, ?)",
        (name, candidate, now),
    )
    row = conn.execute("SELECT value FROM shared_secrets WHERE name = ?", (name,)).fetchone()
    assert row is not None
    return str(row[0])
