"""A psycopg connection as the store's SQL functions use a connection: ``execute`` and
``executemany`` with the shared dialect's statements (``dialect.translate``), rows as tuples,
``rowcount``. Values come back as SQLite gives them: an integral ``numeric`` (PostgreSQL's sum of
BIGINTs) as an int, any other as a float; a Python bool is bound as an integer (the schema's
flags are integers, as in SQLite)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

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

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        if is_transaction_control(sql):
            return _Empty()
        text, order = translate(sql)
        cur = self.raw.execute(text, _arguments(args, order))
        if cur.rowcount > 0 and _changes(sql):
            self.total_changes += cur.rowcount
        return cur

    def together(self) -> contextlib.AbstractContextManager[Any]:
        """``incidents.together``: one pipeline; rowcounts and errors come at its end."""
        return self.raw.pipeline()

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        text, order = translate(sql)
        cur = self.raw.cursor()
        cur.executemany(text, [_arguments(r, order) for r in rows])
        if cur.rowcount > 0:
            self.total_changes += cur.rowcount
        return cur


def _changes(sql: str) -> bool:
    return sql.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE")
