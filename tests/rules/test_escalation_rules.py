"""Escalation policies in the rules: the schema, inheritance, references (errors with
file:line:col), the lint warnings of a level that reaches nobody, and whom a level reaches."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.core.escalation import NO_ESCALATION, EscalationPolicy, Level, Reach, Recipient
from bridge.rules import load_rules
from bridge.runtime import builtin_runtime, rules_runtime
from bridge.targets.base import TargetDeps

RULES = """
targets:
  pager: {type: console}
  sms: {type: console}
rotations:
  primary:
    members:
      - {name: amara, handles: {sms: "+15550100"}}
      - {name: bjorn, handles: {console: "b"}}
      - {name: chen, handles: {sms: "+15550102"}}
    start: 2026-01-05
route:
  tiers: {general: [pager]}
  escalation:
    sev1:
      levels:
        - after: 5m
          notify: {rotation: primary}
        - after: 10m
          notify: [{next: primary}, {target: pager}, {person: chen}]
      repeat: 2
    sev2:
      levels:
        - {after: 0s, notify: {target: pager}}
  routes:
    - name: payments
      matchers: ['team="payments"']
      escalation:
        sev2: ~
        sev3:
          levels: [{after: 30m, notify: {person: amara}}]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _load(tmp_path: Path, text: str) -> tuple[list[str], list[str]]:
    path = _write(tmp_path, text)
    result = load_rules([path], env={})
    strip = [line.replace(f"{path}:", "rules.yaml:") for line in result.errors]
    warns = [line.replace(f"{path}:", "rules.yaml:") for line in result.warnings]
    return strip, warns


SEV1 = EscalationPolicy(
    levels=(
        Level(300.0, (Recipient("rotation", "primary"),)),
        Level(
            600.0,
            (
                Recipient("next", "primary"),
                Recipient("target", "pager"),
                Recipient("person", "chen"),
            ),
        ),
    ),
    repeat=2,
)


def test_policies_per_severity_inherited_and_replaced_down_the_tree(tmp_path: Path) -> None:
    runtime = rules_runtime([_write(tmp_path, RULES)], TargetDeps())
    assert runtime.escalation_policy("root", "sev1") == SEV1
    assert runtime.escalation_policy("root", "sev2") == EscalationPolicy(
        (Level(0.0, (Recipient("target", "pager"),)),)
    )
    assert runtime.escalation_policy("root", "sev3") == NO_ESCALATION
    # payments: sev1 inherited, sev2 turned off, sev3 its own
    assert runtime.escalation_policy("payments", "sev1") == SEV1
    assert runtime.escalation_policy("payments", "sev2") == NO_ESCALATION
    assert runtime.escalation_policy("payments", "sev3").levels[0].after_s == 1800.0
    # a route gone from the rules: the root's
    assert runtime.escalation_policy("renamed", "sev2").levels[0].notify[0].name == "pager"
    # no rules: no policy
    assert builtin_runtime(3600.0, TargetDeps()).escalation_policy("default", "sev1") == (
        NO_ESCALATION
    )


def test_whom_a_level_reaches_holder_next_person_target(tmp_path: Path) -> None:
    runtime = rules_runtime([_write(tmp_path, RULES)], TargetDeps())
    monday = int(datetime(2026, 1, 5, 12, tzinfo=UTC).timestamp()) * 10**9  # amara's week
    # amara's handle "sms" names a target; bjorn's "console" is a type: every console target
    assert runtime.escalation_reach(SEV1.levels[0].notify, monday) == Reach(
        (("amara", {"sms": "+15550100"}),), ("sms",)
    )
    assert runtime.escalation_reach(SEV1.levels[1].notify, monday) == Reach(
        (("bjorn", {"console": "b"}), ("chen", {"sms": "+15550102"})),
        ("pager", "sms"),
    )
    # a week later bjorn holds it, chen is next
    week2 = monday + 7 * 86400 * 10**9
    got = runtime.escalation_reach(SEV1.levels[1].notify, week2)
    assert [name for name, _ in got.people] == ["chen"]


