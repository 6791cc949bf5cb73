"""The PostgreSQL store: the second backend of ``interface.StoreInterface``.

Its parts are SQLite's (``store/sqlite.py``): the same SQL functions of ``bridge/store/*.py``,
run with a ``PgConnection`` (``connection.py``) that speaks their shared dialect to PostgreSQL
(``dialect.py``). What differs is how a function reaches the database:

- Writes: one writer thread with group commit, as on SQLite (``PgWriter``). Each of its
  transactions (READ COMMITTED) first takes ``pg_advisory_xact_lock(WRITE_LOCK)``, so that write
  transactions run one after another, across processes too, exactly as SQLite's single writer
  does: an incident's state machine reads what the previous change committed, a reminder's key
  is claimed once, ids are the next past the largest. A connection found broken before anything
  was sent on it (the server restarted while the service was idle) is made again at once and the
  batch runs on the new one. A connection lost during a batch fails the batch
  (``StoreUnavailable``: webhooks get 503 and Alertmanager sends them again) and is made again,
  no sooner than a backoff that grows to ``RECONNECT_MAX_S``, or at once when a read has just
  reached the server.
- Reads: a ``psycopg_pool`` pool; each read function runs in one REPEATABLE READ READ ONLY
  transaction (one snapshot, as a read transaction on SQLite). More reads waiting than the pool
  can take soon are refused at once (``StoreUnavailable``), never queued without bound. The pool
  makes its connections when reads ask for them, so an unreachable server costs a read at most
  ``connect_timeout`` (``DOWN_WAIT_S`` once the server is known to be unreachable), and the
  first read after the server is back reconnects.
- Every statement is bounded by ``statement_timeout``; a timeout is ``StoreUnavailable``. When a
  batch of writes times out, its writes are tried one by one, but after the first of those that
  times out too, the others are refused without being tried: a batch waiting on a lock costs
  about two timeouts, not one per write.

The password never sits in the URL the service logs: it is given apart (``password``), or by
libpq's own files (PGPASSFILE, a service file); ``url.masked`` is what messages show.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar, cast

import psycopg
import psycopg_pool

from bridge.core.dburl import DatabaseUrl
from bridge.core.secrets import Secret
from bridge.store import sqlite
from bridge.store.errors import StoreError, StoreUnavailable
from bridge.store.ingest import CarefulMode
from bridge.store.postgres import schema
from bridge.store.postgres.connection import PgConnection, configure
from bridge.store.postgres.fts import require_utf8
from bridge.store.writer import Batched, Result, Writer, group, resolve, run_jobs

if TYPE_CHECKING:
    from bridge.store.interface import StoreInterface

__all__ = ["DatabaseUrl", "PgStore"]
log = logging.getLogger("bridge.store")
T = TypeVar("T")
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0
_BEGIN_LOCKED = f"BEGIN; SELECT pg_advisory_xact_lock({schema.WRITE_LOCK})"
# How long a read waits for a connection once the server is known to be unreachable: long
# enough for a connection to a server that is back, short enough that /-/ready answers within
# a probe's timeout (Kubernetes' default is 1 s) while it is down.
DOWN_WAIT_S = 0.5


def _said(exc: BaseException) -> str:
    """libpq's message on one line (it spreads a connection failure over several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _unavailable(exc: BaseException) -> StoreUnavailable:
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return StoreUnavailable(f"PostgreSQL: a statement ran past statement_timeout ({exc})")
    return StoreUnavailable(f"PostgreSQL: {_said(exc)}")


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.errors.QueryCanceled)


def _recording(note: Callable[[str | None], None]) -> type[psycopg.Connection[Any]]:
    """The pool's connection class: as psycopg's, but every attempt to connect tells ``note``
    why it failed (or None when it succeeded), so that a read refused for want of a connection
    can say that the server is unreachable, and why."""

    class Recording(psycopg.Connection[Any]):
        @classmethod
        def connect(cls, *args: Any, **kwargs: Any) -> Any:
            try:
                conn = super().connect(*args, **kwargs)
            except psycopg.Error as exc:
                note(_said(exc))
                raise
            note(None)
            return conn

    return Recording


