"""The web pages' sessions (docs/web.md): a row per sign-in, so that a session ends on the
server. The signed cookie names its session; a session is good while its row says it has not
ended nor expired, which holds across restarts and for every process sharing the database.

A row keeps the SHA-256 of the session's id (never the id: the database alone does not give a
cookie), the person's name and scope, the fingerprint of the token signed in with (a reload that
removes the token ends its sessions), and when it started, expires and ended, and why.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection

from bridge.core.values import immutable

# Ended and expired rows are kept a day (what a sign-out was is still there to look at), then
# deleted at a later sign-in: the table stays as small as the sessions of a day.
KEEP_NS = 86400 * 10**9


def create_table(conn: sqlite3.Connection) -> None:
    """Migration 0013_sessions."""
    conn.execute(
        "CREATE TABLE web_sessions ("
        " id TEXT PRIMARY KEY,"  # hex SHA-256 of the session id the cookie carries
        " name TEXT NOT NULL,"
        " scope TEXT NOT NULL,"
        " fingerprint TEXT NOT NULL,"
        " created_at INTEGER NOT NULL,"
        " expires_at INTEGER NOT NULL,"
        " ended_at INTEGER,"
        " ended_why TEXT"
        ") WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX web_sessions_fingerprint ON web_sessions (fingerprint)")


@immutable
class NewSession:
    """A sign-in: the hash of the session's id, who, with which token's fingerprint, when,
    until when, and the hash of the browser's session before (``replaces``)."""

    id_hash: str
    name: str
    scope: str
    fingerprint: str
    now: int
    expires_at: int
    replaces: str | None = None


def start_session(conn: sqlite3.Connection, new: NewSession) -> None:
    """A new session; the one it replaces ends with it, so that signing in again leaves no copy
    of the old cookie working."""
    now = new.now
    if new.replaces is not None:
        end_session(conn, id_hash=new.replaces, now=now, why="signed in again")
    conn.execute("DELETE FROM web_sessions WHERE expires_at < ?", (now - KEEP_NS,))
    conn.execute(
        "INSERT INTO web_sessions (id, name, scope, fingerprint, created_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (new.id_hash, new.name, new.scope, new.fingerprint, now, new.expires_at),
    )


def session_is_live(conn: sqlite3.Connection, *, id_hash: str, now: int) -> bool:
    row = conn.execute(
        "SELECT 1 FROM web_sessions WHERE id = ? AND ended_at IS NULL AND expires_at > ?",
        (id_hash, now),
    ).fetchone()
    return row is not None


def end_session(conn: sqlite3.Connection, *, id_hash: str, now: int, why: str) -> bool:
    """End one session (a sign-out); False when it had already ended or never was."""
    cur = conn.execute(
        "UPDATE web_sessions SET ended_at = ?, ended_why = ? WHERE id = ? AND ended_at IS NULL",
        (now, why, id_hash),
    )
    return cur.rowcount > 0


def end_sessions_of(
    conn: sqlite3.Connection, *, fingerprints: Collection[str], now: int, why: str
) -> int:
    """End every live session made with one of these tokens (removed or changed); how many."""
    ended = 0
    for fingerprint in fingerprints:
        cur = conn.execute(
            "UPDATE web_sessions SET ended_at = ?, ended_why = ? "
            "WHERE fingerprint = ? AND ended_at IS NULL",
            (now, why, fingerprint),
        )
        ended += cur.rowcount
    return ended
