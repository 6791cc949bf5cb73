"""Online backup and the offline-safe check of a database (``incident-bridge db backup|check``).

Both only read the database, through a read-only connection of their own, so they work next to
a running service (which holds the lock file and the one writer) as well as on a stopped one.

The backup is SQLite's online backup API (``sqlite3.Connection.backup``) from one read
transaction held for the whole copy: in WAL mode the copy is the snapshot of the last commit
before it began, whatever the writer commits meanwhile (the writer is never blocked by a
reader; the WAL only grows until the copy ends). It goes into a temporary file beside the
destination, in steps with a pause between them (the disk is shared with the writer), is made a
single self-contained file (``journal_mode = DELETE``), passes ``PRAGMA integrity_check``, is
synced and only then renamed over the destination.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bridge.store.errors import BackupError, DestinationExists
from bridge.store.migrations import MIGRATIONS

__all__ = ["BackupError", "BackupResult", "IntegrityResult", "backup", "check"]

# 256 pages of 4 KiB: 1 MiB a step, then a short pause for the writer's fsyncs.
PAGES_PER_STEP = 256
PAUSE_S = 0.002


@dataclass(frozen=True)
class BackupResult:
    path: Path
    pages: int
    size: int
    seconds: float
    migrations: list[str]


@dataclass(frozen=True)
class IntegrityResult:
    """``db check``'s findings on a database file: integrity_check and the migrations."""

    path: Path
    problems: list[str]  # integrity_check's findings; empty when the file is sound
    applied: list[str]  # the migrations the database has, in the order they ran
    pending: list[str]  # known to this version, not applied yet (the next start runs them)
    unknown: list[str]  # applied but unknown here: written by a newer incident-bridge

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unknown


def _read_only(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise BackupError(f"no database at {path}")
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open the database {path}: {exc}") from None
    return conn


def _migrations(conn: sqlite3.Connection, path: Path) -> list[str]:
    try:
        rows = conn.execute("SELECT name FROM _migrations ORDER BY applied_at, name").fetchall()
    except sqlite3.DatabaseError as exc:
        if "no such table" in str(exc):
            raise BackupError(
                f"{path} is not an incident-bridge database (no _migrations table)"
            ) from None
        raise
    return [name for (name,) in rows]


def _integrity(conn: sqlite3.Connection) -> list[str]:
    found = [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
    return [] if found == ["ok"] else found


def check(path: Path) -> IntegrityResult:
    """``PRAGMA integrity_check`` and the migrations applied against those this version knows.
    Read-only; raises ``BackupError`` when the file cannot be read as a database at all."""
    conn = _read_only(path)
    try:
        try:
            applied = _migrations(conn, path)
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"cannot read the database {path}: {exc}") from None
        try:
            problems = _integrity(conn)
        except sqlite3.DatabaseError as exc:  # damaged past what the check can walk
            problems = [str(exc)]
    finally:
        conn.close()
    known = [name for name, _ in MIGRATIONS]
    return IntegrityResult(
        path=path,
        problems=problems,
        applied=applied,
        pending=[name for name in known if name not in applied],
        unknown=[name for name in applied if name not in known],
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_destination(dest: Path, *, force: bool) -> None:
    """Refuse a backup's destination that exists (unless ``force``), is a folder, or whose
    folder is missing, before anything is read or written."""
    if dest.exists() and not force:
        raise DestinationExists(f"{dest} exists; give --force to replace it")
    if dest.is_dir():
        raise BackupError(f"{dest} is a directory; give the backup's file name")
    if not dest.parent.is_dir():
        raise BackupError(f"cannot write the backup {dest}: no directory {dest.parent}")


@contextlib.contextmanager
def written_whole(dest: Path) -> Iterator[Path]:
    """A temporary file beside ``dest`` for the block to write (0600: a backup holds what the
    database holds). When the block ends, the file is flushed to disk and replaces ``dest`` in
    one rename; when it raises, the file is removed. A backup is whole or not there."""
    try:
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    except OSError as exc:
        raise BackupError(f"cannot write the backup {dest}: {exc.strerror}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        try:
            with tmp.open("rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
        except OSError as exc:
            raise BackupError(f"cannot write the backup {dest}: {exc.strerror}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def backup(
    source: Path,
    dest: Path,
    *,
    force: bool = False,
    pages_per_step: int = PAGES_PER_STEP,
    pause_s: float = PAUSE_S,
) -> BackupResult:
    """Copy ``source`` into ``dest`` consistently while it may be written; see the module."""
    check_destination(dest, force=force)
    if dest.exists() and source.exists() and dest.resolve() == source.resolve():
        raise BackupError(f"{dest} is the database itself; give the backup another path")
    started = time.monotonic()
    src = _read_only(source)
    try:
        with written_whole(dest) as tmp:
            try:
                # One read transaction for the whole copy: every step reads the same snapshot,
                # so the writer's commits meanwhile neither restart the copy nor show up half
                # in it.
                src.execute("BEGIN")
                migrations = _migrations(src, source)
                dst = sqlite3.connect(tmp, isolation_level=None)
                try:
                    src.backup(dst, pages=pages_per_step, sleep=pause_s)
                    src.execute("COMMIT")
                    dst.execute("PRAGMA journal_mode = DELETE")  # one file: no -wal beside it
                    pages = int(dst.execute("PRAGMA page_count").fetchone()[0])
                    problems = _integrity(dst)
                finally:
                    dst.close()
            except sqlite3.DatabaseError as exc:
                raise BackupError(f"cannot back up {source} to {dest}: {exc}") from None
            except OSError as exc:
                raise BackupError(f"cannot write the backup {dest}: {exc.strerror}") from None
            if problems:
                raise BackupError(
                    f"the copy of {source} failed its integrity check ({problems[0]}); {dest} "
                    "was not written. Run `incident-bridge db check` on the database"
                )
    finally:
        src.close()
    size = dest.stat().st_size
    return BackupResult(dest, pages, size, time.monotonic() - started, migrations)
