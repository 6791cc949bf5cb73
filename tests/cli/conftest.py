"""What the CLI tests share: the developer's own ``INCIDENT_BRIDGE_*`` settings kept out, one
real ``serve`` process a module (flags from a module's own ``bridge_args``), a command run
in-process through ``main()``, and an incident opened by a webhook."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bridge.cli import main
from tests.integration.procs import Bridge


@pytest.fixture
def no_developer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("INCIDENT_BRIDGE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def bridge_args() -> list[str]:
    """The flags ``serve`` gets besides its database; a module overrides it for more."""
    return []


@pytest.fixture(scope="module")
def bridge(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, bridge_args: list[str]
) -> Iterator[Bridge]:
    """One service for the module (no token configured: writes take the one it generates)."""
    running = Bridge(
        tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2]), args=bridge_args
    )
    try:
        yield running.start()
    finally:
        running.stop()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``incident-bridge ARGV`` in-process: exit code, stdout, stderr."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def at(bridge: Bridge) -> list[str]:
    """Where the service is, and its database (its generated token is found beside it)."""
    return ["--url", bridge.url, "--db", str(bridge.db)]
