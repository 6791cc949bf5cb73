"""The README's quick start, run as written against a real service: the webhook it posts opens
an incident that started now (not on the day the webhook was captured), and its reload example
carries the API token it needs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.core.timeutil import NS, parse_rfc3339
from tests.integration.procs import Bridge, _clean_env

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.S)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Bridge]:
    # The README's service: ./data/incident-bridge.db under the folder the commands run in.
    running = Bridge(tmp_path / "data", token=None)
    try:
        yield running.start()
    finally:
        running.stop()


def sh(block: str, bridge: Bridge) -> str:
    if shutil.which("curl") is None and os.environ.get("CI") != "true":
        pytest.skip("curl is not installed")
    (bridge.workdir.parent / "tests").symlink_to(ROOT / "tests")
    script = block.replace("http://127.0.0.1:9096", bridge.url)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=bridge.workdir.parent,
        env=_clean_env(),
        check=False,
    )
    assert done.returncode == 0, (script, done.stderr)
    return done.stdout


def test_the_quick_start_webhook_opens_an_incident_that_started_now(served: Bridge) -> None:
    (block,) = [b for b in BLOCKS if "/api/v1/alerts" in b]
    posted = time.time_ns()
    sh(block, served)
    (incident,) = served.incidents()
    started = parse_rfc3339(incident["started_at"])
    assert posted - 60 * NS <= started <= time.time_ns()


def test_the_readme_reload_example_carries_the_token(served: Bridge) -> None:
    (sentence,) = [p for p in README.split("\n\n") if "/-/reload" in p]
    command = re.search(r"`(curl [^`]*/-/reload)`", sentence.replace("\n", " "))
    assert command, sentence
    assert '"status":"ok"' in sh(command.group(1), served).replace(" ", "")
    # ... and says how to run the command `make run` does not put on the PATH.
    assert "rules reload" in sentence
    assert ".venv/bin/incident-bridge" in README and "source .venv/bin/activate" in README
