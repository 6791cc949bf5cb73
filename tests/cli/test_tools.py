"""The commands beside `serve`: template previews, template checks, and the notifications
commands against a running service."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import main
from tests.conftest import fixture_body
from tests.integration.procs import Bridge


def test_template_render_previews_a_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    incident = tmp_path / "incident.json"
    incident.write_text(json.dumps({"title": "Checkout <b>down</b>", "severity": "sev1"}))
    assert main(["template", "render", "slack_webhook", "opened", "--incident", str(incident)]) == 0
    out = capsys.readouterr().out
    assert "Checkout &lt;b&gt;down&lt;/b&gt;" in out  # escaped for Slack
    with pytest.raises(SystemExit) as usage:  # bad usage: exit 2, as docs/cli.md says
        main(["template", "render", "nosuch", "opened"])
    assert usage.value.code == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err


def test_rules_check_renders_every_template(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = tmp_path / "templates" / "slack"
    broken.mkdir(parents=True)
    (broken / "opened.j2").write_text("line one\n{{ incident.no_such_field }}\n")
    root = Path(__file__).resolve().parents[2]
    assert main(["rules", "check", "--no-secrets", str(root / "rules")]) == 0
    capsys.readouterr()
    code = main(
        [
            "rules",
            "check",
            "--no-secrets",
            str(root / "rules"),
            "--templates",
            str(tmp_path / "templates"),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "slack/opened.j2:2: UndefinedError" in err


def test_notifications_commands_against_a_running_service(tmp_path: Path) -> None:
    bridge = Bridge(
        tmp_path / "b",
        args=["--rules", str(tmp_path / "rules.yaml")],
        env={"HOOK_URL": "http://127.0.0.1:9/unreachable"},
    )
    (tmp_path / "rules.yaml").write_text(
        "targets:\n  hook: {type: webhook, url: '${HOOK_URL}'}\n"
        "route:\n  name: default\n  tiers: {general: [hook]}\n"
    )
    bridge.start()
    try:
        assert bridge.post_webhook(fixture_body("ha-pair-single-delivery.json")).status == 200

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            # The token the service generated is found beside its database (--db).
            cmd = [sys.executable, "-m", "bridge", "notifications", *args, "--url", bridge.url]
            return subprocess.run(
                [*cmd, "--db", str(bridge.db)],
                capture_output=True,
                text=True,
                timeout=30,
            )

        listed = cli("list", "-o", "json")
        assert listed.returncode == 0, listed.stderr
        [row] = json.loads(listed.stdout)
        assert (row["target"], row["event"]) == ("hook", "opened")
        text = cli("list")
        assert f"{row['id']:>6}" in text.stdout and "hook/general opened" in text.stdout
        refused = cli("retry", str(row["id"]))  # not dead: refused, exit 1
        assert refused.returncode == 1 and "only dead ones" in refused.stderr
        assert cli("retry", "999").returncode == 1
        bad = subprocess.run(
            [
                sys.executable,
                "-m",
                "bridge",
                "notifications",
                "list",
                "--url",
                "file:///etc/passwd",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert bad.returncode != 0 and "http://" in bad.stderr
    finally:
        bridge.stop()
