"""Scheduled drills in the rules: `drills:` of a route, its cron checked by `rules check` with
the file, line and column of the bad value; a route's drills are its own (not inherited)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from bridge.rules.loader import load_rules

RULES = """\
targets:
  everyone: {type: console}
route:
  tiers: {general: [everyone]}
  routes:
    - name: payments
      matchers: ['team="payments"']
      drills:
        - {cron: "0 10 * * 1", severity: sev2, announce_before: 1h}
        - {cron: "%s"}
      routes:
        - name: payments-eu
          matchers: ['region="eu"']
"""


def test_a_bad_cron_is_an_error_at_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(RULES % "0 10 * * MON"))
    result = load_rules([path])
    assert [str(e) for e in result.errors] == [
        f"{path}:10:18: route \"payments\": drills[1].cron: cron '0 10 * * MON': day of week: "
        "'MON' is not *, a number, a range a-b or a step */n (names and L, W, # are not "
        "supported)"
    ]


def test_a_routes_drills_are_its_own(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(RULES % "30 9 1 * *"))
    result = load_rules([path])
    assert not result.errors, result.errors
    assert result.ruleset is not None
    payments = result.ruleset.route("payments")
    child = result.ruleset.route("payments-eu")
    assert payments is not None and child is not None
    assert [(d.expression, d.severity, d.announce_before_s) for d in payments.settings.drills] == [
        ("0 10 * * 1", "sev2", 3600.0),
        ("30 9 1 * *", "sev3", None),
    ]
    assert child.settings.drills == ()
