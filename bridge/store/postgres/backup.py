"""``incident-bridge db backup|check`` on PostgreSQL.

``backup`` runs PostgreSQL's own ``pg_dump --format=custom`` (one consistent snapshot, taken
while the service runs) into a temporary file beside the destination (mode 0600), has
``pg_restore --list`` read the archive back, syncs it and only then renames it over the
destination. ``pg_dump`` is the one on the ``PATH``, else the newest of Debian's
``/usr/lib/postgresql/*/bin``. The password never goes on its command line (``ps`` shows it):
the connection is given as a conninfo string without it, and the password (``--db-password-file``,
or one written in the URL of the environment's variable) reaches the child in ``PGPASSWORD``;
without one, libpq's own ways work as they do for the service (``PGPASSWORD``, ``PGPASSFILE``, a
service file).

A restore is ``pg_restore --no-owner --dbname=URL FILE`` into an empty database, as the
service's role (docs/postgresql.md).

``check`` connects, compares the migrations applied with those this version knows, counts the
rows of every table, and looks at what keeps the aggregates right: the schema's triggers
enabled (a restore or a copy that left them disabled would let the MTTx figures drift), and
the alert counts per incident equal to the alerts linked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bridge.core.dburl import DatabaseUrl
from bridge.core.secrets import Secret
from bridge.store.backup import check_destination, written_whole
from bridge.store.errors import BackupError
from bridge.store.postgres import PgStore, schema

__all__ = ["PgBackupResult", "PgCheckResult", "backup", "check", "find_tool"]

DEBIAN_BINARIES = Path("/usr/lib/postgresql")


@dataclass(frozen=True)
class PgBackupResult:
    path: Path
    size: int
    seconds: float
    tool: Path  # the pg_dump that ran
    migrations: list[str]


@dataclass(frozen=True)
class PgCheckResult:
    target: str  # the URL, masked
    applied: list[str]
    pending: list[str]
    unknown: list[str]
    counts: dict[str, int]  # rows per table
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unknown


def find_tool(name: str) -> Path | None:
    """``name`` (pg_dump, pg_restore) on the PATH, else in Debian's newest server folder."""
    found = shutil.which(name)
    if found:
        return Path(found)
    versions = sorted(
        (p for p in DEBIAN_BINARIES.glob(f"*/bin/{name}") if p.parent.parent.name.isdigit()),
        key=lambda p: int(p.parent.parent.name),
    )
    return versions[-1] if versions else None


def _reason(exc: psycopg.Error) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _connect(url: DatabaseUrl, password: Secret | None) -> psycopg.Connection[Any]:
    try:
        return PgStore(url, password=password, connect_timeout_s=10).connect()
    except psycopg.Error as exc:
        raise BackupError(f"cannot connect to PostgreSQL at {url.masked}: {_reason(exc)}") from None


def _applied(raw: psycopg.Connection[Any], masked: str) -> list[str]:
    tables = schema.user_tables(raw)
    if schema.MIGRATIONS_TABLE not in tables:
        if tables:
            raise BackupError(
                f"{masked} is not an incident-bridge database (no {schema.MIGRATIONS_TABLE} table)"
            )
        return []
    rows = raw.execute(
        f"SELECT name FROM {schema.MIGRATIONS_TABLE} ORDER BY applied_at, name"
    ).fetchall()
    return [str(r[0]) for r in rows]


def _child_connection(url: DatabaseUrl, password: Secret | None) -> tuple[str, dict[str, str]]:
    """The conninfo a child gets on its command line (no password) and its environment (the
    password, when there is one to give)."""
    try:
        params = conninfo_to_dict(url.conninfo)
    except psycopg.ProgrammingError:
        raise BackupError(f"{url.masked}: libpq cannot read this URL") from None
    written = params.pop("password", None)
    env = dict(os.environ)
    secret = password.reveal() if password is not None else written
    if secret is not None:
        env["PGPASSWORD"] = str(secret)
    return make_conninfo("", **params), env


def _stderr(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    return "; ".join(lines[-3:]) or f"exit code {done.returncode}"


def backup(
    url: DatabaseUrl, dest: Path, *, password: Secret | None = None, force: bool = False
) -> PgBackupResult:
    """``pg_dump --format=custom`` of the database into ``dest``; see the module."""
    check_destination(dest, force=force)
    dump, restore = find_tool("pg_dump"), find_tool("pg_restore")
    if dump is None or restore is None:
        raise BackupError(
            "pg_dump and pg_restore are needed to back up PostgreSQL and were not found on the "
            "PATH (Debian: apt-get install postgresql-client)"
        )
    started = time.monotonic()
    raw = _connect(url, password)
    try:
        migrations = _applied(raw, url.masked)
    finally:
        raw.close()
    conninfo, env = _child_connection(url, password)
    with written_whole(dest) as tmp:
        done = subprocess.run(
            [
                str(dump),
                "--format=custom",
                "--no-password",
                f"--file={tmp}",
                f"--dbname={conninfo}",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BackupError(f"pg_dump of {url.masked} failed: {_stderr(done)}")
        listed = subprocess.run(
            [str(restore), "--list", str(tmp)], capture_output=True, text=True, check=False
        )
        if listed.returncode != 0 or "TABLE DATA" not in listed.stdout:
            raise BackupError(f"the dump of {url.masked} cannot be read back: {_stderr(listed)}")
    size = dest.stat().st_size
    return PgBackupResult(dest, size, time.monotonic() - started, dump, migrations)


def _problems(raw: psycopg.Connection[Any]) -> list[str]:
    found = []
    disabled = raw.execute(
        "SELECT c.relname, g.tgname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT g.tgisinternal "
        "AND g.tgenabled = 'D' AND n.nspname = current_schema() ORDER BY 1, 2"
    ).fetchall()
    for table, trigger in disabled:
        found.append(f"trigger {trigger} on {table} is disabled: its aggregates are not kept")
    tables = set(schema.user_tables(raw))
    if {"incident_alerts", "incident_alert_counts"} <= tables:
        row = raw.execute(
            "SELECT count(*) FROM (SELECT incident_id, status, count(*) AS n "
            "FROM incident_alerts GROUP BY incident_id, status) AS linked "
            "FULL JOIN (SELECT incident_id, status, n FROM incident_alert_counts WHERE n <> 0) "
            "AS kept USING (incident_id, status) WHERE linked.n IS DISTINCT FROM kept.n"
        ).fetchone()
        if row and row[0]:
            found.append(
                f"incident_alert_counts disagrees with incident_alerts for {row[0]} "
                "(incident, status) pair(s)"
            )
    return found


def check(url: DatabaseUrl, *, password: Secret | None = None) -> PgCheckResult:
    """The connection, the migrations, the rows per table, the aggregates' triggers; read-only.
    ``BackupError`` when the database cannot be reached or is not incident-bridge's."""
    raw = _connect(url, password)
    try:
        raw.read_only = True
        try:
            with raw.transaction():
                applied = _applied(raw, url.masked)
                counts = {
                    t: int(raw.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0])  # type: ignore[index]
                    for t in schema.user_tables(raw)
                }
                problems = _problems(raw)
        except psycopg.Error as exc:
            raise BackupError(f"cannot read {url.masked}: {_reason(exc)}") from None
    finally:
        raw.close()
    known = [name for name, _ in schema.MIGRATIONS]
    return PgCheckResult(
        target=url.masked,
        applied=applied,
        pending=[name for name in known if name not in applied],
        unknown=[name for name in applied if name not in known],
        counts=counts,
        problems=problems,
    )
