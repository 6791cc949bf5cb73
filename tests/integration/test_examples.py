"""The deployment examples users copy, checked with the real tools: ``examples/alertmanager.yml``
with ``amtool check-config`` and as a running Alertmanager that reads the bridge's token from a
file (``credentials_file``), ``examples/incident-bridge.service`` with ``systemd-analyze``."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.integration.procs import (
    EXAMPLE_CONFIG,
    Bridge,
    require_binary,
    running_alertmanagers,
    wait_for,
)
from tests.integration.test_alertmanager import alert, now_rfc3339

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "examples" / "incident-bridge.service"


def _example() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load(EXAMPLE_CONFIG.read_text())
    return loaded


def test_the_alertmanager_example_passes_amtool(amtool_binary: str) -> None:
    result = subprocess.run(
        [amtool_binary, "check-config", str(EXAMPLE_CONFIG)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    config = _example()
    route = config["route"]
    assert route["receiver"] == "incident-bridge"
    assert "instance" not in route["group_by"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "30s",
        "1m",
        "1h",
    )
    ((webhook,),) = [r["webhook_configs"] for r in config["receivers"]]
    assert webhook["url"].endswith("/api/v1/alerts")
    assert webhook["send_resolved"] is True
    assert webhook["http_config"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/etc/alertmanager/incident-bridge-token",
    }


def test_alertmanager_sends_the_token_from_its_credentials_file(
    alertmanager_binary: str, bridge: Bridge, tmp_path: Path
) -> None:
    """The example as it is, but for the bridge's URL, the token file's path and a short
    group_wait: Alertmanager reads the token from the file and the bridge accepts it."""
    token_file = tmp_path / "incident-bridge-token"
    token_file.write_text(f"{bridge.token}\n")
    token_file.chmod(0o600)
    config = _example()
    config["route"]["group_wait"] = "1s"
    ((webhook,),) = [r["webhook_configs"] for r in config["receivers"]]
    webhook["url"] = bridge.url + "/api/v1/alerts"
    webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    text = io.StringIO()
    YAML(typ="safe").dump(config, text)

    name = f"ExampleConfig{uuid.uuid4().hex[:6]}"
    with running_alertmanagers(tmp_path, text.getvalue(), binary=alertmanager_binary) as [am]:
        am.post_alerts([alert(name, "web-1", now_rfc3339())])
        found = wait_for(
            "the incident opened through the example config",
            lambda: [i for i in bridge.incidents() if name in i["key"]],
            timeout=30,
            interval=0.2,
        )
    assert len(found) == 1
    assert "401" not in am.logs()


def test_the_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze")
    # verify checks that ExecStart's binary exists: point it at this venv's console script.
    script = Path(sys.executable).parent / "incident-bridge"
    assert script.exists(), script
    unit = tmp_path / "incident-bridge.service"
    unit.write_text(
        UNIT.read_text().replace("/opt/incident-bridge/bin/incident-bridge", str(script))
    )
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stdout + result.stderr
    text = UNIT.read_text()
    for option in (
        "DynamicUser=yes",
        "StateDirectory=incident-bridge",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ):
        assert f"\n{option}\n" in text, option
    # systemd's own score of the sandbox (0 best, 10 worst; --threshold counts tenths): 1.5
    # when written.
    security = subprocess.run(
        [analyze, "security", "--offline=true", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr
