"""incident-bridge behind PgBouncer (Debian's ``pgbouncer``) in session mode, as
docs/postgresql.md says it works: the service migrates, takes webhooks and actions, reads them
back and reports ready through the pooler; and when PgBouncer goes away the webhooks get 503 with Retry-After, and the service
is back once it returns.

Without the binary the test skips on a laptop and fails under ``CI=true``."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.core.dburl import DatabaseUrl
from tests.conftest import WRITE, MakeClient, fixture_body
from tests.http.test_actions import HOOK
from tests.pgcluster import USER, Cluster, free_port

PGBOUNCER = Path("/usr/sbin/pgbouncer")


class Bouncer:
    """One PgBouncer of the test's own on a free loopback port, in front of the tests' cluster."""

    def __init__(self, cluster: Cluster, root: Path, mode: str) -> None:
        self.port = free_port()
        self.root = root
        self.cluster = cluster
        self.mode = mode
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.mkdir(exist_ok=True)
        (self.root / "users.txt").write_text(f'"{USER}" ""\n')
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.cluster.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.root / 'users.txt'}\n"
            f"pool_mode = {self.mode}\n"
            # session mode: one server connection per client connection the service holds
            "default_pool_size = 20\nmax_client_conn = 200\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
        )
        cmd = [str(PGBOUNCER), str(self.root / "pgbouncer.ini")]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            owner = pwd.getpwnam("postgres")
            for path in [self.root, *self.root.iterdir()]:
                os.chown(path, owner.pw_uid, owner.pw_gid)
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                assert self.proc.stderr is not None
                why = self.proc.stderr.read()
                self.stop()
                raise RuntimeError(f"pgbouncer exited: {why!r}")
            time.sleep(0.05)
        raise RuntimeError("pgbouncer did not listen within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def url(self, dbname: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"


@pytest.fixture
def bouncer(pg_cluster: Cluster) -> Iterator[Bouncer]:
    if not PGBOUNCER.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("pgbouncer is not installed (Debian's pgbouncer): it must run under CI")
        pytest.skip("pgbouncer is not installed")
    # a folder of its own outside pytest's (which only root may enter): PgBouncer runs as
    # the cluster's unprivileged owner when the tests run as root
    b = Bouncer(pg_cluster, Path(tempfile.mkdtemp(prefix="bridge-pgbouncer-")), "session")
    b.start()
    yield b
    b.stop()
    shutil.rmtree(b.root, ignore_errors=True)


async def test_the_service_through_pgbouncer_in_session_mode(
    bouncer: Bouncer, pg_cluster: Cluster, make_client: MakeClient
) -> None:
    # an empty database: the migrations run through the pooler too (their advisory lock
    # is held by one session)
    dbname = pg_cluster.new_database().rsplit("/", 1)[1]
    client: Any = await make_client(
        database_url=DatabaseUrl.parse(bouncer.url(dbname)), db_pool_size=6
    )
    ready = await client.get("/-/ready")
    assert ready.status == 200, await ready.text()
    resp = await client.post(HOOK, json=fixture_body("firing-group-bearer.json"))
    assert resp.status == 200, await resp.text()
    incident = (await resp.json())["incidents"][0]["id"]
    resp = await client.post(
        f"/api/v1/incidents/{incident}/acknowledge", json={"actor": "alice"}, headers=WRITE
    )
    assert resp.status == 200, await resp.text()
    # many reads at once, more than the read pool's connections
    answers = await asyncio.gather(
        *(client.get(f"/api/v1/incidents/{incident}", headers=WRITE) for _ in range(20))
    )
    assert {a.status for a in answers} == {200}
    shown = await answers[0].json()
    assert shown["status"] == "acknowledged"

    # PgBouncer gone: a webhook is a 503 with Retry-After (Alertmanager retries), never a 500
    bouncer.stop()
    resp = await client.post(HOOK, json=fixture_body("partially-resolved.json"))
    assert resp.status == 503, await resp.text()
    assert resp.headers.get("Retry-After")
    # back: the same webhook is taken
    bouncer.start()
    deadline = time.monotonic() + 20
    while True:
        resp = await client.post(HOOK, json=fixture_body("partially-resolved.json"))
        if resp.status == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    assert resp.status == 200, await resp.text()
    resp = await client.post(HOOK, json=fixture_body("resolved-last.json"))
    assert resp.status == 200, await resp.text()
    shown = await (await client.get(f"/api/v1/incidents/{incident}", headers=WRITE)).json()
    assert shown["status"] == "mitigated"
