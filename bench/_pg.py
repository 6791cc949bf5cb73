"""PostgreSQL for the benchmarks: a throwaway server of their own, or one that already runs, and
where one bridge process keeps its data on either backend.

``--db postgresql`` starts a server with Debian's binaries (``/usr/lib/postgresql/*/bin``):
``initdb`` in a temporary folder, a free loopback port, a socket folder of its own, owned by the
unprivileged ``postgres`` user when run as root (the server refuses root), removed at the end.
Unlike the tests' cluster it is durable as in production: ``fsync = on`` and
``synchronous_commit = on``, so that a commit waits for the disk as SQLite's
``synchronous=FULL`` does. ``cpu`` pins the server (every backend process inherits the
postmaster's affinity) to the bridge's core, so that "one core of server" holds the database's
work on both backends. ``--db postgresql://...`` uses a running server instead: each bridge
gets a new database created through that URL (the role needs CREATEDB), dropped at the end.

Not a benchmark itself: ``--smoke`` (tools/bench-smoke runs every bench/*.py) starts a server,
checks that it is durable and that a database can be made and dropped. Without the binaries it
says so and passes, except under ``CI=true``, where it fails (CI installs them).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench._common import SMOKE_HELP, free_port  # noqa: E402

USER = "bench"  # the throwaway server's superuser: trust on loopback only
SERVER_CONF = (
    "listen_addresses = '127.0.0.1'\n"
    "fsync = on\n"
    "synchronous_commit = on\n"
    "full_page_writes = on\n"
    "max_connections = 200\n"
    "shared_buffers = 256MB\n"
)


class Missing(RuntimeError):
    """PostgreSQL's server binaries are not installed (or cannot run here)."""


def bindir() -> Path | None:
    """The newest Debian PostgreSQL's bin folder, or None."""
    found = sorted(
        (p / "bin" for p in Path("/usr/lib/postgresql").glob("*") if (p / "bin/initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


def missing_reason() -> str | None:
    """Why a throwaway server cannot be started here, or None when it can."""
    if bindir() is None:
        return "Debian's postgresql is not installed (/usr/lib/postgresql/*/bin/initdb)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to own the server"
    return None


def skip_or_fail(what: str, reason: str) -> int:
    """A smoke run without PostgreSQL: passes saying so, except under CI=true (exit 1)."""
    if os.environ.get("CI") == "true":
        print(f"{what}: PostgreSQL is required under CI=true: {reason}", file=sys.stderr)
        return 1
    print(f"{what}: PostgreSQL part skipped: {reason}", flush=True)
    return 0


def replace_dbname(url: str, dbname: str) -> str:
    """``url`` naming the database ``dbname`` (its path; a ``dbname`` query parameter goes)."""
    parts = urlsplit(url)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "dbname"])
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, query, ""))


def masked(url: str) -> str:
    from bridge.core.dburl import DatabaseUrl

    return DatabaseUrl.parse(url).masked


