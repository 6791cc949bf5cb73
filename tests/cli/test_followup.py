"""``incident-bridge incident followup|item|check|waive|reopen-item`` against a real ``serve``:
the follow-up opens as soon as the incident is mitigated by hand (the scheduler is woken), and
people work its checklist from the terminal."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.cli.conftest import at
from tests.cli.test_incident import cli, open_incident
from tests.integration.procs import Bridge

pytestmark = pytest.mark.usefixtures("no_developer_settings")


def test_the_checklist_from_the_terminal(
    bridge: Bridge, capsys: pytest.CaptureFixture[str]
) -> None:
    n = open_incident(bridge, "queue backlog")
    flags = at(bridge)
    code, _, err = cli(capsys, "followup", str(n), *flags)
    assert code == 1 and "has no follow-up" in err
    assert cli(capsys, "mitigate", str(n), *flags)[0] == 0
    deadline = time.monotonic() + 10
    while True:  # opened by the scheduler, woken by the mitigation: well before its 15 s tick
        code, out, err = cli(capsys, "followup", str(n), *flags)
        if code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert code == 0, err
    assert f"follow-up      #{n}, 3 item(s) open\n" in out
    # The names and their values apart, whatever the longest name.
    assert re.search(r"^stabilization  until \S+ \S+Z$", out, re.M), out
    rows = [line for line in out.splitlines() if re.match(r"\d+\s+open", line)]
    assert [r.split()[2] for r in rows] == ["check", "validate", "review"]
    first = int(rows[0].split()[0])

    code, out, err = cli(capsys, "item", str(n), "Page", "the", "DBA", "team", "--action",
                         "--owner", "bob", *flags)  # fmt: skip
    assert code == 0, err
    assert out.strip().startswith(f"#{n} Follow-up item added: Page the DBA team")
    # The count is of the rows shown: the action item is open too, and says why it is apart.
    code, out, _ = cli(capsys, "followup", str(n), *flags)
    rows = [line for line in out.splitlines() if re.match(r"\d+\s+open", line)]
    assert len(rows) == 4
    assert (
        f"follow-up      #{n}, 4 item(s) open (1 of them an action item, tracked in its ticket)"
        in out
    )
    code, out, _ = cli(capsys, "check", str(n), str(first), "--note", "filed", *flags)
    assert (code, out.strip()) == (
        0,
        f"#{n} Follow-up item done: File follow-up tickets for the permanent fixes (filed)",
    )
    code, out, _ = cli(capsys, "check", str(n), str(first), *flags)
    assert (code, out.strip()) == (0, f"#{n}: nothing to change (the item is already done)")
    code, _, err = cli(capsys, "waive", str(n), str(first + 2), *flags)
    assert code == 2 and "--reason" in err
    code, out, _ = cli(capsys, "waive", str(n), str(first + 2), "--reason", "no alerts", *flags)
    assert code == 0 and "waived" in out
    code, out, _ = cli(capsys, "reopen-item", str(n), str(first + 2), *flags)
    assert code == 0 and "opened again" in out
    code, _, err = cli(capsys, "check", str(n), "9999", *flags)
    assert code == 1 and "no follow-up item 9999" in err

    code, out, _ = cli(capsys, "followup", str(n), "-o", "json", *flags)
    view = json.loads(out)
    assert view == bridge.get_json(f"/api/v1/incidents/{n}/followup")
    assert [i["state"] for i in view["items"]] == ["done", "open", "open", "open"]
    assert (view["items"][3]["kind"], view["items"][3]["owner"]) == ("action", "bob")


RULES_SHORT_WINDOW = """\
targets:
  out: {type: console}
route:
  name: root
  severity: sev3
  tiers: {general: [out]}
  follow_up:
    stabilization: 3s
"""


def test_a_window_under_a_minute_is_said_in_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_SHORT_WINDOW)
    running = Bridge(tmp_path / "bridge", args=["--rules", str(rules)])
    try:
        bridge = running.start()
        n = open_incident(bridge, "short window")
        flags = at(bridge)
        assert cli(capsys, "mitigate", str(n), *flags)[0] == 0
        deadline = time.monotonic() + 20
        texts: list[str] = []
        while time.monotonic() < deadline:  # opened at once, validated after the 3 s window
            texts = [e["text"] for e in bridge.incident(n)["timeline"]]
            if any(t.startswith("Validation") for t in texts):
                break
            time.sleep(0.2)
        assert any(t.startswith("Follow-up opened: 3 item(s), stabilization 3 s") for t in texts)
        assert "Validation passed: quiet for 3 s" in texts, texts
        code, out, _ = cli(capsys, "show", str(n), *flags)
        assert code == 0 and "stabilization 3 s" in out and "0 min" not in out
    finally:
        running.stop()
