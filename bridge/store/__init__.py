"""The SQLite store: one writer thread (group commit), a small pool of read-only readers.

One service process per database: ``open`` takes an OS lock on a file beside the database for
the process's life, and refuses a database that is not incident-bridge's or fails its integrity
check, without changing it. A database error while serving (a file gone corrupt) is reported as
``StoreUnavailable`` like a locked one, and remembered in ``fault`` for the ready check.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import sqlite_utils

from bridge.private_files import UnsafeFile, check_folder, open_lock
from bridge.store import sqlite
from bridge.store.backup import backup as backup_database
from bridge.store.backup import check as check_database
from bridge.store.errors import StoreError, StoreUnavailable
from bridge.store.ingest import CarefulMode
from bridge.store.migrations import migrate
from bridge.store.writer import Batched, Writer, is_fault

if TYPE_CHECKING:
    from bridge.core.dburl import DatabaseUrl
    from bridge.core.secrets import Secret
    from bridge.store.interface import StoreInterface
    from bridge.store.postgres.backup import PgBackupResult, PgCheckResult
    from bridge.store.postgres.copy import CopyResult

# What the service opens (``Store``: the SQLite backend of ``interface.StoreInterface``), the
# offline tools on a database file (``db backup``, ``db check``) and on PostgreSQL (``db copy``,
# ``db backup|check --db postgresql://``), and the errors.
__all__ = [
    "Batched",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "backup_database",
    "backup_postgres",
    "check_database",
    "check_postgres",
    "copy_database",
    "new_store",
]
log = logging.getLogger("bridge.store")
# Names of the tables the first migration creates; a database with other tables and no
# migrations table belongs to something else.
_MIGRATIONS_TABLE = "_migrations"


T = TypeVar("T")
Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


def _unchanged(value: T) -> T:
    return value


def _bind_plainly() -> None:
    """The sqlite3 module binds int, float and str directly but sends None and bytes through
    its adapter lookup, which fails twice (raising and clearing AttributeError) before binding
    them as they are. A webhook binds about twenty such values (absent milestones, the raw
    body); an identity adapter finds them at once. Binding is unchanged: None is NULL, bytes a
    BLOB. sqlite3 keeps adapters for the whole process, not per connection, so a store sets
    them when it opens (twice is harmless) and importing the store changes nothing."""
    sqlite3.register_adapter(type(None), _unchanged)
    sqlite3.register_adapter(bytes, _unchanged)


class Store(sqlite.Parts):
    """Owns the database file. Writes go through ``write``; reads through ``read``."""

    def __init__(self, path: Path | str, *, synchronous: Synchronous = "FULL") -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self._writer: Writer | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._lockfile: int | None = None
        self._read_fault: str | None = None
        # this store's own: a false fingerprint seen here makes only its next batches careful
        self.careful = CarefulMode()
        # interface.StoreInterface: one part per concern, each over this writer and read pool
        self.attach_parts(self, self.careful)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=5.0
        )
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 5000")
        return conn

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def open(self) -> list[str]:
        """Lock, check, migrate and start the writer; returns the migrations run. Raises
        ``StoreError`` (and leaves the database as it was) when it cannot be used."""
        try:
            self._create_private()
            self._take_lock()
        except OSError as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc.strerror}") from None
        try:
            self._check()
            conn = self._connect()
            try:
                applied = migrate(sqlite_utils.Database(conn))
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            self._release_lock()
            raise StoreError(f"cannot open the database {self.path}: {exc}") from None
        except StoreError:
            self._release_lock()
            raise
        _bind_plainly()
        self._writer = Writer(self._connect)
        self._writer.start()
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="store-reader")
        return applied

    def _create_private(self) -> None:
        """A new data directory is 0700 and a new database 0600: it holds incidents, people and
        the raw webhook bodies. SQLite gives its -wal and -shm files the database's mode. An
        existing directory or file keeps the mode its owner gave it (a warning says when others
        can read the database)."""
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True)
        try:
            check_folder(parent)  # others who can write it could plant the files beside the db
        except UnsafeFile as exc:
            raise StoreError(str(exc)) from None
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            if self.path.is_file() and self.path.stat().st_mode & 0o077:
                log.warning(
                    "the database %s can be read by other users (mode %o); chmod 600 it",
                    self.path,
                    self.path.stat().st_mode & 0o777,
                )

    def _take_lock(self) -> None:
        """An exclusive lock on ``<db>.lock`` for the process's life: a second service on the
        same database would deliver every notification twice. The file holds the owner's pid."""
        try:
            # never through a symbolic link: the truncation below would hit its target
            fd = open_lock(self.lock_path)
        except UnsafeFile as exc:
            raise StoreError(f"cannot lock the database {self.path}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"the database {self.path} is in use by another incident-bridge process "
                f"(pid {holder}, lock {self.lock_path}); one service process per database"
            ) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lockfile = fd

    def _release_lock(self) -> None:
        if self._lockfile is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lockfile, 0)
            os.close(self._lockfile)  # closing the descriptor releases the lock
            self._lockfile = None

    def _check(self) -> None:
        """Refuse, untouched, a database that is not ours or is damaged. Read-only: the file's
        journal mode and tables are changed only once it has passed."""
        if not self.path.exists():
            return
        uri = self.path.resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        try:
            try:
                tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
            except sqlite3.DatabaseError as exc:
                if not is_fault(exc):
                    raise
                raise StoreError(
                    f"the database {self.path} is damaged or not an SQLite file ({exc}); restore "
                    "it from a backup or give --db a new file"
                ) from None
            if tables and _MIGRATIONS_TABLE not in tables:
                shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
                raise StoreError(
                    f"{self.path} is not an incident-bridge database (it has {shown} and no "
                    f"{_MIGRATIONS_TABLE} table); refusing to change it. Give --db a new file"
                )
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        finally:
            conn.close()
        if problems != ["ok"]:
            raise StoreError(
                f"the database {self.path} is damaged (integrity check: {problems[0]}); restore "
                "it from a backup or give --db a new file"
            )

    @property
    def fault(self) -> str | None:
        """What made the database fail while serving (a damaged file), or None."""
        writer_fault = self._writer.fault if self._writer is not None else None
        return writer_fault or self._read_fault

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
        except sqlite3.DatabaseError as exc:  # locked, gone, or damaged: none is the caller's
            if is_fault(exc):
                self._read_fault = str(exc)
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
        self._release_lock()