def test_unknown_rotation_person_target_are_errors_with_their_place(tmp_path: Path) -> None:
    errors, _ = _load(
        tmp_path,
        """
        targets:
          pager: {type: console}
        rotations:
          primary: {members: [amara, bjorn]}
        route:
          tiers: {general: [pager]}
          escalation:
            sev1:
              levels:
                - after: 5m
                  notify: [{rotation: primari}, {next: nope}, {person: amra}, {target: pagr}]
        """,
    )
    assert errors == [
        'rules.yaml:12:31: route "root": unknown rotation "primari" (did you mean "primary"?)',
        'rules.yaml:12:48: route "root": unknown rotation "nope"',
        'rules.yaml:12:64: route "root": unknown person "amra" (not a member of any rotation) '
        '(did you mean "amara"?)',
        'rules.yaml:12:80: route "root": unknown target "pagr" (did you mean "pager"?)',
    ]


def test_zero_levels_two_recipients_in_one_and_waitless_repeats_are_errors(
    tmp_path: Path,
) -> None:
    errors, _ = _load(
        tmp_path,
        """
        targets:
          pager: {type: console}
        route:
          tiers: {general: [pager]}
          escalation:
            sev1: {levels: []}
            sev2:
              levels: [{after: 0s, notify: {target: pager, person: x}}]
            sev3:
              levels: [{after: 0s, notify: {target: pager}}]
              repeat: 3
            sev4:
              levels: [{after: soon, notify: []}]
        """,
    )
    assert len(errors) == 5, errors
    assert errors[0].startswith("rules.yaml:7:20: ") and "levels" in errors[0]
    assert errors[1].startswith("rules.yaml:9:36: ")
    assert "give exactly one of rotation, next, person or target" in errors[1]
    assert errors[2].startswith("rules.yaml:11:7: ")
    assert "repeat needs a level that waits: every after is 0s" in errors[2]
    assert "invalid duration 'soon'" in errors[3]
    assert errors[3].startswith("rules.yaml:14:24: ")
    assert errors[4].startswith("rules.yaml:14:38: ") and "notify" in errors[4]


def test_rules_check_warns_of_a_level_that_reaches_nobody(tmp_path: Path) -> None:
    errors, warnings = _load(
        tmp_path,
        """
        targets:
          pager: {type: console}
        rotations:
          silent: {members: [amara, bjorn]}
          half:
            members: [{name: chen, handles: {pager: "c"}}, dana]
          solo:
            members: [{name: emil, handles: {console: "e"}}]
        route:
          tiers: {general: [pager]}
          escalation:
            sev1:
              levels:
                - after: 5m
                  notify: [{rotation: silent}, {next: half}, {person: amara}, {next: solo}]
                - after: 5m
                  notify: [{person: chen}, {rotation: solo}]
        """,
    )
    assert errors == []
    escalation = [w for w in warnings if "escalation.sev1" in w]
    assert escalation == [
        'rules.yaml:16:31: route "root": escalation.sev1: no member of rotation "silent" has a handle for '
        "any target: this level reaches nobody",
        'rules.yaml:16:47: route "root": escalation.sev1: dana of rotation "half" have no handle for any '
        "target: this level reaches nobody while they hold it",
        'rules.yaml:16:63: route "root": escalation.sev1: person "amara" has no handle for any target: '
        "this level reaches nobody",
        'rules.yaml:16:78: route "root": escalation.sev1: rotation "solo" has one member: its next holder '
        "is nobody",
    ]


TEST_FILE = """
rule_files: [rules.yaml]
at: 2026-01-05T12:00:00Z   # amara's week of the primary rotation
tests:
  - name: sev1 walks the levels twice more
    alerts: [{labels: {alertname: Down, severity: critical}}]
    escalation:
      - {after: 5m, level: 1, repetition: 1, people: [amara], targets: [sms]}
      - {after: 15m, level: 2, people: [bjorn, chen], targets: [pager, sms]}
      - {after: 20m}
      - {after: 30m}
      - {after: 35m}
      - {after: 45m, level: 2, repetition: 3}
  - name: acknowledged after 16 minutes
    alerts: [{labels: {alertname: Down, severity: critical}}]
    acknowledged_after: 16m
    escalation: [{after: 5m}, {after: 15m}]
  - name: payments sev2 has none
    alerts: [{labels: {alertname: Down, severity: error, team: payments}}]
    escalation: []
"""


def test_rules_test_asserts_which_levels_fire_when(tmp_path: Path) -> None:
    from bridge.rules.testing import run_file

    _write(tmp_path, RULES)
    (tmp_path / "escalation.test.yaml").write_text(textwrap.dedent(TEST_FILE))
    results, errors = run_file(tmp_path / "escalation.test.yaml")
    assert errors == []
    assert [(r.name, r.ok, r.diff) for r in results] == [
        ("sev1 walks the levels twice more", True, []),
        ("acknowledged after 16 minutes", True, []),
        ("payments sev2 has none", True, []),
    ]


