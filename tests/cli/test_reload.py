"""``incident-bridge rules reload``: the running service loads its rule files again, asked with
the token it generated beside its database, as the README says to do it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import run as run_main
from tests.integration.procs import Bridge
from tests.test_reload import BROKEN, RULES_A

RULES_B = RULES_A.replace("root-a", "root-b")


pytestmark = pytest.mark.usefixtures("no_developer_settings")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Bridge, Path]]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_A)
    running = Bridge(tmp_path / "bridge", args=["--rules", str(rules)])
    try:
        yield running.start(), rules
    finally:
        running.stop()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run_main(capsys, "rules", "reload", *args)


def test_reload_finds_the_token_and_says_what_happened(
    served: tuple[Bridge, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bridge, rules = served
    flags = ["--url", bridge.url, "--db", str(bridge.db)]
    before = bridge.get_json("/api/v1/rules")["config_hash"]
    rules.write_text(RULES_B)
    code, out, err = run(capsys, *flags)
    after = bridge.get_json("/api/v1/rules")["config_hash"]
    assert after != before
    assert (code, out, err) == (0, f"SUCCESS: rules reloaded (config {after})\n", "")

    # Invalid rules: every error with its place, exit 1, the rules before stay active.
    rules.write_text(BROKEN)
    code, out, err = run(capsys, *flags)
    assert (code, out) == (1, "")
    first, last = err.splitlines()[0], err.splitlines()[-1]
    assert first.startswith(f"{rules}:7:3:") and "colour" in first
    assert last == (
        "incident-bridge: the rules were not reloaded; the rules loaded before stay active"
    )
    assert bridge.get_json("/api/v1/rules")["config_hash"] == after

    # Without the token (another database's folder): the 401 says how to give one.
    code, _, err = run(capsys, "--url", bridge.url, "--db", str(bridge.workdir / "other.db"))
    assert code == 1 and err.startswith("incident-bridge: 401: ") and "--token-file" in err


def test_reload_of_a_service_that_is_not_there(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--url", "http://127.0.0.1:9")
    assert (code, out) == (1, "")
    assert err.startswith("incident-bridge: cannot reach http://127.0.0.1:9: ")
