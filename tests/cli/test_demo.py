"""``incident-bridge demo`` (``make demo``): a throwaway service and database, a webhook with
fresh times, the incident and its page shown; nothing reaches the user's own database."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bridge.cli.demo import WEBHOOK, fresh_webhook
from bridge.core.timeutil import NS, parse_rfc3339
from tests.conftest import fixture_body
from tests.integration.procs import _clean_env

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_webhook_is_the_captured_one_with_fresh_times() -> None:
    assert fixture_body("firing-group-bearer.json") == WEBHOOK
    now = datetime(2030, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    body = fresh_webhook(now)
    assert [a["startsAt"] for a in body["alerts"]] == [
        "2030-05-01T11:59:58Z",
        "2030-05-01T11:59:59Z",
    ]
    assert {**body, "alerts": []} == {**WEBHOOK, "alerts": []}
    assert WEBHOOK["alerts"][0]["startsAt"].startswith("2026-11-27")  # the original is kept


def test_demo_once_leaves_nothing_behind(tmp_path: Path) -> None:
    own_db = tmp_path / "mine" / "incident-bridge.db"
    started = time.time_ns()
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "demo", "--once"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=_clean_env({"INCIDENT_BRIDGE_DB": str(own_db)}),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    page = re.search(r"^The incident's page: (http://127\.0\.0\.1:\d+)/incidents/(\d+)$", out, re.M)
    assert page, out
    folder = re.search(r"with a throwaway database \((\S+)/demo\.db\)", out)
    assert folder and not Path(folder.group(1)).exists()  # deleted at the end
    assert not own_db.exists() and not own_db.parent.exists()
    # The incident as `incident show` prints it, its first alert started moments ago.
    assert "severity     sev1" in out and "Alerts       2 (2 firing, 0 resolved)" in out
    when = re.search(r"^started\s+(\S+) (\S+)Z", out, re.M)
    assert when, out
    at = parse_rfc3339(f"{when.group(1)}T{when.group(2)}Z")
    assert started - 60 * NS <= at <= time.time_ns()
    # The console target's message was printed by the demo's service, with the page's link.
    assert f"Incident opened: [sev1] #{page.group(2)} " in out
    assert f" url={page.group(1)}/incidents/{page.group(2)} | " in out


def test_make_demo_runs_the_demo() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: install\n\t\$\(BIN\)/incident-bridge demo$", makefile, re.M)
    assert json.dumps(WEBHOOK)  # serialisable as posted