def test_rules_test_shows_a_wrong_time_and_a_missing_step(tmp_path: Path) -> None:
    from bridge.rules.testing import run_file

    _write(tmp_path, RULES)
    wrong = TEST_FILE.replace("{after: 15m, level: 2,", "{after: 10m, level: 2,").replace(
        "acknowledged_after: 16m\n    escalation: [{after: 5m}, {after: 15m}]",
        "acknowledged_after: 16m\n    escalation: [{after: 5m}]",
    )
    (tmp_path / "escalation.test.yaml").write_text(textwrap.dedent(wrong))
    results, errors = run_file(tmp_path / "escalation.test.yaml")
    assert errors == []
    assert [r.ok for r in results] == [False, False, True]
    assert '-      "after": "10m",' in results[0].diff
    assert '+      "after": "15m",' in results[0].diff
    # the step the case did not expect is shown whole
    assert '+      "after": "15m",' in results[1].diff
    assert '+      "level": 2,' in results[1].diff


def test_the_rules_json_shows_the_policies(tmp_path: Path) -> None:
    from bridge.rules import ruleset_dict

    path = _write(tmp_path, RULES)
    ruleset = load_rules([path], env={}).ruleset
    assert ruleset is not None
    shown = ruleset_dict(ruleset)["route"]
    assert shown["decides"]["escalation"]["sev1"] == {
        "levels": [
            {"after_s": 300.0, "notify": ["rotation: primary"]},
            {"after_s": 600.0, "notify": ["next: primary", "target: pager", "person: chen"]},
        ],
        "repeat": 2,
    }


def test_route_test_shows_when_each_level_fires_from_at(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.cli import main

    path = _write(tmp_path, RULES)
    argv = ["rules", "route-test", "--rules", str(path), "--at", "2026-01-05T12:00:00Z"]
    assert main([*argv, "severity=critical"]) == 0
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    assert [line for line in lines if line.startswith("escalation")] == [
        "escalation +5m: level 1 (run 1) amara via sms",
        "escalation +15m: level 2 (run 1) bjorn, chen via pager,sms",
        "escalation +20m: level 1 (run 2) amara via sms",
        "escalation +30m: level 2 (run 2) bjorn, chen via pager,sms",
        "escalation +35m: level 1 (run 3) amara via sms",
        "escalation +45m: level 2 (run 3) bjorn, chen via pager,sms",
    ]
    # a week later bjorn holds the rotation; JSON gives the same steps
    later = ["rules", "route-test", "-o", "json", "--rules", str(path)]
    assert main([*later, "--at", "2026-01-12T12:00:00Z", "severity=critical"]) == 0
    (incident,) = json.loads(capsys.readouterr().out)["incidents"]
    assert incident["escalation"][0] == {
        "after": 300.0,
        "level": 1,
        "repetition": 1,
        "people": ["bjorn"],
        "targets": ["pager", "sms"],
    }
    assert main([*later, "severity=warning"]) == 0  # sev3: no policy
    assert json.loads(capsys.readouterr().out)["incidents"][0]["escalation"] == []


def test_rules_test_at_sets_the_time_of_a_file_that_gives_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.cli import main

    _write(tmp_path, RULES)
    timeless = TEST_FILE.replace(
        "at: 2026-01-05T12:00:00Z   # amara's week of the primary rotation\n", ""
    )
    assert timeless != TEST_FILE
    test_file = tmp_path / "escalation.test.yaml"
    test_file.write_text(textwrap.dedent(timeless))
    # amara's week: the file's cases hold as written
    assert main(["rules", "test", "--at", "2026-01-05T12:00:00Z", str(test_file)]) == 0
    assert "SUCCESS: 3 test(s)" in capsys.readouterr().out
    # a week later bjorn holds the rotation: the first level pages him, not amara
    assert main(["rules", "test", "--at", "2026-01-12T12:00:00Z", str(test_file)]) == 1
    err = capsys.readouterr().err
    assert 'FAILED: "sev1 walks the levels twice more"' in err
    assert '+        "bjorn"' in err
    # a case's or a file's own time comes before --at
    test_file.write_text(textwrap.dedent(TEST_FILE))
    assert main(["rules", "test", "--at", "2026-01-12T12:00:00Z", str(test_file)]) == 0
    capsys.readouterr()
    assert main(["rules", "test", "--at", "soon", str(test_file)]) == 1
    assert "rules test: --at:" in capsys.readouterr().err
