"""``incident-bridge db backup|check|copy``: the database itself, beside a running service or a
stopped one.

SQLite's file (``bridge/store/backup.py``): read-only, through SQLite's online backup API.
PostgreSQL (``--db postgresql://...``, ``bridge/store/postgres/backup.py``): ``pg_dump`` in its
custom format, and the check of the migrations, the rows and the aggregates' triggers. ``db copy``
moves a SQLite store into an empty PostgreSQL database (``bridge/store/postgres/copy.py``).

Exit codes: 0 done (the backup written and checked; the database sound; the copy committed and
counted), 1 the database or the copy is damaged or cannot be read or written (nothing is left at
PATH), 2 refused: PATH exists without ``--force``, bad usage, or any reason ``db copy`` did not
copy (nothing was written to the target).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from bridge.config import DEFAULT_DB, ENV_PREFIX, ConfigError, parse_db
from bridge.core.dburl import DatabaseUrl
from bridge.core.secrets import Secret

RESTORE = (
    "Restore a PostgreSQL dump into an empty database as the service's role: pg_restore "
    "--no-owner --dbname=postgresql://USER@HOST:PORT/DBNAME FILE, then incident-bridge db check "
    "--db postgresql://USER@HOST:PORT/DBNAME."
)


class Usage(Exception):
    """Bad usage: exit 2 with the message."""


def _db(args: argparse.Namespace) -> Path | DatabaseUrl:
    """``--db``, else ``INCIDENT_BRIDGE_DB``, else the default file: SQLite's path, or a
    PostgreSQL URL (with no password in it when it is on the command line)."""
    value = args.db or os.environ.get(ENV_PREFIX + "DB") or DEFAULT_DB
    try:
        parsed = parse_db(value)
    except ConfigError as exc:
        raise Usage(str(exc)) from None
    if isinstance(parsed, DatabaseUrl) and parsed.has_password and args.db:
        raise Usage(_password_shown("--db", parsed))
    return parsed


def _password_shown(flag: str, url: DatabaseUrl) -> str:
    return (
        f"{flag}: {url.masked}: a password in the URL on the command line shows in `ps`; use "
        f"--db-password-file, {ENV_PREFIX}DB_PASSWORD, PGPASSWORD or PGPASSFILE"
    )


def _password(args: argparse.Namespace, url: DatabaseUrl) -> Secret | None:
    """PostgreSQL's password as ``serve`` takes it: ``--db-password-file``, else
    ``INCIDENT_BRIDGE_DB_PASSWORD``; None leaves it to libpq (PGPASSWORD, PGPASSFILE)."""
    path = getattr(args, "db_password_file", None)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise Usage(f"--db-password-file: cannot read {path}: {exc.strerror}") from None
        if not text:
            raise Usage(f"--db-password-file: {path} is empty")
    else:
        text = os.environ.get(ENV_PREFIX + "DB_PASSWORD", "").strip()
    if text and url.has_password:
        raise Usage("--db-password-file: the URL has a password already")
    return Secret(text) if text else None


def _fail(message: str, code: int = 1) -> int:
    print(f"incident-bridge: {message}", file=sys.stderr)
    return code


def _usage(run: Any) -> Any:
    def checked(args: argparse.Namespace) -> int:
        try:
            code: int = run(args)
        except Usage as exc:
            return _fail(str(exc), 2)
        return code

    return checked


@_usage
def _backup(args: argparse.Namespace) -> int:
    # The store's modules load only for these commands.
    from bridge.store import backup_database as backup
    from bridge.store.interface import BackupError, DestinationExists

    source = _db(args)
    if isinstance(source, DatabaseUrl):
        return _backup_postgres(args, source)
    try:
        done = backup(source, Path(args.path), force=args.force)
    except DestinationExists as exc:
        return _fail(str(exc), 2)
    except BackupError as exc:
        return _fail(str(exc))
    latest = done.migrations[-1] if done.migrations else "none"
    print(
        f"backed up {source} to {done.path}: {done.size} bytes, {done.pages} pages, "
        f"integrity ok, schema {latest}, {done.seconds:.2f}s"
    )
    return 0


def _backup_postgres(args: argparse.Namespace, url: DatabaseUrl) -> int:
    from bridge.store import backup_postgres
    from bridge.store.interface import BackupError, DestinationExists

    try:
        done = backup_postgres(
            url, Path(args.path), password=_password(args, url), force=args.force
        )
    except DestinationExists as exc:
        return _fail(str(exc), 2)
    except BackupError as exc:
        return _fail(str(exc))
    latest = done.migrations[-1] if done.migrations else "none"
    print(
        f"backed up {url.masked} to {done.path}: {done.size} bytes, pg_dump custom format "
        f"({done.tool}), read back by pg_restore --list, schema {latest}, {done.seconds:.2f}s"
    )
    return 0


@_usage
def _check(args: argparse.Namespace) -> int:
    from bridge.store import check_database as check
    from bridge.store.interface import BackupError

    path = _db(args)
    if isinstance(path, DatabaseUrl):
        return _check_postgres(args, path)
    try:
        result = check(path)
    except BackupError as exc:
        return _fail(str(exc))
    if args.output == "json":
        print(
            json.dumps(
                {
                    "path": str(result.path),
                    "ok": result.ok,
                    "integrity": result.problems or ["ok"],
                    "applied": result.applied,
                    "pending": result.pending,
                    "unknown": result.unknown,
                },
                indent=2,
            )
        )
        return 0 if result.ok else 1
    if result.problems:
        print(f"{path}: integrity check FAILED ({len(result.problems)} problem(s)):")
        for problem in result.problems[:20]:
            print(f"  {problem}")
    else:
        print(f"{path}: integrity ok")
    print(
        f"migrations applied: {len(result.applied)}, latest {result.applied[-1] if result.applied else 'none'}"
    )
    if result.pending:
        print(f"migrations pending (run at the next start): {', '.join(result.pending)}")
    if result.unknown:
        print(
            f"migrations unknown to this version (written by a newer incident-bridge): "
            f"{', '.join(result.unknown)}"
        )
    return 0 if result.ok else 1


def _check_postgres(args: argparse.Namespace, url: DatabaseUrl) -> int:
    from bridge.store import check_postgres
    from bridge.store.interface import BackupError

    try:
        result = check_postgres(url, password=_password(args, url))
    except BackupError as exc:
        return _fail(str(exc))
    if args.output == "json":
        print(
            json.dumps(
                {
                    "url": result.target,
                    "ok": result.ok,
                    "problems": result.problems,
                    "applied": result.applied,
                    "pending": result.pending,
                    "unknown": result.unknown,
                    "rows": result.counts,
                },
                indent=2,
            )
        )
        return 0 if result.ok else 1
    print(f"{result.target}: connected")
    for problem in result.problems:
        print(f"  PROBLEM: {problem}")
    latest = result.applied[-1] if result.applied else "none"
    print(f"migrations applied: {len(result.applied)}, latest {latest}")
    if result.pending:
        print(f"migrations pending (run at the next start): {', '.join(result.pending)}")
    if result.unknown:
        print(
            f"migrations unknown to this version (written by a newer incident-bridge): "
            f"{', '.join(result.unknown)}"
        )
    print("rows: " + ", ".join(f"{table} {n}" for table, n in result.counts.items()))
    return 0 if result.ok else 1


@_usage
def _copy(args: argparse.Namespace) -> int:
    from bridge.store import copy_database
    from bridge.store.interface import BackupError

    try:
        source = parse_db(args.source)
        target = parse_db(args.target)
    except ConfigError as exc:
        raise Usage(str(exc).replace("--db: ", "", 1)) from None
    if not isinstance(source, Path):
        raise Usage(f"FROM is SQLite's file (a path or sqlite:///PATH), not {source.masked}")
    if not isinstance(target, DatabaseUrl):
        raise Usage(f"TO is a postgresql://USER@HOST:PORT/DBNAME URL, not {target}")
    if target.has_password:
        raise Usage(_password_shown("TO", target))
    try:
        done = copy_database(source, target, _password(args, target))
    except BackupError as exc:  # a target in use too (DestinationExists is one)
        return _fail(str(exc), 2)
    width = max(map(len, done.counts), default=0)
    print(
        f"copied {done.source} to {done.target}: {sum(done.counts.values())} rows in "
        f"{len(done.counts)} tables, counts equal on both sides, schema {done.migrations[-1]}, "
        f"{done.seconds:.2f}s"
    )
    for table, n in done.counts.items():
        print(f"  {table:<{width}}  {n}")
    print(f"  {'similar_terms':<{width}}  {done.derived} (derived again from the incidents)")
    return 0


def register(commands: Any) -> None:
    db = commands.add_parser(
        "db", help="back up and check the database; copy a SQLite store into PostgreSQL"
    )
    sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    password = argparse.ArgumentParser(add_help=False)
    password.add_argument(
        "--db-password-file",
        metavar="FILE",
        help=f"PostgreSQL: a file holding the password (else {ENV_PREFIX}DB_PASSWORD, else "
        "libpq's PGPASSWORD, PGPASSFILE or service file)",
    )
    common = argparse.ArgumentParser(add_help=False, parents=[password])
    common.add_argument(
        "--db",
        help=f"the service's database: SQLite's file or a postgresql:// URL (default "
        f"{ENV_PREFIX}DB, else {DEFAULT_DB})",
    )
    backup = sub.add_parser(
        "backup",
        parents=[common],
        help="a consistent copy of the database, also while the service runs",
        description="SQLite: copies the database with SQLite's online backup API (the snapshot "
        "of the last commit before the copy began), checks the copy with PRAGMA "
        "integrity_check, and only then renames it to PATH. PostgreSQL: pg_dump --format=custom "
        "into PATH (pg_dump from the PATH, else Debian's /usr/lib/postgresql/*/bin; the "
        "password reaches it in PGPASSWORD, never on its command line), read back by "
        f"pg_restore --list before it is renamed to PATH. {RESTORE}",
    )
    backup.add_argument("path", metavar="PATH", help="the backup file to write")
    backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    backup.set_defaults(func=_backup)
    verify = sub.add_parser(
        "check",
        parents=[common],
        help="integrity and migrations of the database (read-only)",
        description="SQLite: PRAGMA integrity_check and the migrations applied against those "
        "this version knows. PostgreSQL: connects, compares the migrations, counts the rows of "
        "every table, and checks that the aggregates' triggers are enabled and the alert "
        "counts agree with the alerts. Exit 0 sound, 1 not.",
    )
    verify.add_argument("-o", "--output", choices=["text", "json"], default="text")
    verify.set_defaults(func=_check)
    copy = sub.add_parser(
        "copy",
        parents=[password],
        help="move a SQLite store into an empty PostgreSQL database",
        description="Copies every table of the SQLite store FROM (stopped: refused while a "
        "service holds it) into the empty PostgreSQL database TO, in one transaction: ids and "
        "timestamps kept, the identity sequences set past the largest id, the rows of every "
        "table counted on both sides before the commit. Search works at once (the documents "
        "are copied; the similar-incident terms derived again). Refused, with nothing written "
        "(exit 2): a target with rows or tables that are not incident-bridge's, a source that "
        "is not incident-bridge's or not at this version's schema, an unreachable server.",
    )
    copy.add_argument("source", metavar="FROM", help="SQLite's file (a path or sqlite:///PATH)")
    copy.add_argument(
        "target",
        metavar="TO",
        help="postgresql://USER@HOST:PORT/DBNAME (no password in it: see --db-password-file)",
    )
    copy.set_defaults(func=_copy)
