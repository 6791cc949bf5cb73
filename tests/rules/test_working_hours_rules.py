"""A rotation's working hours in the rules (``working_hours``): loaded into the rotation,
09:00-18:00 Monday to Friday when absent, bad ones reported at file:line:col; the insights
count a person's interruptions against their rotation's (the first naming them, by name)."""

from __future__ import annotations

import textwrap
from datetime import time
from pathlib import Path
from types import SimpleNamespace

from bridge.core.insights import WorkingHours
from bridge.rules import load_rules
from bridge.service.insights import working_hours_of, zones_of
from tests.rules.helpers import load_text

RULES = """
route:
  name: root
rotations:
  b-early:
    members: [ana, bo]
    timezone: Europe/Berlin
    working_hours: {start: "07:30", end: "16:00", days: [mon, tue, wed, thu]}
  a-plain:
    members: [cy]
  c-late:
    members: [ana]
    working_hours: {start: "12:00", end: "20:00", days: [Sat, sun]}
"""


def test_working_hours_load_per_rotation_with_the_default_for_none(tmp_path: Path) -> None:
    rules = load_text(tmp_path, RULES)
    assert rules.rotations["b-early"].working_hours == WorkingHours(
        time(7, 30), time(16, 0), frozenset({0, 1, 2, 3})
    )
    assert rules.rotations["a-plain"].working_hours == WorkingHours()
    assert rules.rotations["c-late"].working_hours.days == frozenset({5, 6})
    assert rules.rotations["b-early"].working_hours.describe() == "07:30-16:00 Mon-Thu"
    assert rules.rotations["c-late"].working_hours.describe() == "12:00-20:00 Sat-Sun"
    # a person in two rotations: the first by name counts, as for the time zone
    runtime = SimpleNamespace(rotations=rules.rotations)
    hours = working_hours_of(runtime)  # type: ignore[arg-type]
    assert hours["ana"] == rules.rotations["b-early"].working_hours
    assert zones_of(runtime)["ana"] == "Europe/Berlin"  # type: ignore[arg-type]
    assert hours["cy"] == WorkingHours()


def _errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text))
    result = load_rules([path], env={})
    assert result.ruleset is None
    return result.errors


def test_bad_working_hours_are_errors_at_their_place(tmp_path: Path) -> None:
    errors = _errors(
        tmp_path,
        """\
        route:
          name: root
        rotations:
          ops:
            members: [ana]
            working_hours:
              start: "18:00"
              end: "09:00"
        """,
    )
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{tmp_path / 'rules.yaml'}:8:"), errors
    assert "must come after their start" in errors[0]
    errors = _errors(
        tmp_path,
        """\
        route:
          name: root
        rotations:
          ops:
            members: [ana]
            working_hours: {days: [mon, fry]}
        """,
    )
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{tmp_path / 'rules.yaml'}:6:"), errors
    assert "must be a day: mon, tue" in errors[0]
    errors = _errors(
        tmp_path,
        """\
        route:
          name: root
        rotations:
          ops:
            members: [ana]
            working_hours: {start: "25:00", hours: 3}
        """,
    )
    assert len(errors) == 2, errors
    assert all(e.startswith(f"{tmp_path / 'rules.yaml'}:6:") for e in errors), errors
    assert any("invalid time of day '25:00'" in e for e in errors), errors
    assert any("hours" in e for e in errors), errors


def test_rules_show_gives_each_rotations_working_hours(tmp_path: Path) -> None:
    from bridge.rules.show import ruleset_dict

    shown = ruleset_dict(load_text(tmp_path, RULES))["rotations"]
    assert shown["b-early"]["working_hours"] == {
        "start": "07:30",
        "end": "16:00",
        "days": ["mon", "tue", "wed", "thu"],
    }
    assert shown["a-plain"]["working_hours"]["days"] == ["mon", "tue", "wed", "thu", "fri"]
