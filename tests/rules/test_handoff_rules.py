"""A rotation's ``handoff_to`` (channel messages at each hand-off, docs/oncall.md): loaded into
the rotation, kept when stored overrides are merged, and a bad target reported at
file:line:col (by ``rules check`` too): an unknown name, a type that takes no channel message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.rules import load_rules
from bridge.rules.rotations import Override, with_overrides
from bridge.rules.show import ruleset_dict
from tests.rules.helpers import load_text

RULES = """
targets:
  ops-room: {type: console}
  ops-mail: {type: console, stream: stderr}
rotations:
  primary:
    members: [alice, bob]
    handoff_to: [ops-room, ops-mail]
  secondary:
    members: [carol]
"""

BAD = """
targets:
  ops-room: {type: console}
  pager: {type: pagerduty, routing_key: "${PD_KEY}"}
rotations:
  primary:
    members: [alice, bob]
    handoff_to: [ops-rom, pager]
"""


def test_handoff_to_loads_and_survives_merged_overrides(tmp_path: Path) -> None:
    rules = load_text(tmp_path, RULES)
    primary = rules.rotations["primary"]
    assert primary.handoff_to == ("ops-room", "ops-mail")
    assert rules.rotations["secondary"].handoff_to == ()
    # GET /api/v1/rules and `rules show` show them
    assert ruleset_dict(rules)["rotations"]["primary"]["handoff_to"] == ["ops-room", "ops-mail"]
    bob = primary.members[1]
    merged = with_overrides(primary, (Override(0, 10, bob),))
    assert merged.handoff_to == ("ops-room", "ops-mail")
    assert merged.overrides[0] == Override(0, 10, bob)


def test_a_bad_handoff_target_is_an_error_at_its_place(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(BAD))
    result = load_rules([path], env={"PD_KEY": "pd-secret-0123"})
    assert result.ruleset is None
    assert result.errors == [
        f'{path}:8:18: rotation "primary": handoff_to: unknown target "ops-rom" '
        '(did you mean "ops-room"?)',
        f'{path}:8:27: rotation "primary": handoff_to: target "pager" is of type pagerduty, '
        "which takes no channel messages (types that do: console, discord, email, mattermost, "
        "msteams, slack, slack_webhook, telegram, webhook)",
    ]


def test_rules_check_reports_a_bad_handoff_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(BAD))
    monkeypatch.setenv("PD_KEY", "pd-secret-0123")
    assert main(["rules", "check", str(path)]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert f'{path.name}:8:18: rotation "primary": handoff_to: unknown target "ops-rom"' in text
    assert "pd-secret-0123" not in text
