"""``examples/docker-compose.yml``: Docker Compose (Debian's ``docker-compose``) takes it as
valid, and it wires what docs/deploy.md says: the bridge built from the top-level Dockerfile
with a read-only root and its database on a volume, and Alertmanager in the bridge's network
namespace reading examples/alertmanager.yml unchanged, with the token file where that
configuration's ``credentials_file`` says and where the bridge reads its webhook token."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.integration.procs import require_binary

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
COMPOSE = EXAMPLES / "docker-compose.yml"


def _load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def _config(path: Path) -> subprocess.CompletedProcess[str]:
    binary = require_binary("docker-compose")
    return subprocess.run(
        [binary, "-f", str(path), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=path.parent,
    )


def test_compose_takes_the_file_and_refuses_a_broken_one(tmp_path: Path) -> None:
    done = _config(COMPOSE)
    assert done.returncode == 0, done.stderr
    broken = tmp_path / "docker-compose.yml"
    shutil.copy(EXAMPLES / "alertmanager.yml", tmp_path / "alertmanager.yml")
    broken.write_text(COMPOSE.read_text().replace("read_only:", "read_onyl:"))
    done = _config(broken)
    assert done.returncode != 0 and "read_onyl" in done.stderr


def test_the_services_are_wired_as_documented() -> None:
    compose: dict[str, Any] = _load(COMPOSE)
    bridge, am = compose["services"]["incident-bridge"], compose["services"]["alertmanager"]
    assert bridge["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert (EXAMPLES / bridge["build"]["context"] / "Dockerfile").exists()
    assert bridge["read_only"] is True and "/tmp" in bridge["tmpfs"]
    assert "incident-bridge-data:/data" in bridge["volumes"]
    assert am["network_mode"] == "service:incident-bridge"
    assert "./alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro" in am["volumes"]
    config = _load(EXAMPLES / "alertmanager.yml")
    hook = config["receivers"][0]["webhook_configs"][0]
    # The example posts to the loopback address: true in the shared network namespace.
    assert hook["url"] == "http://127.0.0.1:9096/api/v1/alerts"
    token_path = hook["http_config"]["authorization"]["credentials_file"]
    assert f"./incident-bridge-token:{token_path}:ro" in am["volumes"]
    bridge_token = bridge["command"][bridge["command"].index("--webhook-token-file") + 1]
    assert f"./incident-bridge-token:{bridge_token}:ro" in bridge["volumes"]
    # Alertmanager's API is reached the same way (the shared namespace): docs/reconcile.md
    am_url = bridge["command"][bridge["command"].index("--alertmanager-url") + 1]
    assert am_url == "http://127.0.0.1:9093"
