"""What the store's tests share: a look at the database file beside the store (its own
connection, as another process would), and a store with one incident opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bridge.store import Store
from tests.conftest import fixture_body
from tests.store.test_store import ingest


def query(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` read through a connection of its own (closed after)."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute(sql, args).fetchall())
    finally:
        conn.close()


async def opened(store: Store) -> int:
    """The incident the bearer fixture's firing group opens (its id)."""
    result = await ingest(store, fixture_body("firing-group-bearer.json"))
    return result.incidents[0].id


@pytest.fixture
def store(any_store: Any) -> Any:
    """The store's tests run on both backends (``tests/conftest.any_store``)."""
    return any_store
