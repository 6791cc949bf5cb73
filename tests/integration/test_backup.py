"""Backup and restore against a real ``incident-bridge serve``: ``db backup`` while webhooks are
being posted, the copy restored into a new directory and served, and every webhook answered 200
before the backup began is there (docs/deploy.md, "Backup and restore")."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bridge.store.backup import PAGES_PER_STEP
from tests.integration.procs import Bridge, _clean_env, running_bridge
from tests.integration.test_metrics import payload

# Enough rows that the copy takes several of its 1 MiB steps while the writer commits.
PRELOAD = 400
NOTE = "x" * 2000


class Poster(threading.Thread):
    """Posts one new incident's webhook after another; records when each was answered 200."""

    def __init__(self, bridge: Bridge, started: datetime) -> None:
        super().__init__(daemon=True)
        self.bridge = bridge
        self.started = started
        self.acked: list[tuple[float, str]] = []
        self.failed: list[tuple[str, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            name = f"Backup{n:05d}"
            body = payload(name, self.started)
            body["alerts"][0]["annotations"]["description"] = NOTE
            status = self.bridge.post_webhook(body).status
            if status == 200:
                self.acked.append((time.monotonic(), name))
            else:
                self.failed.append((name, status))
            n += 1

    def count(self) -> int:
        return len(self.acked)


def _names(bridge: Bridge) -> set[str]:
    """The alertnames of the incidents (the built-in policy's titles start with it)."""
    return {i["title"].split()[0] for i in bridge.incidents()}


def test_a_backup_under_load_restores_every_acknowledged_webhook(tmp_path: Path) -> None:
    started = datetime.now(UTC) - timedelta(minutes=5)
    backup = tmp_path / "backups" / "incident-bridge.db"
    backup.parent.mkdir()
    with running_bridge(tmp_path / "live") as bridge:
        poster = Poster(bridge, started)
        poster.start()
        try:
            deadline = time.monotonic() + 60
            while poster.count() < PRELOAD and time.monotonic() < deadline:
                time.sleep(0.05)
            assert poster.count() >= PRELOAD, (poster.count(), poster.failed[:5])
            began = time.monotonic()
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bridge",
                    "db",
                    "backup",
                    "--db",
                    str(bridge.db),
                    str(backup),
                ],
                capture_output=True,
                text=True,
                env=_clean_env(),
                timeout=60,
            )
            ended = time.monotonic()
            # db check beside the running service, under the same load: read-only, sound.
            live_check = subprocess.run(
                [sys.executable, "-m", "bridge", "db", "check", "--db", str(bridge.db)],
                capture_output=True,
                text=True,
                env=_clean_env(),
                timeout=60,
            )
            # The load went on through the copy.
            time.sleep(0.2)
        finally:
            poster.stop.set()
            poster.join(30)
        assert done.returncode == 0, done.stderr
        assert "integrity ok" in done.stdout
        # Several of the copy's steps, with the writer committing between them.
        pages = int(re.search(r"(\d+) pages", done.stdout).group(1))  # type: ignore[union-attr]
        assert pages > 2 * PAGES_PER_STEP, done.stdout
        assert not poster.failed, poster.failed[:5]
        assert live_check.returncode == 0, live_check.stdout + live_check.stderr
        assert "integrity ok" in live_check.stdout
        during = [name for at, name in poster.acked if began < at < ended]
        assert during, "no webhook was answered while the backup ran"
        before = {name for at, name in poster.acked if at < began}
        assert len(before) >= PRELOAD
        live = _names(bridge)

    # The copy as a file: integrity_check, and db check's verdict.
    conn = sqlite3.connect(backup)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    checked = subprocess.run(
        [sys.executable, "-m", "bridge", "db", "check", "--db", str(backup)],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # Restore: a new directory, the backup copied in as the database, serve started on it.
    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    shutil.copy2(backup, restored / "incident-bridge.db")
    with running_bridge(restored) as again:
        names = _names(again)
        assert before <= names, sorted(before - names)[:5]
        # Nothing the live service did not have, and each incident once.
        assert names <= live
        assert len(again.incidents()) == len(names)
        # The restored service takes webhooks again.
        assert again.post_webhook(payload("AfterRestore", started)).status == 200
        assert "AfterRestore" in _names(again)
