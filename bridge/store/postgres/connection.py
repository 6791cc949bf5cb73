"""A psycopg connection as the store's SQL functions use a connection: ``execute`` and
``executemany`` with the shared dialect's statements (``dialect.translate``), rows as tuples,
``rowcount``. Values come back as SQLite gives them: an integral ``numeric`` (PostgreSQL's sum of
BIGINTs) as an int, any other as a float; a Python bool is bound as an integer (the schema's
flags are integers, as in SQLite)."""

from __future__ import annotations

import contextlib
import functools
import re
import weakref
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import psycopg
from psycopg.adapt import AdaptersMap, Loader
from psycopg.types.numeric import IntDumper

from bridge.store.postgres.dialect import is_transaction_control, translate
from bridge.store.postgres.fts import PG_FTS


class _NumericLoader(Loader):
    def load(self, data: Any) -> int | float:
        text = bytes(data).decode("ascii")
        if "." in text or "e" in text or "E" in text or text in ("NaN", "Infinity", "-Infinity"):
            value = Decimal(text)
            return int(value) if value == value.to_integral_value() else float(value)
        return int(text)


class _BoolAsInt(IntDumper):
    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


ADAPTERS = AdaptersMap(psycopg.adapters)
ADAPTERS.register_loader("numeric", _NumericLoader)
ADAPTERS.register_dumper(bool, _BoolAsInt)


def configure(conn: psycopg.Connection[Any]) -> None:
    """The store's adaptations on a new connection (the pool's ``configure``)."""
    conn.adapters.register_loader("numeric", _NumericLoader)
    conn.adapters.register_dumper(bool, _BoolAsInt)


class _Empty:
    """The answer to a statement that was not sent (a read function's BEGIN or COMMIT)."""

    rowcount = -1
    description = None

    def fetchone(self) -> None:
        return None

    def fetchall(self) -> list[Any]:
        return []

    def __iter__(self) -> Iterator[Any]:
        return iter(())


class _NoRows(_Empty):
    """The answer to an ``executemany`` of no rows, as sqlite3's: nothing changed."""

    rowcount = 0


_NO_ROWS = _NoRows()


def _arguments(args: Sequence[Any], order: tuple[int, ...] | None) -> Sequence[Any]:
    return args if order is None else [args[i] for i in order]


