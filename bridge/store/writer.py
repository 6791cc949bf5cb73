"""One writer thread with group commit.

Every write is a function of a sqlite3 connection. The thread takes whatever is queued, runs each
function in its own SAVEPOINT inside one transaction, commits once, and only then resolves the
callers' futures: a request is answered after the commit that holds its rows, and concurrent
requests share one commit (and one fsync). A failing function rolls back only its own savepoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("bridge.store")

_STOP = object()
MAX_BATCH = 256


class StoreUnavailable(Exception):
    """The database cannot take writes now (locked, full, read-only, closed)."""


class Writer:
    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    async def submit(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the writer's transaction; return its result after the commit."""
        if self._closed:
            raise StoreUnavailable("store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, future, loop))
        return await future

    def close(self) -> None:
        """Finish everything queued, commit it, and stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            stop = False
            while not stop:
                batch = [self._queue.get()]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if any(item is _STOP for item in batch):
                    stop = True
                    batch = [item for item in batch if item is not _STOP]
                if batch:
                    self._run_batch(conn, batch)
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            log.error("store: cannot begin a transaction: %s", exc)
            self._resolve(batch, [(False, StoreUnavailable(str(exc)))] * len(batch))
            return
        for fn, _future, _loop in batch:
            conn.execute("SAVEPOINT w")
            try:
                outcomes.append((True, fn(conn)))
                conn.execute("RELEASE w")
            except Exception as exc:
                conn.execute("ROLLBACK TO w")
                conn.execute("RELEASE w")
                if isinstance(exc, sqlite3.OperationalError):
                    exc = StoreUnavailable(str(exc))
                outcomes.append((False, exc))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("store: commit failed: %s", exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            outcomes = [(False, StoreUnavailable(str(exc)))] * len(batch)
        self._resolve(batch, outcomes)

    @staticmethod
    def _resolve(batch: list[Any], outcomes: list[tuple[bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]] = {}
        for (_fn, future, loop), (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, ok, value))
        for loop, items in by_loop.items():
            # A closed loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, items)


def _settle(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in items:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
