"""`rules check` on the paging targets: a Twilio target with no `to` pages only the people whose
handles name it; when nobody's do, it can page nobody, and the check says so."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridge.rules import load_rules

RULES = """
targets:
  phone:
    type: twilio
    account_sid: AC0123456789abcdef0123456789abcdef
    auth_token: ${{TWILIO_AUTH_TOKEN}}
    from: "+14155550100"
    {to}
rotations:
  primary:
    members:
      - {{name: amara, handles: {handles}}}
      - bjorn
route:
  tiers:
    general: [phone]
"""


@pytest.mark.parametrize(
    ("to", "handles", "warned"),
    [
        ("", "{slack: U0AMARA}", True),
        ("", '{phone: "+14155550123"}', False),  # by the target's name
        ("", '{twilio: "+14155550123"}', False),  # by its type
        ('to: "+14155550123"', "{slack: U0AMARA}", False),
    ],
)
def test_a_twilio_target_that_can_page_nobody_is_warned_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, to: str, handles: str, warned: bool
) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "secret-token")
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(RULES.format(to=to, handles=handles)))
    result = load_rules([path])
    assert result.errors == []
    found = [w for w in result.warnings if 'target "phone" pages nobody' in w]
    assert bool(found) is warned
    if warned:
        assert found[0].startswith(f"{path}:3:3: ")
        assert "secret-token" not in found[0]
