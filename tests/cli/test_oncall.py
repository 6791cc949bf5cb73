"""``incident-bridge oncall`` against a real ``serve`` with rotations: who is on call as a
table (the API's answer), overrides made, listed and ended through the API, an unknown person
refused with the API's error naming it, ``-o json``."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.cli.conftest import at, run
from tests.integration.procs import Bridge

pytestmark = pytest.mark.usefixtures("no_developer_settings")

RULES = """
targets:
  room: {type: console}
rotations:
  ops:
    members: [amara, bjorn]
    period: daily
route:
  tiers: {incident: room}
  roles:
    commander: {rotation: ops}
"""


@pytest.fixture(scope="module")
def bridge_args(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    rules = tmp_path_factory.mktemp("oncall-rules") / "rules.yaml"
    rules.write_text(RULES)
    return ["--rules", str(rules)]


def rfc3339(seconds_from_now: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds_from_now, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def oncall(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run(capsys, "oncall", *args)


def test_who_is_on_call_and_an_override_made_listed_and_ended(
    bridge: Bridge, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    api = bridge.get_json("/api/v1/oncall")["rotations"][0]
    holder, other = api["now"]["person"], api["next"]["person"]
    code, out, err = oncall(capsys, *at(bridge))
    assert (code, err) == (0, "")
    header, row = out.splitlines()
    assert header.split() == ["ROTATION", "ON", "CALL", "SINCE", "HANDS", "OFF", "NEXT"]
    assert row.split()[:2] == ["ops", holder] and row.split()[-1] == other

    until = rfc3339(3600)
    code, out, err = oncall(
        capsys, "override", "add", "ops", other, "--until", until, "--reason", "swap",
        "--as", "lead", *at(bridge),
    )  # fmt: skip
    assert (code, err) == (0, "") and out.startswith("override #1: ") and other in out
    code, out, _ = oncall(capsys, *at(bridge))
    assert out.splitlines()[1].split()[1] == other
    code, out, _ = oncall(capsys, "override", "list", "ops", *at(bridge))
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["ID", "PERSON", "FROM"]
    assert lines[1].split()[:2] == ["#1", other] and "lead" in lines[1] and "swap" in lines[1]

    code, out, err = oncall(capsys, "override", "end", "ops", "1", *at(bridge))
    assert (code, err) == (0, "") and out.startswith("override #1: ends ")
    assert oncall(capsys, "override", "list", "ops", *at(bridge))[1] == "no overrides\n"
    # the service's flags may stand before the subcommand too
    assert oncall(capsys, *at(bridge), "override", "list", "ops") == (0, "no overrides\n", "")
    code, out, _ = oncall(capsys, "override", "list", "ops", "--all", "-o", "json", *at(bridge))
    (kept,) = json.loads(out)["overrides"]
    assert kept["ended_by"] and kept["reason"] == "swap" and kept["created_by"] == "lead"
    assert bridge.get_json("/api/v1/oncall")["rotations"][0]["now"]["person"] == holder


def test_bad_overrides_fail_with_the_api_naming_the_field(
    bridge: Bridge, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = oncall(
        capsys, "override", "add", "ops", "zed", "--until", rfc3339(600), *at(bridge)
    )
    assert (code, out) == (1, "") and "person" in err and "zed" in err
    code, _, err = oncall(
        capsys, "override", "add", "ops", "amara", "--until", rfc3339(-600), *at(bridge)
    )
    assert code == 1 and "end" in err
    code, _, err = oncall(capsys, "override", "add", "nope", "amara", "--until", rfc3339(600),
                          *at(bridge))  # fmt: skip
    assert code == 1 and "nope" in err
    code, _, err = oncall(capsys, "--at", "yesterday", *at(bridge))
    assert code == 1 and "at" in err
