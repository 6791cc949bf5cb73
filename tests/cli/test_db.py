"""``incident-bridge db backup|check`` on a database an open Store is writing
(``bridge/store/backup.py``, ``bridge/cli/db.py``)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.store import Store
from bridge.store.backup import BackupError, backup, check
from bridge.store.migrations import MIGRATIONS
from tests.conftest import SECOND, T0, fixture_body
from tests.store.test_store import counts, ingest

KNOWN = [name for name, _ in MIGRATIONS]


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    opened = Store(tmp_path / "data" / "bridge.db")
    opened.open()
    await ingest(opened, fixture_body("firing-group-bearer.json"))
    return opened


async def test_backup_of_an_open_store_is_a_checked_single_file(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        dest = tmp_path / "backups" / "b.db"
        dest.parent.mkdir()
        assert main(["db", "backup", "--db", str(store.path), str(dest)]) == 0
        out = capsys.readouterr().out
        assert f"to {dest}" in out and "integrity ok" in out and KNOWN[-1] in out
        # One self-contained file, private like the database, nothing left beside it.
        assert sorted(p.name for p in dest.parent.iterdir()) == ["b.db"]
        assert dest.stat().st_mode & 0o777 == 0o600
        conn = sqlite3.connect(dest)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        conn.close()
        assert counts(dest) == counts(store.path)

        # An existing PATH is kept unless --force.
        await ingest(store, fixture_body("resolved-last.json"), now=T0 + 60 * SECOND)
        assert main(["db", "backup", "--db", str(store.path), str(dest)]) == 2
        assert f"{dest} exists; give --force" in capsys.readouterr().err
        assert counts(dest) != counts(store.path)
        assert main(["db", "backup", "--db", str(store.path), str(dest), "--force"]) == 0
        assert counts(dest) == counts(store.path)
    finally:
        store.close()


async def test_check_beside_a_running_store(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        assert main(["db", "check", "--db", str(store.path)]) == 0
        out = capsys.readouterr().out
        assert "integrity ok" in out and f"latest {KNOWN[-1]}" in out and "pending" not in out
        assert main(["db", "check", "--db", str(store.path), "-o", "json"]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer["ok"] and answer["applied"] == KNOWN and answer["pending"] == []
    finally:
        store.close()


def test_check_reports_pending_and_newer_migrations(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)")
    conn.execute("INSERT INTO _migrations VALUES ('0001_initial', 1), ('9999_future', 2)")
    conn.close()
    result = check(path)
    assert result.pending == KNOWN[1:]
    assert result.unknown == ["9999_future"]
    assert not result.ok


def test_errors_name_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.db"
    assert main(["db", "check", "--db", str(missing)]) == 1
    assert f"no database at {missing}" in capsys.readouterr().err
    assert main(["db", "backup", "--db", str(missing), str(tmp_path / "b.db")]) == 1
    assert f"no database at {missing}" in capsys.readouterr().err

    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(BackupError, match=f"{foreign} is not an incident-bridge database"):
        backup(foreign, tmp_path / "b.db")
    assert not (tmp_path / "b.db").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 400)
    assert main(["db", "check", "--db", str(garbage)]) == 1
    assert f"cannot read the database {garbage}" in capsys.readouterr().err

    with pytest.raises(BackupError, match=f"no directory {tmp_path / 'nowhere'}"):
        backup(foreign, tmp_path / "nowhere" / "b.db")
    with pytest.raises(BackupError, match=f"{foreign} is the database itself"):
        backup(foreign, foreign, force=True)
    with pytest.raises(BackupError, match=f"{tmp_path} is a directory"):
        backup(foreign, tmp_path, force=True)


def test_a_damaged_database_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "d.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)")
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.execute("CREATE INDEX t_x ON t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(f"row {i}",) for i in range(2000)])
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 't_x'").fetchone()[0]
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    # Scribble over the index's root page: the file opens, the index is no b-tree any more.
    with path.open("r+b") as f:
        f.seek((root - 1) * page)
        f.write(b"\xff" * page)
    result = check(path)
    assert result.problems and not result.ok
    assert main(["db", "check", "--db", str(path)]) == 1
    assert f"{path}: integrity check FAILED" in capsys.readouterr().out