if TYPE_CHECKING:  # mypy checks that the SQLite store is the whole interface

    def _implements(store: Store) -> StoreInterface:
        return store


def new_store(
    path: Path,
    *,
    url: DatabaseUrl | None = None,
    password: Secret | None = None,
    pool_size: int = 10,
    statement_timeout_s: float = 30.0,
    synchronous: Synchronous = "FULL",
) -> StoreInterface:
    """The store, not yet open: PostgreSQL's at ``url`` when given, else SQLite's file at
    ``path``. The PostgreSQL backend (and its driver) is loaded only when asked for."""
    if url is not None:
        from bridge.store.postgres import PgStore

        return PgStore(
            url, password=password, pool_size=pool_size, statement_timeout_s=statement_timeout_s
        )
    return Store(path, synchronous=synchronous)


# The offline tools on PostgreSQL, loaded (with the driver) only when asked for.


def copy_database(source: Path, url: DatabaseUrl, password: Secret | None = None) -> CopyResult:
    """``db copy``: the SQLite store at ``source`` into the empty PostgreSQL database at ``url``
    (``store/postgres/copy.py``)."""
    from bridge.store.postgres.copy import copy_sqlite_to_postgres

    return copy_sqlite_to_postgres(source, url, password)


def backup_postgres(
    url: DatabaseUrl, dest: Path, *, password: Secret | None = None, force: bool = False
) -> PgBackupResult:
    """``db backup`` of a PostgreSQL database: ``pg_dump`` (``store/postgres/backup.py``)."""
    from bridge.store.postgres.backup import backup

    return backup(url, dest, password=password, force=force)


def check_postgres(url: DatabaseUrl, *, password: Secret | None = None) -> PgCheckResult:
    """``db check`` of a PostgreSQL database (``store/postgres/backup.py``)."""
    from bridge.store.postgres.backup import check

    return check(url, password=password)