class Server:
    """A PostgreSQL server the benchmark may create databases on."""

    def __init__(self, admin_url: str, *, owned: bool, data: Path | None = None) -> None:
        self.admin_url = admin_url  # connects to a database from which others are created
        self.owned = owned  # started by the benchmark (durable settings known)
        self.data = data  # the data folder of a server the benchmark started
        self._made: list[str] = []
        self._names = itertools.count(1)

    def pids(self) -> list[int]:
        """The server's processes (its postmaster and every child: the bridges' backends,
        autovacuum...) when the benchmark started it; none for a server it was given."""
        if self.data is None:
            return []
        try:
            master = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        found = [master]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == master:
                found.append(int(stat.parent.name))
        return found

    def sql(self, statement: str, url: str | None = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(url or self.admin_url, autocommit=True) as conn:
            cur = conn.execute(statement)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def settings(self) -> dict[str, str]:
        """The settings a commit's durability depends on."""
        names = ("fsync", "synchronous_commit", "wal_sync_method", "server_version")
        return {n: str(self.sql(f"SHOW {n}")[0][0]) for n in names}

    def new_database(self, label: str) -> str:
        """A new empty database; its URL. Dropped by ``drop_all``."""
        name = f"bench_{label}_{os.getpid()}_{next(self._names)}".lower()
        self.sql(f"CREATE DATABASE {name}")
        self._made.append(name)
        return replace_dbname(self.admin_url, name)

    def drop_all(self) -> None:
        for name in self._made:
            with contextlib.suppress(Exception):
                self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self._made.clear()


class Cluster:
    """The benchmark's own server (module docstring)."""

    def __init__(self, root: Path, cpu: int | None = None) -> None:
        found = bindir()
        if found is None:
            raise Missing(missing_reason() or "no PostgreSQL")
        self.bindir = found
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.port = free_port()
        self.cpu = cpu
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(self.cpu), *cmd]
        if self._owner is not None:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        self.root.mkdir(parents=True)
        os.chmod(self.root.parent, 0o755)  # mkdtemp's 0700 would keep the postgres user out
        self.data.mkdir(mode=0o700)
        self.sockets.mkdir()
        if self._owner is not None:
            for path in (self.root, self.data, self.sockets):
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
        # --no-sync: the freshly made files are not flushed (a crash during initdb loses a
        # throwaway cluster); the server itself runs with fsync on
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", USER, "--no-sync",
            "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"port = {self.port}\nunix_socket_directories = '{self.sockets}'\n{SERVER_CONF}"
            )
        done = self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start",
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            log = (self.root / "log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {done.stderr}{done.stdout}\n{log}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"


@contextlib.contextmanager
def server(spec: str, cpu: int | None = None) -> Iterator[Server]:
    """``postgresql``: a throwaway server of the benchmark's own (pinned to ``cpu``);
    ``postgresql://...``: that server. Every database made on it is dropped at the end."""
    if spec == "postgresql":
        reason = missing_reason()
        if reason is not None:
            raise Missing(reason)
        root = Path(tempfile.mkdtemp(prefix="incident-bridge-bench-pg-"))
        cluster = Cluster(root / "cluster", cpu)
        try:
            cluster.start()
            pg = Server(cluster.url(), owned=True, data=cluster.data)
            try:
                yield pg
            finally:
                pg.drop_all()
        finally:
            cluster.stop()
            shutil.rmtree(root, ignore_errors=True)
        return
    pg = Server(spec, owned=False)
    try:
        yield pg
    finally:
        pg.drop_all()


@dataclass(frozen=True)
class Place:
    """Where one bridge process keeps its data: SQLite's file, or a PostgreSQL database (whose
    URL goes in the environment, where a password may be, never on the command line) with a
    data folder for the files SQLite keeps beside its database."""

    backend: str  # "sqlite" or "postgresql"
    path: Path  # SQLite's file, or PostgreSQL's --data-dir
    url: str | None = None

    @classmethod
    def sqlite(cls, path: Path) -> Place:
        return cls("sqlite", path)

    @classmethod
    def postgresql(cls, pg: Server, label: str, data_dir: Path) -> Place:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls("postgresql", data_dir, pg.new_database(label))

    def serve_args(self) -> tuple[list[str], dict[str, str]]:
        """``incident-bridge serve`` arguments and environment variables for this place."""
        if self.url is None:
            return ["--db", str(self.path)], {}
        return ["--data-dir", str(self.path)], {"INCIDENT_BRIDGE_DB": self.url}

    def count(self, sql: str) -> int:
        """One number from a SELECT (SQLite after a SIGKILL: a normal open recovers the WAL)."""
        if self.url is None:
            conn = sqlite3.connect(self.path)
            try:
                return int(conn.execute(sql).fetchone()[0])
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url) as pg:
            row = pg.execute(sql).fetchone()  # type: ignore[arg-type]
            assert row is not None
            return int(row[0])


def _self_check() -> int:
    reason = missing_reason()
    if reason is not None:
        return skip_or_fail("bench/_pg", reason)
    with server("postgresql") as pg:
        settings = pg.settings()
        url = pg.new_database("smoke")
        pg.sql("CREATE TABLE t (n BIGINT)", url)
        pg.sql("INSERT INTO t SELECT generate_series(1, 10)", url)
        place = Place("postgresql", Path("."), url)
        counted = place.count("SELECT count(*) FROM t")
        print(f"bench/_pg: server {settings}, {masked(url)} holds {counted} rows", flush=True)
        durable = settings["fsync"] == "on" and settings["synchronous_commit"] == "on"
        return 0 if durable and counted == 10 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    parser.parse_args()
    sys.exit(_self_check())
