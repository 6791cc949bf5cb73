"""The SQLite store: one writer thread (group commit), a small pool of read-only readers."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlite_utils

from bridge.store.migrations import migrate
from bridge.store.writer import Batched, StoreUnavailable, Writer

__all__ = ["Batched", "Store", "StoreUnavailable"]

T = TypeVar("T")
Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


def _unchanged(value: T) -> T:
    return value


# The sqlite3 module binds int, float and str directly but sends None and bytes through its
# adapter lookup, which fails twice (raising and clearing AttributeError) before binding them
# as they are. A webhook binds about twenty such values (absent milestones, the raw body); an
# identity adapter finds them at once. Binding is unchanged: None is NULL, bytes a BLOB.
sqlite3.register_adapter(type(None), _unchanged)
sqlite3.register_adapter(bytes, _unchanged)


class Store:
    """Owns the database file. Writes go through ``write``; reads through ``read``."""

    def __init__(self, path: Path | str, *, synchronous: Synchronous = "FULL") -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self._writer: Writer | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=5.0
        )
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 5000")
        return conn

    def open(self) -> list[str]:
        """Create the file if needed, run migrations, start the writer. Returns migrations run."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            applied = migrate(sqlite_utils.Database(conn))
        finally:
            conn.close()
        self._writer = Writer(self._connect)
        self._writer.start()
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="store-reader")
        return applied

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def write(self, job: Callable[[sqlite3.Connection], T] | Batched[Any, T]) -> Awaitable[T]:
        """Run a write in the writer thread; awaiting it gives the result after its commit."""
        if self._writer is None:
            raise StoreUnavailable("store is not open")
        return self._writer.submit(job)

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 5000")
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise StoreUnavailable("store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._readers, lambda: fn(self._reader()))
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def close(self) -> None:
        """Finish queued writes (they commit), then close every connection."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
