"""What the store's tests share: the `store` fixture on both backends, and a store with one
incident opened. A look at the database beside the store (its own connection, as another
process would) is ``tests.conftest.rows`` / ``execute``, on either backend."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from bridge.store.migrations import MIGRATIONS, migrate
from tests.conftest import fixture_body
from tests.store.test_store import ingest


async def opened(store: Any) -> int:
    """The incident the bearer fixture's firing group opens (its id)."""
    result = await ingest(store, fixture_body("firing-group-bearer.json"))
    return result.incidents[0].id


@pytest.fixture
def store(any_store: Any) -> Any:
    """The store's tests run on both backends (``tests/conftest.any_store``)."""
    return any_store


class Databases:
    """Databases of the test's backend migrated up to a migration (all of them by default),
    each behind one connection in autocommit mode through which a test writes as the store's
    SQL functions do (a sqlite3 connection, or a ``PgConnection``)."""

    def __init__(self, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.backend = backend
        self._tmp = tmp_path
        self._request = request
        self._open: list[Any] = []

    def new(self, upto: str | None = None) -> Any:
        """A new database with the migrations before ``upto`` (``"0011"``: up to 0010)."""
        if self.backend == "sqlite":
            conn = sqlite3.connect(self._tmp / f"db{len(self._open)}.db", isolation_level=None)
            self._open.append(conn)
            migrate(sqlite_utils.Database(conn), _before(MIGRATIONS, upto))
            return conn
        import psycopg

        from bridge.store.postgres import schema
        from bridge.store.postgres.connection import PgConnection, configure

        url = self._request.getfixturevalue("pg_cluster").new_database()
        raw = psycopg.connect(url, autocommit=True)
        self._open.append(raw)
        configure(raw)
        schema.migrate(raw, _before(schema.MIGRATIONS, upto))
        return PgConnection(raw)

    def upgrade(self, conn: Any) -> list[str]:
        """The missing migrations applied, as a store opening the database does; their names."""
        if self.backend == "sqlite":
            return migrate(sqlite_utils.Database(conn))
        from bridge.store.postgres import schema

        return schema.migrate(conn.raw)

    def close(self) -> None:
        for conn in self._open:
            conn.close()


def _before(steps: list[Any], upto: str | None) -> list[Any]:
    return list(steps) if upto is None else [m for m in steps if m[0] < upto]


@pytest.fixture
def databases(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Databases]:
    """Migrated databases on each backend (``Databases``), closed after the test."""
    dbs = Databases(backend, tmp_path, request)
    yield dbs
    dbs.close()
