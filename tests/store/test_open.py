"""Opening the database: one service per file, never a foreign or damaged file changed, and a
damaged file while serving reported, not served as healthy."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.core.secrets import Secret
from bridge.service import AppState
from bridge.store import Store, StoreError
from tests.conftest import MakeClient, fixture_bytes
from tests.integration.procs import Bridge

TOKEN = "open-test-token"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def serve(db: Path | str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_BRIDGE_")}
    cmd = [sys.executable, "-m", "bridge", "serve", "--listen", "127.0.0.1:0", "--db", str(db)]
    return subprocess.run(
        [*cmd, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )


def damage(path: Path, from_page: int = 2) -> None:
    """Overwrite every page after the first few with bytes that are no B-tree page."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        for offset in range(4096 * from_page, size, 4096):
            f.seek(offset)
            f.write(bytes([0xA5]) * 4096)


def test_a_second_store_on_the_same_database_is_refused(tmp_path: Path) -> None:
    first = Store(tmp_path / "x.db")
    first.open()
    try:
        with pytest.raises(StoreError) as err:
            Store(tmp_path / "x.db").open()
        assert str(tmp_path / "x.db") in str(err.value)
        assert f"pid {os.getpid()}" in str(err.value)
    finally:
        first.close()
    again = Store(tmp_path / "x.db")  # released at close
    again.open()
    again.close()


def test_a_second_service_on_the_same_database_refuses_to_start(tmp_path: Path) -> None:
    bridge = Bridge(tmp_path / "one").start()
    try:
        second = serve(bridge.db, tmp_path)
        assert second.returncode == 1
        assert str(bridge.db) in second.stderr
        assert bridge.proc is not None and f"pid {bridge.proc.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        # The first one is untouched and still takes webhooks.
        assert bridge.post_webhook(fixture_bytes("firing-group-bearer.json")).status == 200
    finally:
        assert bridge.stop() == 0


def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "customers.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StoreError, match="is not an incident-bridge database") as err:
        Store(path).open()
    assert "customers" in str(err.value)
    assert digest(path) == before
    assert not Path(f"{path}-wal").exists()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_a_damaged_database_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    store = Store(path)
    store.open()
    store.close()
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO incidents (key, title, severity, status, started_at, opened_at) "
        "VALUES (?, ?, 'sev1', 'triggered', 1, 1)",
        [(f"k{i}", "t" * 300) for i in range(500)],
    )
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    damage(path, from_page=3)
    before = digest(path)
    with pytest.raises(StoreError, match="damaged"):
        Store(path).open()
    assert digest(path) == before
    answer = serve(path, tmp_path)
    assert answer.returncode == 1 and "damaged" in answer.stderr
    assert "Traceback" not in answer.stderr


@pytest.mark.parametrize("kind", ["directory", "random bytes"])
def test_unusable_db_paths_are_one_line_not_a_traceback(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "db"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(os.urandom(8192))
    answer = serve(path, tmp_path)
    # a directory is a mistake in the settings (exit 2, as every setting's); garbage is a
    # database that cannot be opened (1)
    assert answer.returncode == (2 if kind == "directory" else 1), answer.stderr
    assert "Traceback" not in answer.stderr
    lines = [line for line in answer.stderr.splitlines() if line.startswith("incident-bridge:")]
    assert len(lines) == 1 and str(path) in lines[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only tmpfs needs root")
def test_a_database_on_a_read_only_mount_is_one_line(tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)], check=True
    )
    try:
        store = Store(mount / "x.db")
        store.open()
        store.close()
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        answer = serve(mount / "x.db", tmp_path)
        assert answer.returncode == 1, answer.stderr
        assert "Traceback" not in answer.stderr
        assert "incident-bridge: cannot start:" in answer.stderr
        assert str(mount / "x.db") in answer.stderr
    finally:
        subprocess.run(["umount", str(mount)], check=False)


async def test_a_database_damaged_while_serving_is_503_and_not_ready(
    make_client: MakeClient,
) -> None:
    client = await make_client(webhook_token=Secret(TOKEN))
    state: AppState = client.server.app[AppState.KEY]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = fixture_bytes("firing-group-bearer.json")
    assert (await client.post("/api/v1/alerts", data=body, headers=auth)).status == 200

    def fill(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO incidents (key, title, severity, status, started_at, opened_at) "
            "VALUES (?, ?, 'sev1', 'triggered', 1, 1)",
            [(f"k{i}", "t" * 300) for i in range(500)],
        )

    await state.store.write(fill)

    def checkpoint_and_damage() -> None:
        conn = sqlite3.connect(state.store.path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        damage(state.store.path, from_page=3)

    await asyncio.to_thread(checkpoint_and_damage)
    answers: dict[str, Any] = {}
    for url in ("/api/v1/incidents?limit=500", "/api/v1/incidents/2"):
        resp = await client.get(url)
        answers[url] = resp.status
        assert resp.status == 503, url
        assert (await resp.json())["error"] == "store unavailable, retry later"
    resp = await client.get("/metrics")
    assert resp.status == 200
    resp = await client.get("/-/ready")
    assert resp.status == 503
    assert "damaged" in await resp.text()


async def test_a_new_data_directory_and_database_are_private(tmp_path: Path) -> None:
    """Incidents, people and raw webhook bodies: readable by the service's user only."""
    store = Store(tmp_path / "data" / "x.db")
    store.open()
    await store.write(lambda c: c.execute("PRAGMA user_version = 1"))  # -wal and -shm exist
    try:
        assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
        for name in ("x.db", "x.db-wal", "x.db-shm", "x.db.lock"):
            assert (tmp_path / "data" / name).stat().st_mode & 0o777 == 0o600, name
    finally:
        store.close()


def test_importing_the_store_leaves_sqlite3_as_it_was(tmp_path: Path) -> None:
    """The identity adapters for None and bytes are set by a store that opens, not by importing
    the store (a tool that only imports it keeps sqlite3's own binding)."""
    script = (
        "import sqlite3, sys\n"
        "import bridge.store, bridge.store.interface\n"
        "keys = [(type(None), sqlite3.PrepareProtocol), (bytes, sqlite3.PrepareProtocol)]\n"
        "before = [k in sqlite3.adapters for k in keys]\n"
        "s = bridge.store.Store(sys.argv[1]); s.open(); s.close()\n"
        "print(before, [k in sqlite3.adapters for k in keys])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "bridge.db")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[False, False] [True, True]"
