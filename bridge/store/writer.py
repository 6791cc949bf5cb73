"""One writer thread with group commit.

Every write is a function of a sqlite3 connection. The thread takes whatever is queued, runs it
all in one transaction, commits once, and only then resolves the callers' futures: a request is
answered after the commit that holds its rows, and concurrent requests share one commit (and one
fsync). Writes of the same batchable kind (webhooks) that are queued together are handed over in
one call, so they can share their SQLite statements too.

If any write of a batch fails, the transaction is rolled back and the batch runs again with one
savepoint per write, so that only the failing write is lost. Writes are deterministic functions
of the database state, so running them again gives the same result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from bridge.core.values import immutable
from bridge.store.errors import StoreUnavailable

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
log = logging.getLogger("bridge.store")
__all__ = ["Batched", "StoreUnavailable", "Writer", "is_fault"]

_STOP = object()
MAX_BATCH = 512


def is_fault(exc: sqlite3.DatabaseError) -> bool:
    """A damaged database ("malformed", "not a database"), as opposed to a passing condition
    such as a lock, a full disk or a read-only file (``OperationalError``)."""
    return not isinstance(exc, sqlite3.OperationalError)


@immutable
class Batched(Generic[I, T]):
    """One item for a function that writes many items at once and returns one result each."""

    many: Callable[[sqlite3.Connection, Sequence[I]], list[T]]
    item: I


Job = Callable[[sqlite3.Connection], Any] | Batched[Any, Any]
Entry = tuple[Job, "asyncio.Future[Any]", asyncio.AbstractEventLoop]
Result = tuple[bool, Any]


class Writer:
    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.fault: str | None = None  # a damaged database seen by a write

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def submit(self, job: Callable[[sqlite3.Connection], T] | Batched[Any, T]) -> asyncio.Future[T]:
        """Run ``job`` in the writer's transaction; the future gets its result after the commit.

        A plain function returning the future, not a coroutine: every webhook awaits it, and each
        coroutine layer between the request and the future is resumed again when it completes."""
        if self._closed:
            raise StoreUnavailable("store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((job, future, loop))
        return future

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
                batch, stop = self.next_batch()
                if batch:
                    self._run_batch(conn, batch)
        finally:
            conn.close()

    def next_batch(self) -> tuple[list[Entry], bool]:
        """What is queued (waiting for one entry), up to MAX_BATCH; and whether to stop after."""
        batch = [self._queue.get()]
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if any(entry is _STOP for entry in batch):
            return [entry for entry in batch if entry is not _STOP], True
        return batch, False

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Entry]) -> None:
        results = self._attempt(conn, batch, isolate=False)
        if results is None:
            results = self._attempt(conn, batch, isolate=True)
        assert results is not None
        resolve(batch, results)

    def _attempt(
        self, conn: sqlite3.Connection, batch: list[Entry], *, isolate: bool
    ) -> list[Result] | None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            log.error("store: cannot begin a transaction: %s", exc)
            return [(False, StoreUnavailable(str(exc)))] * len(batch)
        results: list[Result] = []
        groups = [[entry[0]] for entry in batch] if isolate else group([e[0] for e in batch])
        for jobs in groups:
            if isolate:
                conn.execute("SAVEPOINT w")
            try:
                results.extend((True, r) for r in run_jobs(conn, jobs))
            except Exception as exc:
                if not isolate:
                    conn.execute("ROLLBACK")
                    return None
                conn.execute("ROLLBACK TO w")
                if isinstance(exc, sqlite3.DatabaseError):
                    if is_fault(exc):
                        self.fault = str(exc)
                    exc = StoreUnavailable(str(exc))
                results.append((False, exc))
            if isolate:
                conn.execute("RELEASE w")
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("store: commit failed: %s", exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return [(False, StoreUnavailable(str(exc)))] * len(batch)
        return results


def group(jobs: list[Job]) -> list[list[Job]]:
    """Runs of consecutive batched jobs with the same function; plain jobs stand alone."""
    groups: list[list[Job]] = []
    for job in jobs:
        last = groups[-1][-1] if groups else None
        if isinstance(job, Batched) and isinstance(last, Batched) and last.many is job.many:
            groups[-1].append(job)
        else:
            groups.append([job])
    return groups


def run_jobs(conn: sqlite3.Connection, jobs: list[Job]) -> list[Any]:
    first = jobs[0]
    if isinstance(first, Batched):
        items = [job.item for job in jobs if isinstance(job, Batched)]
        results = first.many(conn, items)
        if len(results) != len(items):
            raise RuntimeError("a batched write returned the wrong number of results")
        return results
    return [first(conn)]


def resolve(batch: list[Entry], results: list[Result]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]] = {}
    for (_job, future, loop), (ok, value) in zip(batch, results, strict=True):
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
