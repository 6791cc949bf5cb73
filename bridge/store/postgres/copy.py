"""``incident-bridge db copy FROM TO``: a SQLite store moved into an empty PostgreSQL database.

What is copied, and how:

- The source is read through a read-only connection in ONE read transaction, so the copy is
  the snapshot of the last commit before it began. The copy refuses a file a service holds
  (its ``<db>.lock``): what the service would write after the snapshot would never reach
  PostgreSQL. For as long as the copy runs it holds a shared lock on that file, so that a
  service cannot start on it meanwhile. The file must be at exactly the schema this version
  knows (every migration applied, none unknown).
- The target must be an empty database, or one holding only incident-bridge's schema and no
  rows (a service started once on it). A table that is not incident-bridge's, or a row in one
  of its tables, is refused before anything is changed. Missing migrations are applied first
  (each in its own transaction, as at a service's start: an empty schema is left behind by a
  copy that then fails, and the next copy takes it).
- Every table but SQLite's full-text tables is copied with its rows as they are (ids,
  timestamps, JSON texts), in foreign-key order, by ``COPY ... FROM STDIN``, inside ONE
  transaction that also holds the store's write lock (``pg_advisory_xact_lock``): a failure
  leaves no row behind, and a service started on the target meanwhile waits for it. Values are
  converted to the column's type (an integral REAL into a BIGINT, a BLOB of UTF-8 into TEXT, a
  TEXT into BYTEA) or the copy fails naming the table, column and row number (never the value).
- The triggers that keep aggregates (alert counts per incident, the MTTx tables) are disabled
  for the copy (``ALTER TABLE ... DISABLE TRIGGER USER``, which the tables' owner may do; no
  superuser) and the aggregate tables are copied as SQLite kept them; they are enabled again
  before the commit. Foreign keys stay checked.
- Full-text search: SQLite's ``search`` (FTS5) is copied as documents (its rowid is their id,
  which ``search_docs`` names), so a search finds the same incidents at once, postmortems
  included, without re-indexing; PostgreSQL's ``tsvector`` is generated from the text.
  ``similar_terms`` (contentless on SQLite: no text to copy) is derived again from the copied
  incidents and alerts (``search.rebuild_similar_terms``). The search watermarks are copied:
  the indexer carries on where SQLite's stopped, and announces nothing twice.
- The identity sequences (``outbox``, ``postmortem_publications``, ``search``) are set past the
  largest id, and the rows of every table are counted on both sides before the commit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import psycopg

from bridge.core.dburl import DatabaseUrl
from bridge.core.secrets import Secret
from bridge.store import search as search_sql
from bridge.store.errors import BackupError, DestinationExists
from bridge.store.migrations import MIGRATIONS
from bridge.store.postgres import PgStore, schema
from bridge.store.postgres.connection import PgConnection

__all__ = ["CopyResult", "copy_sqlite_to_postgres"]

# SQLite's full-text tables: ``search`` is copied as documents, ``similar_terms`` derived again.
FTS_DOCUMENTS = "search"
FTS_DERIVED = "similar_terms"
# Tables whose rows an empty schema already has (the migrations put them there): replaced by
# the source's, and not taken as the sign of a target in use.
SEEDED = ("search_marks", "metric_gauges")


class CopyRefused(DestinationExists):
    """The target is not an empty database (exit 2, nothing changed)."""


@dataclass(frozen=True)
class CopyResult:
    source: Path
    target: str  # the URL, masked
    counts: dict[str, int]  # rows per table, in the order they were copied
    derived: int  # similar_terms rows derived again
    migrations: list[str]  # the schema both sides have
    seconds: float


# --- the source -------------------------------------------------------------------------------


@contextlib.contextmanager
def _not_served(path: Path) -> Iterator[None]:
    """A shared lock on the service's ``<db>.lock`` for the copy's time: refused while a service
    holds it; a service starting meanwhile is refused by it."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        yield  # no service ever ran on it here
        return
    except OSError as exc:
        raise BackupError(f"cannot open {lock}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(
                f"{path} is in use by a running service ({lock} is locked); stop it first: "
                "what it writes after the copy began would not be in PostgreSQL"
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _open_source(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise BackupError(f"no database at {path}")
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("BEGIN")  # one read transaction: every table from the same snapshot
        names = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"cannot read {path} as a SQLite database: {exc}") from None
    if ("_migrations",) not in names:
        conn.close()
        raise BackupError(f"{path} is not an incident-bridge database (no _migrations table)")
    return conn


def _source_schema(conn: sqlite3.Connection, path: Path) -> list[str]:
    applied = [name for (name,) in conn.execute("SELECT name FROM _migrations ORDER BY name")]
    known = [name for name, _ in MIGRATIONS]
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise BackupError(
            f"{path} has migrations this version does not know ({', '.join(unknown)}): it was "
            "written by a newer incident-bridge; copy it with that version"
        )
    pending = [name for name in known if name not in applied]
    if pending:
        raise BackupError(
            f"{path} lacks migrations ({', '.join(pending)}): start this version of "
            "incident-bridge on it once (it migrates at start), stop it, then copy"
        )
    return known


def _source_tables(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """The source's tables and their columns, without FTS5's own shadow tables."""
    rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    virtual = [name for name, sql in rows if str(sql or "").upper().startswith("CREATE VIRTUAL")]
    shadows = {f"{v}_{s}" for v in virtual for s in ("data", "idx", "content", "docsize", "config")}
    out: dict[str, list[str]] = {}
    for name, _ in rows:
        if name in shadows or name.startswith("sqlite_"):
            continue
        out[name] = [str(r[1]) for r in conn.execute(f'PRAGMA table_info("{name}")')]
    return out


# --- the target -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    name: str
    type: str  # pg_type's name: int8, text, float8, bytea, ...


def _target_columns(raw: psycopg.Connection[Any], table: str) -> list[_Column]:
    """The columns a row is written with (generated ones are PostgreSQL's to compute)."""
    rows = raw.execute(
        "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
        "AND a.attgenerated = '' ORDER BY a.attnum",
        (table,),
    ).fetchall()
    return [_Column(str(n), str(t)) for n, t in rows]


def _created(raw: psycopg.Connection[Any]) -> list[str]:
    """The schema's tables in the order they were made (the migrations': incidents first)."""
    return [
        str(r[0])
        for r in raw.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = current_schema() ORDER BY c.oid"
        )
    ]


def _copy_order(raw: psycopg.Connection[Any], tables: list[str]) -> list[str]:
    """``tables`` with every table after those its foreign keys name (ties in the order the
    migrations made them: incidents first)."""
    rank = {t: i for i, t in enumerate(_created(raw))}
    refs = raw.execute(
        "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c "
        "JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE c.contype = 'f' AND n.nspname = current_schema()"
    ).fetchall()
    needs: dict[str, set[str]] = {t: set() for t in tables}
    for child, parent in refs:
        if child in needs and parent in needs and child != parent:
            needs[child].add(parent)
    order: list[str] = []
    while needs:
        ready = [t for t, parents in needs.items() if not parents - set(order)]
        if not ready:  # a cycle across tables: the schema has none
            ready = list(needs)
        ready.sort(key=lambda t: (rank.get(t, len(rank)), t))
        for t in ready:
            order.append(t)
            del needs[t]
    return order


def _count(raw: psycopg.Connection[Any], table: str) -> int:
    row = raw.execute(f'SELECT count(*) FROM "{table}"').fetchone()
    return int(row[0]) if row else 0


def _in_use(raw: psycopg.Connection[Any], tables: list[str]) -> list[str]:
    """The tables that hold rows a service wrote (the migrations' own rows aside)."""
    wanted = set(tables)
    return [
        t
        for t in _created(raw)
        if t in wanted and t not in SEEDED and t != schema.MIGRATIONS_TABLE and _count(raw, t)
    ]


def _check_target(
    raw: psycopg.Connection[Any], masked: str, expected: set[str], known: list[str]
) -> None:
    """Refuses (``CopyRefused``, the target unchanged) anything but an empty database or an
    empty incident-bridge schema."""
    tables = schema.user_tables(raw)
    if not tables:
        return
    foreign = [t for t in tables if t not in expected]
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise CopyRefused(
            f"{masked} is not empty: it has tables that are not incident-bridge's ({shown}); "
            "give an empty database"
        )
    if schema.MIGRATIONS_TABLE not in tables:
        raise CopyRefused(
            f"{masked} has some of incident-bridge's tables but no {schema.MIGRATIONS_TABLE} "
            "table; give an empty database"
        )
    applied = [str(r[0]) for r in raw.execute(f"SELECT name FROM {schema.MIGRATIONS_TABLE}")]
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise CopyRefused(
            f"{masked} was migrated by a newer incident-bridge ({', '.join(unknown)}); give an "
            "empty database"
        )
    used = _in_use(raw, list(expected))
    if used:
        raise CopyRefused(
            f"{masked} is not empty: {', '.join(used[:5])} hold rows; the copy goes only into "
            "an empty database (nothing was changed)"
        )


# --- values -----------------------------------------------------------------------------------


class _Unconvertible(Exception):
    pass


def _to_int(value: Any) -> Any:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _Unconvertible(f"a {type(value).__name__} where an integer belongs")


def _to_float(value: Any) -> Any:
    if value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return float(value)
    raise _Unconvertible(f"a {type(value).__name__} where a number belongs")


def _to_text(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise _Unconvertible("bytes that are not UTF-8 where text belongs") from None
    elif isinstance(value, int | float):
        value = str(value)
    if isinstance(value, str) and "\x00" in value:
        raise _Unconvertible("a NUL character, which PostgreSQL's text cannot hold")
    return value


def _to_bytes(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8")
    if value is None or isinstance(value, bytes):
        return value
    raise _Unconvertible(f"a {type(value).__name__} where bytes belong")


CONVERT: dict[str, Callable[[Any], Any]] = {
    "int8": _to_int,
    "int4": _to_int,
    "int2": _to_int,
    "float8": _to_float,
    "float4": _to_float,
    "text": _to_text,
    "varchar": _to_text,
    "bytea": _to_bytes,
}


# --- the copy ---------------------------------------------------------------------------------


def _copy_table(
    src: sqlite3.Connection,
    raw: psycopg.Connection[Any],
    table: str,
    columns: list[_Column],
    source_columns: list[str],
) -> int:
    """The table's rows, source to target, by COPY; how many."""
    selected = [
        "rowid" if table == FTS_DOCUMENTS and c.name == "id" else f'"{c.name}"' for c in columns
    ]
    missing = [
        c.name
        for c, s in zip(columns, selected, strict=True)
        if s != "rowid" and c.name not in source_columns
    ]
    if missing:
        raise BackupError(
            f"the source's table {table} has no column {', '.join(missing)}: its schema is not "
            "this version's"
        )
    dropped = [s for s in source_columns if s not in {c.name for c in columns}]
    if dropped:
        raise BackupError(
            f"the target's table {table} has no column {', '.join(dropped)}: its schema is not "
            "this version's"
        )
    unknown = [c.name for c in columns if c.type not in CONVERT]
    if unknown:
        raise BackupError(f"cannot copy {table}.{unknown[0]}: a column type the copy does not know")
    converters = [CONVERT[c.type] for c in columns]
    names = ", ".join(f'"{c.name}"' for c in columns)
    cursor = src.execute(f'SELECT {", ".join(selected)} FROM "{table}"')
    n = 0
    with raw.cursor() as cur, cur.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
        copy.set_types([c.type for c in columns])
        # Row by row from SQLite's cursor (it steps lazily): a journal of webhook bodies of up
        # to 8 MiB each is never held in memory at once; psycopg's COPY buffer is bounded too.
        for row in cursor:
            n += 1
            try:
                copy.write_row([f(v) for f, v in zip(converters, row, strict=True)])
            except _Unconvertible as exc:
                column = next(
                    c.name for c, f, v in zip(columns, converters, row, strict=True) if _fails(f, v)
                )
                raise BackupError(f"cannot copy {table}.{column}, row {n}: {exc}") from None
    return n


def _fails(convert: Callable[[Any], Any], value: Any) -> bool:
    try:
        convert(value)
    except _Unconvertible:
        return True
    return False


def _triggered(raw: psycopg.Connection[Any]) -> list[str]:
    """The tables with triggers of the schema's own (the aggregates')."""
    rows = raw.execute(
        "SELECT DISTINCT c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE NOT g.tgisinternal AND n.nspname = current_schema() ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


def _identities(raw: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    rows = raw.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY 1"
    ).fetchall()
    return [(str(t), str(c)) for t, c in rows]


def _source_count(src: sqlite3.Connection, table: str) -> int:
    return int(src.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])


def copy_sqlite_to_postgres(
    source: Path,
    url: DatabaseUrl,
    password: Secret | None = None,
    *,
    connect_timeout_s: float = 10.0,
) -> CopyResult:
    """Copy the SQLite store at ``source`` into the empty PostgreSQL database at ``url``; see
    the module. ``CopyRefused`` for a target in use; ``BackupError`` for every other reason
    (no row is left in the target either way)."""
    started = time.monotonic()
    with _not_served(source):
        src = _open_source(source)
        try:
            known = _source_schema(src, source)
            tables = _source_tables(src)
            target = PgStore(url, password=password, connect_timeout_s=connect_timeout_s)
            try:
                raw = target.connect()
            except psycopg.Error as exc:
                raise BackupError(
                    f"cannot connect to PostgreSQL at {url.masked}: {_reason(exc)}"
                ) from None
            try:
                counts, derived = _copy(src, raw, url.masked, tables, known)
            except psycopg.Error as exc:
                raise BackupError(
                    f"the copy into {url.masked} failed, nothing was copied: {_reason(exc)}"
                ) from None
            finally:
                raw.close()
        finally:
            src.close()
    return CopyResult(source, url.masked, counts, derived, known, time.monotonic() - started)


def _reason(exc: psycopg.Error) -> str:
    """PostgreSQL's one-line message: never its DETAIL or CONTEXT, which quote the row (a
    copied value could be a secret a target kept)."""
    primary = exc.diag.message_primary if exc.diag is not None else None
    lines = str(primary or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _copy(
    src: sqlite3.Connection,
    raw: psycopg.Connection[Any],
    masked: str,
    tables: dict[str, list[str]],
    known: list[str],
) -> tuple[dict[str, int], int]:
    expected = set(tables)
    _check_target(raw, masked, expected, known)
    schema.migrate(raw)
    present = set(schema.user_tables(raw))
    if present != expected:
        raise BackupError(
            f"the schema made in {masked} differs from the source's (only in PostgreSQL: "
            f"{sorted(present - expected)}, only in SQLite: {sorted(expected - present)})"
        )
    copied = [t for t in sorted(present) if t not in (schema.MIGRATIONS_TABLE, FTS_DERIVED)]
    order = _copy_order(raw, copied)
    counts: dict[str, int] = {}
    with raw.transaction():
        raw.execute("SET LOCAL statement_timeout = 0")  # the copy takes as long as it takes
        # A service on the target waits behind this transaction, as behind any write.
        raw.execute("SELECT pg_advisory_xact_lock(%s)", (schema.WRITE_LOCK,))
        used = _in_use(raw, order)
        if used:
            raise CopyRefused(f"{masked} is not empty: {', '.join(used[:5])} hold rows")
        triggered = _triggered(raw)
        for table in triggered:
            raw.execute(f'ALTER TABLE "{table}" DISABLE TRIGGER USER')
        for table in SEEDED:
            raw.execute(f'DELETE FROM "{table}"')
        for table in order:
            counts[table] = _copy_table(src, raw, table, _target_columns(raw, table), tables[table])
        conn = PgConnection(raw)
        derived = search_sql.rebuild_similar_terms(cast(sqlite3.Connection, conn))
        for table, column in _identities(raw):
            raw.execute(
                "SELECT setval(pg_get_serial_sequence(%s, %s), "
                f'(SELECT coalesce(max("{column}"), 0) + 1 FROM "{table}"), false)',
                (table, column),
            )
        for table in order:
            want, got = _source_count(src, table), _count(raw, table)
            if want != counts[table] or got != want:
                raise BackupError(
                    f"{table}: {want} rows in the source, {got} in the target; nothing was copied"
                )
        want = _source_count(src, FTS_DERIVED)
        if derived != want:
            raise BackupError(
                f"{FTS_DERIVED}: {want} incidents indexed in the source, {derived} derived again; "
                "nothing was copied"
            )
        for table in triggered:
            raw.execute(f'ALTER TABLE "{table}" ENABLE TRIGGER USER')
    raw.execute("ANALYZE")  # the planner's statistics for the tables just filled
    return counts, derived