class _Broken(Exception):
    """A read's connection found broken: the read may run again on another."""

    def __init__(self, error: psycopg.Error) -> None:
        super().__init__(str(error))
        self.error = error


class _Stale:
    """_pg_attempt's answer when the connection was broken before the batch was sent."""


_STALE = _Stale()


class PgWriter(Writer):
    """SQLite's writer thread (batches, group commit, one savepoint per write on a retry) over a
    PostgreSQL connection that is made again when it breaks."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]]) -> None:
        super().__init__(cast(Any, connect))
        self._make = connect
        self._raw: psycopg.Connection[Any] | None = None
        self._next_try = 0.0
        self._backoff = RECONNECT_MIN_S
        self.down: str | None = None  # why the last attempt to reach the database failed

    def _run(self) -> None:
        self._ready.set()
        try:
            stop = False
            while not stop:
                batch, stop = self.next_batch()
                if batch:
                    self._write(batch)
        finally:
            if self._raw is not None:
                self._raw.close()

    def retry_now(self) -> None:
        """The server answered someone else: the next write need not wait out the backoff."""
        self._next_try = 0.0

    def _connection(self) -> psycopg.Connection[Any] | None:
        if self._raw is not None and not self._raw.closed and not self._raw.broken:
            return self._raw
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        now = time.monotonic()
        if now < self._next_try:
            return None
        try:
            self._raw = self._make()
        except psycopg.Error as exc:
            self.down = _said(exc)
            self._next_try = now + self._backoff
            self._backoff = min(self._backoff * 2, RECONNECT_MAX_S)
            log.error("store: cannot connect to PostgreSQL: %s", self.down)
            return None
        self.down = None
        self._backoff = RECONNECT_MIN_S
        return self._raw

    def _write(self, batch: list[Any]) -> None:
        reused = self._raw is not None and not self._raw.closed and not self._raw.broken
        raw = self._connection()
        if raw is None:
            self._refuse(batch)
            return
        results = self._pg_attempt(raw, batch, isolate=False, fresh=not reused)
        if isinstance(results, _Stale):
            # The connection broke while idle (a restart, a failover, an idle timeout): nothing
            # of this batch reached the server, so it runs on a new connection rather than
            # failing webhooks that a server that is up again would take.
            raw = self._connection()
            if raw is None:
                self._refuse(batch)
                return
            results = self._pg_attempt(raw, batch, isolate=False, fresh=True)
        if results is None:
            results = self._pg_attempt(raw, batch, isolate=True)
        assert results is not None and not isinstance(results, _Stale)
        resolve(batch, results)

    def _refuse(self, batch: list[Any]) -> None:
        error = StoreUnavailable(f"PostgreSQL is unreachable: {self.down}")
        resolve(batch, [(False, error)] * len(batch))

    def _pg_attempt(
        self,
        raw: psycopg.Connection[Any],
        batch: list[Any],
        *,
        isolate: bool,
        fresh: bool = False,
    ) -> list[Result] | _Stale | None:
        """The batch in one transaction: its results; None when a write failed (the caller
        runs the batch again with ``isolate``: one savepoint per write); ``_STALE`` when the
        connection was found broken at BEGIN, before anything was sent (not when ``fresh``)."""
        conn = cast(sqlite3.Connection, PgConnection(raw))
        try:
            # BEGIN and the lock in one round trip (a query without parameters may hold two
            # statements): the webhooks' path pays for each trip to the server
            raw.execute(_BEGIN_LOCKED)
        except psycopg.Error as exc:
            self._abandon(raw)
            if not fresh and not isolate and self._raw is None:
                log.warning("store: the connection to PostgreSQL was lost, connecting again")
                return _STALE
            log.error("store: cannot begin a transaction: %s", _said(exc))
            return [(False, _unavailable(exc))] * len(batch)
        results: list[Result] = []
        groups = [[entry[0]] for entry in batch] if isolate else group([e[0] for e in batch])
        timed_out: StoreUnavailable | None = None
        for jobs in groups:
            if timed_out is not None:
                # One write of the batch ran past the timeout alone: the others most likely
                # wait on the same lock, and trying each would hold the batch a timeout per write.
                results.append((False, timed_out))
                continue
            try:
                if isolate:
                    raw.execute("SAVEPOINT w")
                results.extend((True, r) for r in run_jobs(conn, jobs))
                if isolate:
                    raw.execute("RELEASE w")
            except Exception as exc:
                if raw.broken or raw.closed:
                    self._abandon(raw)
                    return [(False, _unavailable(exc))] * len(batch)
                if not isolate:
                    raw.execute("ROLLBACK")
                    return None
                raw.execute("ROLLBACK TO w")
                raw.execute("RELEASE w")
                error = _unavailable(exc) if isinstance(exc, psycopg.Error) else exc
                if _timed_out(exc):
                    timed_out = cast(StoreUnavailable, error)
                results.append((False, error))
        try:
            raw.execute("COMMIT")
        except psycopg.Error as exc:
            # The outcome of a COMMIT whose answer was lost is unknown: the callers are told
            # the write failed, and one sent again is recognised (webhooks by their journal and
            # the state machine, actions by their Idempotency-Key).
            log.error("store: commit failed: %s", _said(exc))
            self._abandon(raw)
            return [(False, _unavailable(exc))] * len(batch)
        return results

    def _abandon(self, raw: psycopg.Connection[Any]) -> None:
        if raw.broken or raw.closed:
            raw.close()
            self._raw = None
            return
        try:
            raw.execute("ROLLBACK")
        except psycopg.Error:
            raw.close()
            self._raw = None


class PgStore(sqlite.Parts):
    """The database as the service uses it, on PostgreSQL (``interface.StoreInterface``)."""

    def __init__(
        self,
        url: DatabaseUrl | str,
        *,
        password: Secret | None = None,
        pool_size: int = 10,
        statement_timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.url = url if isinstance(url, DatabaseUrl) else DatabaseUrl.parse(url)
        self._password = password
        self.pool_size = pool_size
        self.statement_timeout_ms = max(1, int(statement_timeout_s * 1000))
        self.connect_timeout_s = connect_timeout_s
        self._writer: PgWriter | None = None
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._reading = 0
        # why the read pool's last attempt to connect failed; None once one succeeded
        self._readers_down: str | None = None
        # reads beyond the pool's connections that may wait for one; past that, refused at once
        self.max_waiting_reads = 4 * pool_size
        self.careful = CarefulMode()
        self.attach_parts(self, self.careful)

    def __repr__(self) -> str:
        return f"PgStore({self.url.masked})"

    def _kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "connect_timeout": max(1, round(self.connect_timeout_s)),
            "application_name": "incident-bridge",
            # A server that vanishes without a reset (a node lost, a network cut) would hold a
            # statement until the kernel gives up, minutes later, and the webhooks waiting on
            # the writer with it: keepalives notice an idle connection is gone, and
            # tcp_user_timeout bounds how long sent data may stay unacknowledged.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": 20_000,
        }
        if self._password is not None:
            kwargs["password"] = self._password.reveal()
        return kwargs

    def _settings(self, raw: psycopg.Connection[Any]) -> None:
        configure(raw)
        raw.execute(f"SET statement_timeout = {self.statement_timeout_ms}")
        raw.execute("SET TIME ZONE 'UTC'")

    def connect(self) -> psycopg.Connection[Any]:
        """A new connection in autocommit mode (the writer's, the migrations')."""
        raw = psycopg.connect(self.url.conninfo, autocommit=True, **self._kwargs())
        try:
            self._settings(raw)
        except BaseException:
            raw.close()
            raise
        return raw

    def _configure_reader(self, raw: psycopg.Connection[Any]) -> None:
        raw.autocommit = True
        self._settings(raw)
        raw.autocommit = False
        raw.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        raw.read_only = True

    def open(self) -> list[str]:
        """Check, migrate, start the writer and the read pool; the migrations run. Raises
        ``StoreError`` (the database untouched) when it cannot be used."""
        try:
            raw = self.connect()
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {self.url.masked}: {str(exc).strip()}"
            ) from None
        try:
            tables = schema.user_tables(raw)
            if tables and schema.MIGRATIONS_TABLE not in tables:
                shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
                raise StoreError(
                    f"{self.url.masked} is not an incident-bridge database (it has {shown} and "
                    f"no {schema.MIGRATIONS_TABLE} table); refusing to change it. Give --db an "
                    "empty database"
                )
            require_utf8(raw)  # before any migration: refused untouched
            applied = schema.migrate(raw)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot prepare the database {self.url.masked}: {str(exc).strip()}"
            ) from None
        finally:
            raw.close()
        self._writer = PgWriter(self.connect)
        self._writer.start()
        self._pool = psycopg_pool.ConnectionPool(
            self.url.conninfo,
            kwargs=self._kwargs(),
            min_size=1,
            max_size=self.pool_size,
            open=False,
            configure=self._configure_reader,
            # No check when a connection is taken: the pool's own check sleeps a backoff (1 s,
            # 2 s...) after each broken connection, and a restart breaks every idle one at once.
            # A read that finds its connection broken has the pool check them all (_read_now).
            connection_class=_recording(self._note_readers),
            # A connection that fails is tried once more at once, then not in the background:
            # the pool makes one when a read asks for it (it grows on demand), so a server that
            # is down costs each read at most its wait, and the first read after the server
            # is back reconnects; nobody hammers a server that is starting.
            reconnect_timeout=0,
            name="incident-bridge-readers",
        )
        self._pool.open(wait=False)
        self._readers = ThreadPoolExecutor(
            max_workers=self.pool_size, thread_name_prefix="store-reader"
        )
        return applied

    @property
    def fault(self) -> str | None:
        """PostgreSQL has no damaged file to report: an unreachable server is the ready
        check's to say (``queries.ready_check`` fails)."""
        return None

    @property
    def unreachable(self) -> str | None:
        """Why the writer's last attempt to reach PostgreSQL failed, while it still fails."""
        return self._writer.down if self._writer is not None else None

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def write(self, job: Callable[[sqlite3.Connection], T] | Batched[Any, T]) -> Awaitable[T]:
        if self._writer is None:
            raise StoreUnavailable("store is not open")
        return self._writer.submit(job)

    def _note_readers(self, down: str | None) -> None:
        self._readers_down = down
        if down is None and self._writer is not None and self._writer.down is not None:
            self._writer.retry_now()

    def _read_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return self._read_once(fn)
        except _Broken:
            # The connection was lost while it sat in the pool (a restart, a failover, an idle
            # timeout), and so, most likely, were the others beside it: they are all checked
            # (the broken ones replaced) and the read, which changed nothing, runs again once.
            assert self._pool is not None
            self._pool.check()
            try:
                return self._read_once(fn)
            except _Broken as broken:
                raise _unavailable(broken.error) from broken.error

    def _read_once(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._pool is not None
        known_down = self._readers_down is not None or self.unreachable is not None
        wait = min(DOWN_WAIT_S, self.connect_timeout_s) if known_down else self.connect_timeout_s
        try:
            with self._pool.connection(timeout=wait) as raw:
                try:
                    return fn(cast(sqlite3.Connection, PgConnection(raw)))
                except psycopg.OperationalError as exc:
                    if raw.broken or raw.closed:
                        raise _Broken(exc) from exc
                    raise
        except psycopg_pool.PoolTimeout:
            down = self._readers_down or self.unreachable
            if down is not None:
                raise StoreUnavailable(
                    f"PostgreSQL at {self.url.masked} is unreachable: {down}"
                ) from None
            raise StoreUnavailable(
                f"PostgreSQL: no connection from the pool within {wait:g} s (every one of its "
                f"{self.pool_size} connections is busy)"
            ) from None
        except psycopg.Error as exc:
            raise _unavailable(exc) from exc

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise StoreUnavailable("store is not open")
        if self._reading >= self.pool_size + self.max_waiting_reads:
            raise StoreUnavailable(
                f"PostgreSQL: {self._reading} reads in progress, the pool is exhausted"
            )
        self._reading += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._readers, self._read_now, fn
            )
        finally:
            self._reading -= 1

    def close(self) -> None:
        """Finish queued writes (they commit), then close every connection."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None


if TYPE_CHECKING:  # mypy checks that the PostgreSQL store is the whole interface

    def _implements(store: PgStore) -> StoreInterface:
        return store