class PgConnection:
    """What the SQL functions call on a connection, over one psycopg connection whose
    transaction the backend manages."""

    # the full-text engine store/search.py uses on this connection (search.engine)
    fts = PG_FTS

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        # rows inserted, updated or deleted through this object, as sqlite3's total_changes
        self.total_changes = 0
        self._together = False

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        if is_transaction_control(sql):
            return _Empty()
        text, order = translate(sql)
        cur = self.raw.execute(text, _arguments(args, order))
        if cur.rowcount > 0 and _changes(sql):
            self.total_changes += cur.rowcount
        return cur

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """``incidents.together``: one pipeline; rowcounts and errors come at its end. Inside
        another, the outer one's: psycopg syncs with the server when a nested pipeline ends,
        a round trip that the outer block is there to save."""
        if self._together:
            yield
            return
        self._together = True
        try:
            with self.raw.pipeline():
                yield
        finally:
            self._together = False

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        text, order = translate(sql)
        args = [_arguments(r, order) for r in rows]
        if not args:
            # nothing to send (psycopg would still sync a pipeline with the server: a round
            # trip for no rows, as for an incident change without outbox rows)
            return _NO_ROWS
        cur = self.raw.cursor()
        cur.executemany(text, args)
        if cur.rowcount > 0:
            self.total_changes += cur.rowcount
        return cur

    def insert_rows(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """``incidents.insert_rows``: ``executemany`` of an ``INSERT ... VALUES (?, ...)`` as one
        ``INSERT ... SELECT ... FROM unnest(...)`` (each column's values one array). A row
        costs the server and the client less than one Bind/Execute each (docs/performance.md).

        An upsert (``ON CONFLICT (...) DO UPDATE``) may not touch a row twice in one statement:
        rows are sent in rounds, the first row of each conflict key in the first, its second
        in the second..., so each key's rows apply in their order, as one at a time. A statement
        this does not read (expressions among the values, RETURNING) runs as ``executemany``."""
        shape = _insert_shape(sql)
        if shape is None or len(rows) < 2:
            self.executemany(sql, rows)
            return
        types = self._column_types(shape.table)
        arrays = ", ".join(f"?::{types[c]}[]" for c in shape.bound)
        statement = (
            f"{shape.head} SELECT {', '.join(shape.select)} FROM unnest({arrays}) "
            f"AS v ({', '.join(shape.bound)}) {shape.rest}"
        )
        text, _ = translate(statement)
        # The arrays in binary: psycopg's text form of an array quotes each value with a
        # regular expression, which cost more client time than the rows' Bind/Execute saved.
        text = text.replace("%s::", "%b::")
        for part in _rounds(rows, shape.key):
            columns = [[row[k] for row in part] for k in range(len(shape.bound))]
            cur = self.raw.execute(text, columns)
            if cur.rowcount > 0:  # in a pipeline not known yet, as for executemany
                self.total_changes += cur.rowcount

    def _column_types(self, table: str) -> dict[str, str]:
        known = _TYPES.setdefault(self.raw, {})
        if table not in known:
            rows = self.raw.execute(
                "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (table,),
            ).fetchall()
            known[table] = {str(name): str(kind) for name, kind in rows}
        return known[table]


# Per connection, its tables' column types (an array of unnest needs its type)
_TYPES: weakref.WeakKeyDictionary[psycopg.Connection[Any], dict[str, dict[str, str]]] = (
    weakref.WeakKeyDictionary()
)
_INSERT = re.compile(
    r"^\s*(?P<head>INSERT\s+(?:OR\s+IGNORE\s+)?INTO\s+(?P<table>\w+)\s*\((?P<columns>[^()]*)\))"
    r"\s*VALUES\s*\((?P<values>[^()]*)\)\s*(?P<rest>.*)$",
    re.I | re.S,
)
_LITERAL = re.compile(r"^(?:'[^']*'|-?\d+(?:\.\d+)?|NULL)$", re.I)
_UPSERT = re.compile(r"^ON\s+CONFLICT\s*\((?P<key>[^()]*)\)\s*DO\s+UPDATE\b", re.I)


class _Shape(NamedTuple):
    head: str  # INSERT [OR IGNORE] INTO table (columns)
    table: str
    bound: tuple[str, ...]  # the columns given by placeholders, in order
    select: tuple[str, ...]  # what the SELECT gives for each column
    rest: str  # ON CONFLICT ...
    key: tuple[int, ...] | None  # for an upsert, the conflict key's places among the bound


@functools.lru_cache(maxsize=256)
def _insert_shape(sql: str) -> _Shape | None:
    """An ``INSERT ... VALUES (...)`` whose values are placeholders and literals, read."""
    m = _INSERT.match(sql)
    if m is None or re.search(r"\bRETURNING\b", m["rest"], re.I):
        return None
    columns = [c.strip() for c in m["columns"].split(",")]
    values = [v.strip() for v in m["values"].split(",")]
    if len(columns) != len(values):
        return None
    bound: list[str] = []
    select: list[str] = []
    for column, value in zip(columns, values, strict=True):
        if value == "?":
            bound.append(column)
            select.append(f"v.{column}")
        elif _LITERAL.match(value):
            select.append(value)
        else:
            return None
    key = None
    upsert = _UPSERT.match(m["rest"].strip())
    if upsert is not None:
        names = [c.strip() for c in upsert["key"].split(",")]
        if any(n not in bound for n in names):
            return None
        key = tuple(bound.index(n) for n in names)
    return _Shape(m["head"], m["table"], tuple(bound), tuple(select), m["rest"].strip(), key)


def _rounds(rows: Sequence[Sequence[Any]], key: tuple[int, ...] | None) -> list[list[Any]]:
    """``rows`` in as few lists as may go in one statement each: without a conflict key to
    update, one; else the n-th row of each key in the n-th list."""
    if key is None:
        return [list(rows)]
    seen: dict[tuple[Any, ...], int] = {}
    out: list[list[Any]] = []
    for row in rows:
        k = tuple(row[i] for i in key)
        n = seen.get(k, 0)
        seen[k] = n + 1
        if n == len(out):
            out.append([])
        out[n].append(row)
    return out


def _changes(sql: str) -> bool:
    return sql.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE")
