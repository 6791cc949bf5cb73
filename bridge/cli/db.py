"""``incident-bridge db backup|check``: the database file itself, read-only, beside a running
service or a stopped one (``bridge/store/backup.py``).

Exit codes: 0 done (the backup written and checked; the database sound), 1 the database or the
copy is damaged or cannot be read or written (nothing is left at PATH), 2 refused: PATH exists
without ``--force``, or bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from bridge.config import DEFAULT_DB, ENV_PREFIX


def _db(args: argparse.Namespace) -> Path:
    return Path(args.db or os.environ.get(ENV_PREFIX + "DB") or DEFAULT_DB)


def _fail(message: str, code: int = 1) -> int:
    print(f"incident-bridge: {message}", file=sys.stderr)
    return code


def _backup(args: argparse.Namespace) -> int:
    # The store's modules load only for these commands.
    from bridge.store import backup_database as backup
    from bridge.store.interface import BackupError, DestinationExists

    source = _db(args)
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


def _check(args: argparse.Namespace) -> int:
    from bridge.store import check_database as check
    from bridge.store.interface import BackupError

    path = _db(args)
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


def register(commands: Any) -> None:
    db = commands.add_parser("db", help="back up and check the database file")
    sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        help=f"the service's database (default INCIDENT_BRIDGE_DB, else {DEFAULT_DB})",
    )
    copy = sub.add_parser(
        "backup",
        parents=[common],
        help="a consistent copy of the database, also while the service runs",
        description="Copies the database with SQLite's online backup API (the snapshot of the "
        "last commit before the copy began), checks the copy with PRAGMA integrity_check, and "
        "only then renames it to PATH.",
    )
    copy.add_argument("path", metavar="PATH", help="the backup file to write")
    copy.add_argument("--force", action="store_true", help="replace PATH if it exists")
    copy.set_defaults(func=_backup)
    verify = sub.add_parser(
        "check",
        parents=[common],
        help="integrity check and migrations of the database (read-only)",
    )
    verify.add_argument("-o", "--output", choices=["text", "json"], default="text")
    verify.set_defaults(func=_check)
