"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries, ``initdb`` in a temp
folder, the server on a free loopback port and a socket folder of its own, stopped and removed
at the end of the session. Run as root (CI), the cluster belongs to the unprivileged ``postgres``
user (the server refuses root). Each test gets a database of its own, copied from a template
that already holds the schema (``CREATE DATABASE ... TEMPLATE``: a few milliseconds).

Without the binaries a test skips on a laptop and fails under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

USER = "bridge"  # the cluster's superuser; tests connect as it, trust on loopback only
# The cluster's files in memory when the machine has a tmpfs for it: every test's database is a
# copy of the template (about 8 MB of catalogs each, some 400 a run), made and removed in a
# fraction of the time a disk takes. The cluster is thrown away, so nothing is lost with it.
_SHM = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _bindir() -> Path | None:
    root = Path("/usr/lib/postgresql")
    found = sorted(
        (p / "bin" for p in root.glob("*") if (p / "bin" / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One PostgreSQL server of the tests' own."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.port = free_port()
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._owner = pwd.getpwnam("postgres")
        self._counter = 0
        self.template: str | None = None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._owner is not None:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60)

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(mode=0o700)
        self.sockets.mkdir()
        if self._owner is not None:
            for path in (self.root, self.data, self.sockets):
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", USER, "--no-sync",
            "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        with open(self.data / "postgresql.conf", "a") as conf:
            # the tests' own server: durable commits as in production (synchronous_commit on),
            # fsync off only because the cluster is thrown away with the machine's temp folder
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.sockets}'\nfsync = off\n"
                "max_connections = 300\nshared_buffers = 64MB\n"
            )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def sql(self, statement: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def new_database(self, *, template: str | None = None) -> str:
        """A new empty database (or a copy of ``template``); its URL."""
        self._counter += 1
        name = f"t{os.getpid()}_{self._counter}"
        source = f" TEMPLATE {template}" if template else ""
        for attempt in range(20):
            try:
                self.sql(f"CREATE DATABASE {name}{source}")
                break
            except Exception as exc:  # a template still in use by a closing connection
                if "being accessed by other users" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.05)
        return self.url(name)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def _missing(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL tests cannot run under CI=true: {why}")
    pytest.skip(why)


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    bindir = _bindir()
    if bindir is None:
        _missing("Debian's postgresql is not installed (/usr/lib/postgresql/*/bin/initdb)")
    assert bindir is not None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _missing("running as root and there is no postgres user to own the cluster")
    root = Path(tempfile.mkdtemp(prefix="bridge-pg-", dir=_SHM))
    os.chmod(root, 0o755)
    cluster = Cluster(bindir, root / "cluster")
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
        shutil.rmtree(root, ignore_errors=True)
