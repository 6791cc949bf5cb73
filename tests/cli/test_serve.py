"""``incident-bridge serve``'s own refusals, before the service starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.procs import _clean_env


def test_a_db_that_is_a_directory_is_said_so_exit_2(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o700)
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "serve", "--db", str(folder), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(),
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"incident-bridge: --db {folder}: is a directory; give the database file's path "
        f"(for example {folder / 'incident-bridge.db'})\n"
    )
