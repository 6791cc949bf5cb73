"""The incident row: its columns, reading one into a core ``Incident``, writing one back, and
the timeline and outbox rows every writer of an incident change adds (``ingest``, ``changes``,
``postmortem``). Ids are the next past the largest: the writer thread is the only writer."""

from __future__ import annotations

import contextlib
import operator
import sqlite3
from collections.abc import Sequence
from typing import Any

from bridge.core.incidents import Incident

INCIDENT_FIELDS = (
    "id",
    "key",
    "title",
    "severity",
    "status",
    "started_at",
    "opened_at",
    "route",
    "team",
    "service",
    "acknowledged_at",
    "mitigated_at",
    "resolved_at",
    "closed_at",
    "truncated_alerts",
    "previous_id",
    "roles",
    "people",
    "tiers",
    "receiver",
    "drill",
)
INCIDENT_COLUMNS = ", ".join(INCIDENT_FIELDS)
UPSERT_INCIDENT = (
    f"INSERT INTO incidents ({INCIDENT_COLUMNS}, updated_at) "
    f"VALUES ({', '.join('?' * (len(INCIDENT_FIELDS) + 1))}) ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{f} = excluded.{f}" for f in (*INCIDENT_FIELDS[1:], "updated_at"))
)
INSERT_EVENT = (
    "INSERT INTO timeline (id, incident_id, time, kind, actor, text, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
INSERT_OUTBOX = (
    "INSERT INTO outbox (incident_id, target, tier, event, event_id, idempotency_key, state, "
    "attempts, next_attempt_at, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT(idempotency_key) DO NOTHING"
)


def incident_from_row(row: Sequence[Any]) -> Incident:
    """The incident of a row selected as ``INCIDENT_COLUMNS``."""
    values = dict(zip(INCIDENT_FIELDS, row, strict=True))
    values["truncated_alerts"] = values["truncated_alerts"] or 0
    values["roles"] = values["roles"] or "{}"
    values["people"] = values["people"] or "{}"
    values["tiers"] = values["tiers"] or "{}"
    values["drill"] = int(values["drill"] or 0)
    return Incident(**values)


# The row's values in ``INCIDENT_FIELDS`` order (``UPSERT_INCIDENT`` adds updated_at).
incident_values = operator.attrgetter(*INCIDENT_FIELDS)


def next_id(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0])


def next_ids(conn: sqlite3.Connection, *tables: str) -> tuple[int, ...]:
    """``next_id`` of each table, in one statement (on PostgreSQL one round trip, not one per
    table, on the webhook's path)."""
    parts = ", ".join(f"(SELECT coalesce(max(id), 0) + 1 FROM {t})" for t in tables)
    return tuple(int(v) for v in conn.execute(f"SELECT {parts}").fetchone())


def together(conn: sqlite3.Connection) -> contextlib.AbstractContextManager[Any]:
    """Statements whose results nobody reads sent together: on PostgreSQL one pipeline (one
    round trip, errors raised at its end), on SQLite nothing to do (no server to wait for)."""
    batch = getattr(conn, "together", None)
    return batch() if batch is not None else contextlib.nullcontext()


def insert_rows(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """``executemany`` of an INSERT: on PostgreSQL one statement for all the rows (or one per
    round of an upsert's repeated keys), on SQLite ``executemany`` (no server to send them)."""
    many = getattr(conn, "insert_rows", None)
    if many is not None:
        many(sql, rows)
    else:
        conn.executemany(sql, rows)
