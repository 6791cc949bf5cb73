"""The files beside the database are the service's own: a token planted by another user, a
symbolic link at a token's, key's or lock's name, a file others can read, a hard link, and a
folder others can write are refused with a message naming the file and the fix, and nothing
outside the folder is read as a secret, truncated or overwritten."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import (
    ConfigError,
    Settings,
    add_serve_arguments,
    api_token_path,
    settings_from,
    validate,
)
from bridge.core.secrets import Secret
from bridge.http.session import ensure_key, key_path
from bridge.private_files import UnsafeFile, read_private, write_private
from bridge.service import ensure_api_token
from bridge.store import Store, StoreError

PUBLIC = "a-public-text-that-everyone-can-read-0123456789"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o700)
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the database's folder that anyone can read (e.g. /etc/hostname)."""
    path = tmp_path / "public.txt"
    path.write_text(PUBLIC + "\n")
    path.chmod(0o644)
    return path


def planted_by_another_user(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root, the file is given to another uid; otherwise the service believes it runs as
    another user than the file's owner (the same check either way)."""
    if os.geteuid() == 0:
        os.chown(path, 54321, -1)
    else:
        real = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: real + 1)


def test_a_symlink_at_the_token_path_is_not_the_write_token(folder: Path, outside: Path) -> None:
    settings = Settings(db=folder / "bridge.db")
    api_token_path(settings.db).symlink_to(outside)
    with pytest.raises(StoreError, match="symbolic link"):
        ensure_api_token(settings)
    with pytest.raises(ConfigError, match=r"bridge\.db\.api-token is a symbolic link"):
        validate(settings)
    assert outside.read_text() == PUBLIC + "\n"


def test_a_token_planted_by_another_user_is_refused(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(db=folder / "bridge.db")
    path = api_token_path(settings.db)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"planted-token-0123456789abcdef\n")
    os.close(fd)
    planted_by_another_user(path, monkeypatch)
    with pytest.raises(StoreError, match="belongs to another user"):
        ensure_api_token(settings)


def test_a_token_file_others_can_read_or_a_hard_link_is_refused(folder: Path) -> None:
    settings = Settings(db=folder / "bridge.db")
    path = api_token_path(settings.db)
    path.write_text("readable-token-0123456789abcdef\n")
    path.chmod(0o644)
    with pytest.raises(StoreError, match=r"chmod 600"):
        ensure_api_token(settings)
    path.chmod(0o600)
    os.link(path, folder / "another-name")
    with pytest.raises(StoreError, match="hard link"):
        ensure_api_token(settings)
    os.unlink(folder / "another-name")
    assert ensure_api_token(settings) == Secret("readable-token-0123456789abcdef")


def test_a_new_token_and_key_are_private_files_made_aside(folder: Path) -> None:
    settings = Settings(db=folder / "bridge.db")
    token = ensure_api_token(settings)
    key = ensure_key(settings.db)
    for path in (api_token_path(settings.db), key_path(settings.db)):
        st = path.lstat()
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert token is not None and ensure_api_token(settings) == token  # read back, same
    assert ensure_key(settings.db) == key
    assert sorted(p.name for p in folder.iterdir()) == [
        "bridge.db.api-token",
        "bridge.db.session-key",
    ], "no temporary file is left behind"


def test_a_symlink_at_the_session_key_is_neither_read_nor_overwritten(
    folder: Path, outside: Path, tmp_path: Path
) -> None:
    db = folder / "bridge.db"
    key_path(db).symlink_to(outside)  # long enough to have been taken as the key before
    with pytest.raises(StoreError, match="symbolic link"):
        ensure_key(db)
    short = tmp_path / "victim.txt"
    short.write_text("short\n")
    key_path(db).unlink()
    key_path(db).symlink_to(short)  # too short for a key: it was overwritten before
    with pytest.raises(StoreError, match="symbolic link"):
        ensure_key(db)
    assert short.read_text() == "short\n" and outside.read_text() == PUBLIC + "\n"


def test_a_symlink_at_the_lock_does_not_truncate_its_target(folder: Path, outside: Path) -> None:
    db = folder / "bridge.db"
    (folder / "bridge.db.lock").symlink_to(outside)
    store = Store(db)
    with pytest.raises(StoreError, match="symbolic link"):
        store.open()
    assert outside.read_text() == PUBLIC + "\n"
    with pytest.raises(ConfigError, match=r"bridge\.db\.lock is a symbolic link"):
        validate(Settings(db=db))


def test_write_private_replaces_a_symlink_and_never_writes_through_it(
    folder: Path, outside: Path
) -> None:
    path = folder / "secret"
    path.symlink_to(outside)
    with pytest.raises(UnsafeFile, match="symbolic link; remove it"):
        read_private(path)
    write_private(path, "new-secret")
    assert not path.is_symlink() and read_private(path) == "new-secret"
    assert outside.read_text() == PUBLIC + "\n"


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o730, 0o702])
def test_a_database_folder_others_can_write_stops_the_start(
    tmp_path: Path,
    mode: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(mode)
    if mode & 0o020 and not mode & 0o002:  # a group that is not the service's own
        monkeypatch.setattr(os, "getegid", lambda: folder.stat().st_gid + 1)
    db = folder / "bridge.db"
    with pytest.raises(ConfigError, match=rf"--db: the database folder {folder} can be written"):
        validate(Settings(db=db))
    code = main(["serve", "--db", str(db), "--listen", "127.0.0.1:0"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(folder) in err and "chmod go-w" in err
    assert list(folder.iterdir()) == [], "nothing was made in it"
    with pytest.raises(StoreError, match="can be written by other users"):
        Store(db).open()


def test_the_services_own_group_may_write_the_folder(tmp_path: Path) -> None:
    """Kubernetes' fsGroup (the pod's runAsGroup) makes the volume group-writable."""
    folder = tmp_path / "volume"
    folder.mkdir()
    os.chown(folder, -1, os.getegid())
    folder.chmod(0o2770)
    settings = settings_from_db(folder / "bridge.db")
    assert settings.db == folder / "bridge.db"


def settings_from_db(db: Path) -> Settings:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return settings_from(parser.parse_args(["--db", str(db)]), env={})
