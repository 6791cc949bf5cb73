"""The ``reminders`` route setting: defaults, inheritance, the ``status_update`` shorthand, its
errors, and what the runtime gives the scheduler."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime
from pathlib import Path

from bridge.core.reminders import DEFAULT_REMINDERS, NO_REMINDERS, ReminderPolicy
from bridge.rules import load_rules, ruleset_dict
from bridge.rules.rotations import Member, Rotation, next_member
from bridge.runtime import builtin_runtime, rules_runtime
from bridge.targets.base import TargetDeps
from tests.rules.helpers import load_text

RULES = """
rotations:
  commanders:
    members: [amara, bjorn, chen]
    start: 2026-01-05
route:
  roles:
    commander: {rotation: commanders}
    liaison: {person: dana}
  reminders:
    sev1: {update_every: 15m, escalate_to_next_commander: true}
    sev3: ~
  routes:
    - name: payments
      matchers: ['team="payments"']
      status_update: {sev2: 2h}
      reminders:
        sev1: {acknowledge_within: 2m}
        sev2: {acknowledge_within: 30m}
      routes:
        - name: ledger
          matchers: ['service="ledger"']
          roles:
            commander: {person: fatima}
          reminders:
            sev1: {escalate_to_next_commander: false}
"""


def test_the_defaults_without_any_reminders_setting(tmp_path: Path) -> None:
    rs = load_text(tmp_path, "route: {}\n")
    assert dict(rs.root.settings.reminders) == dict(DEFAULT_REMINDERS)
    assert dict(rs.root.settings.status_update) == {
        "sev1": 1800.0,
        "sev2": 3600.0,
        "sev3": 14400.0,
        "sev4": None,
    }


def test_reminders_merge_per_severity_and_key_down_the_tree(tmp_path: Path) -> None:
    rs = load_text(tmp_path, RULES)
    root = rs.root.settings.reminders
    assert root["sev1"] == ReminderPolicy(900.0, 300.0, escalate_to_next_commander=True)
    assert root["sev2"] == DEFAULT_REMINDERS["sev2"]
    assert root["sev3"] == NO_REMINDERS  # sev3: ~ turns both off
    payments = rs.route("payments")
    assert payments is not None
    # acknowledge_within set here, update_every and escalate inherited
    assert payments.settings.reminders["sev1"] == ReminderPolicy(900.0, 120.0, True)
    # status_update is update_every; the rest of the severity's reminders is its own key
    assert payments.settings.reminders["sev2"] == ReminderPolicy(7200.0, 1800.0)
    assert payments.settings.status_update["sev2"] == 7200.0
    ledger = rs.route("ledger")
    assert ledger is not None
    assert ledger.settings.reminders["sev1"] == ReminderPolicy(900.0, 120.0, False)
    assert ledger.settings.commander_rotation is None
    assert payments.settings.commander_rotation == "commanders"


def test_the_rules_json_shows_the_effective_reminders(tmp_path: Path) -> None:
    shown = ruleset_dict(load_text(tmp_path, RULES))
    payments = shown["route"]["routes"][0]["decides"]
    assert payments["reminders"]["sev1"] == {
        "update_every_s": 900.0,
        "acknowledge_within_s": 120.0,
        "escalate_to_next_commander": True,
    }
    assert payments["status_update_s"]["sev2"] == 7200.0


def _errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text))
    result = load_rules([path], env={})
    assert result.ruleset is None
    return [line.replace(f"{path}:", "rules.yaml:") for line in result.errors]


def test_status_update_and_update_every_for_one_severity_is_an_error(tmp_path: Path) -> None:
    errors = _errors(
        tmp_path,
        """
        route:
          status_update: {sev1: 10m, sev2: 1h}
          reminders:
            sev1: {update_every: 20m}
            sev2: {acknowledge_within: 5m}
            sev3: ~
        """,
    )
    assert errors == [
        'rules.yaml:5:12: route "root": give status_update.sev1 or '
        "reminders.sev1.update_every, not both"
    ]


def test_zero_and_bad_durations_and_unknown_keys_are_errors(tmp_path: Path) -> None:
    errors = _errors(
        tmp_path,
        """
        route:
          status_update: {sev4: 0s}
          reminders:
            sev1: {update_every: 0m, acknowledge_within: soon}
            sev2: {escalate: true}
            sev5: {update_every: 1h}
        """,
    )
    assert errors == [
        "rules.yaml:3:25: route \"root\": status_update.sev4: must be longer than 0s, not '0s'",
        'rules.yaml:5:26: route "root": reminders.sev1.update_every: must be longer than 0s, '
        "not '0m'",
        'rules.yaml:5:50: route "root": reminders.sev1.acknowledge_within: invalid duration '
        "'soon' (use e.g. 90s, 30m, 1h30m, 1d, 2w)",
        'rules.yaml:6:12: route "root": unknown key "escalate"',
        'rules.yaml:7:5: route "root": unknown key "sev5" (did you mean "sev4"?)',
    ]


def test_the_runtime_gives_the_current_rules_reminders(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(RULES))
    runtime = rules_runtime([path], TargetDeps())
    assert runtime.reminder_policy("payments", "sev1") == ReminderPolicy(900.0, 120.0, True)
    assert runtime.reminder_policy("ledger", "sev3") == NO_REMINDERS
    # a route gone from the rules (renamed since the incident opened): the root's
    assert runtime.reminder_policy("renamed", "sev1") == ReminderPolicy(900.0, 300.0, True)
    # the built-in policy: the defaults
    builtin = builtin_runtime(3600.0, TargetDeps())
    for sev, policy in DEFAULT_REMINDERS.items():
        assert builtin.reminder_policy("default", sev) == policy
    assert builtin.next_commander("default", "amara", 0) is None


def test_the_next_commander_comes_from_the_routes_commander_rotation(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(RULES))
    runtime = rules_runtime([path], TargetDeps())
    monday = int(datetime(2026, 1, 5, 12, tzinfo=UTC).timestamp()) * 10**9  # amara's week
    assert runtime.next_commander("payments", "amara", monday) == "bjorn"
    assert runtime.next_commander("payments", "chen", monday) == "amara"  # wraps round
    # nobody, or someone outside the rotation: the one after whoever is on call
    assert runtime.next_commander("payments", None, monday) == "bjorn"
    assert runtime.next_commander("payments", "zoe", monday) == "bjorn"
    # the ledger's commander is a person: no rotation to escalate along
    assert runtime.next_commander("ledger", "fatima", monday) is None
    assert runtime.next_commander("renamed", "amara", monday) == "bjorn"  # the root's


def test_next_member_of_a_rotation_of_one_is_nobody_else() -> None:
    alone = Rotation("solo", (Member("amara"),), start=date(2026, 1, 5))
    at = datetime(2026, 1, 6, tzinfo=UTC)
    assert next_member(alone, "amara", at) is None
    assert next_member(alone, None, at) == Member("amara")
