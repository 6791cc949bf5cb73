"""The rules' ``follow_up``: checklist items and their kinds, the ticket target, the
stabilization window and the PromQL checks; defaults, inheritance key by key, errors with
their ``file:line:col``, lint warnings, and what the runtime and the decisions get."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridge.core.followup import (
    DEFAULT_CHECKLIST,
    DEFAULT_POLICY,
    Check,
    ChecklistItem,
    FollowUpPolicy,
    opening_checklist,
)
from bridge.rules import load_rules
from bridge.rules.engine import RulesPolicy
from bridge.rules.loader import LoadResult
from bridge.rules.show import ruleset_dict
from bridge.runtime import rules_runtime
from bridge.targets.base import TargetDeps
from tests.rules.helpers import load_text, payload

ROOT = Path(__file__).resolve().parents[2]

TARGETS = """\
targets:
  out: {type: console}
  tickets: {type: console}
  jira-payments: {type: console}
"""


def load(tmp_path: Path, text: str) -> LoadResult:
    path = tmp_path / "rules.yaml"
    path.write_text(TARGETS + textwrap.dedent(text))
    return load_rules([path], env={})


def errors(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules.yaml").write_text(TARGETS + textwrap.dedent(text))
    loaded = load_rules([Path("rules.yaml")], env={})
    assert loaded.ruleset is None, "these rules must not load"
    return loaded.errors


def test_without_follow_up_every_route_gets_the_defaults(tmp_path: Path) -> None:
    rs = load_text(
        tmp_path,
        TARGETS + "route:\n  tiers: {general: [out]}\n  routes:\n    - {name: a, matchers: x=y}\n",
    )
    for route in rs.routes():
        assert route.settings.follow_up == DEFAULT_POLICY
    assert DEFAULT_POLICY.checklist == DEFAULT_CHECKLIST
    assert DEFAULT_POLICY.stabilization_s == 1800.0 and DEFAULT_POLICY.checks == ()


def test_items_kinds_window_and_checks(tmp_path: Path) -> None:
    rs = load_text(
        tmp_path,
        TARGETS
        + """\
route:
  tiers: {general: [out]}
  follow_up:
    checklist:
      - Tell the payments team
      - {text: Dashboards green, kind: validate}
      - {text: "  Retro  ", kind: review}
      - {text: Add a canary, kind: action}
      - {text: Plain as a mapping}
    ticket_target: tickets
    stabilization: 1h30m
    checks:
      - {name: error_ratio, expr: ' job:errors:ratio5m > 0 ', expect: "<  0.01"}
      - {name: no-alerts, expr: 'ALERTS{alertstate="firing"}', expect: empty}
      - {name: up, expr: up, expect: "not empty"}
      - {name: big, expr: requests, expect: ">= 1e3"}
      - {name: ne, expr: x, expect: "!= 1"}
""",
    )
    assert rs.root.settings.follow_up == FollowUpPolicy(
        checklist=(
            ChecklistItem("Tell the payments team", "check"),
            ChecklistItem("Dashboards green", "validate"),
            ChecklistItem("Retro", "review"),
            ChecklistItem("Add a canary", "action"),
            ChecklistItem("Plain as a mapping", "check"),
        ),
        ticket_target="tickets",
        stabilization_s=5400.0,
        checks=(
            Check("error_ratio", "job:errors:ratio5m > 0", "< 0.01"),
            Check("no-alerts", 'ALERTS{alertstate="firing"}', "empty"),
            Check("up", "up", "not empty"),
            Check("big", "requests", ">= 1e3"),
            Check("ne", "x", "!= 1"),
        ),
    )


@pytest.mark.parametrize("window", ["0", "0s", "'0'"])
def test_a_zero_window_is_allowed(tmp_path: Path, window: str) -> None:
    rs = load_text(
        tmp_path,
        TARGETS
        + f"route:\n  tiers: {{general: [out]}}\n  follow_up:\n    stabilization: {window}\n"
        "    checks: [{name: a, expr: up, expect: '== 1'}]\n",
    )
    assert rs.root.settings.follow_up.stabilization_s == 0.0
    assert rs.root.settings.follow_up.checks == (Check("a", "up", "== 1"),)


INHERIT = """\
route:
  tiers: {general: [out]}
  follow_up:
    checklist: [Root item, {text: Root validation, kind: validate}]
    ticket_target: tickets
    stabilization: 10m
    checks: [{name: root, expr: up, expect: "== 1"}]
  routes:
    - name: payments
      matchers: team=payments
      follow_up:
        ticket_target: jira-payments
        checks: [{name: errors, expr: err, expect: "< 0.05"}]
      routes:
        - name: ledger
          matchers: service=ledger
          follow_up: {stabilization: 1h}
        - name: checkout
          matchers: service=checkout
          follow_up: {checklist: ~, stabilization: ~, checks: ~, ticket_target: ~}
    - name: platform
      matchers: team=platform
      follow_up: ~
    - name: other
      matchers: team=other
"""


def test_a_child_inherits_each_key_it_does_not_give(tmp_path: Path) -> None:
    rs = load_text(tmp_path, TARGETS + INHERIT)
    root = rs.root.settings.follow_up
    root_items = (ChecklistItem("Root item"), ChecklistItem("Root validation", "validate"))
    assert root == FollowUpPolicy(root_items, "tickets", 600.0, (Check("root", "up", "== 1"),))

    def policy(name: str) -> FollowUpPolicy:
        route = rs.route(name)
        assert route is not None
        return route.settings.follow_up

    errors_check = (Check("errors", "err", "< 0.05"),)
    assert policy("payments") == FollowUpPolicy(root_items, "jira-payments", 600.0, errors_check)
    assert policy("ledger") == FollowUpPolicy(root_items, "jira-payments", 3600.0, errors_check)
    # ``~`` sets a key back to its default, ``follow_up: ~`` all of them
    assert policy("checkout") == DEFAULT_POLICY
    assert policy("platform") == DEFAULT_POLICY
    assert policy("other") == root


def test_the_runtime_and_the_decisions_carry_the_policy(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(TARGETS + INHERIT)
    runtime = rules_runtime([tmp_path / "rules.yaml"], TargetDeps())
    assert runtime.followup_policy("ledger").stabilization_s == 3600.0
    assert runtime.followup_policy("root").ticket_target == "tickets"
    assert runtime.followup_policy("gone-from-the-rules") == runtime.followups["root"]
    assert set(runtime.followups) == {
        r.name for r in load_text(tmp_path, TARGETS + INHERIT).routes()
    }

    rs = load_text(tmp_path, TARGETS + INHERIT)
    [decision] = RulesPolicy(rs).evaluate(payload({"team": "payments", "service": "ledger"}), 0)
    follow_up = decision.policies["follow_up"]
    assert follow_up["ticket_target"] == "jira-payments"
    assert follow_up["stabilization_s"] == 3600.0
    assert [dict(i) for i in follow_up["checklist"]] == [
        {"text": "Root item", "kind": "check"},
        {"text": "Root validation", "kind": "validate"},
    ]
    assert [dict(c) for c in follow_up["checks"]] == [
        {"name": "errors", "expr": "err", "expect": "< 0.05"}
    ]
    shown = ruleset_dict(rs)["route"]["routes"][0]["routes"][0]["decides"]["follow_up"]
    assert shown == {
        "checklist": [dict(i) for i in follow_up["checklist"]],
        "ticket_target": "jira-payments",
        "stabilization_s": 3600.0,
        "checks": [{"name": "errors", "expr": "err", "expect": "< 0.05"}],
    }


def test_the_shipped_rules_keep_the_three_items_meaning() -> None:
    result = load_rules([ROOT / "rules"], env={})
    assert result.ruleset is not None, result.errors
    policy = result.ruleset.root.settings.follow_up
    assert [i.kind for i in policy.checklist] == ["check", "validate", "review"]
    # the route's own validate and review items: none added
    assert opening_checklist(policy) == policy.checklist
    assert policy.ticket_target == "tickets" and policy.stabilization_s == 1800.0


# --- errors, each with its place ----------------------------------------------------------------

BAD_HEAD = "route:\n  tiers: {general: [out]}\n  follow_up:\n"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            '    checks: [{name: a, expr: up, expect: "about 3"}]\n',
            "rules.yaml:8:42: route \"root\": follow_up.checks[0].expect: 'about 3' is not an "
            "expectation: give a comparison and a number",
        ),
        (
            "    checks:\n      - name: a\n        expr: up\n        expect: < abc\n",
            "rules.yaml:11:17: route \"root\": follow_up.checks[0].expect: '< abc': 'abc' is not a "
            "number",
        ),
        (
            "    checks:\n      - {name: a, expr: up, expect: < NaN}\n",
            "rules.yaml:9:37: route \"root\": follow_up.checks[0].expect: '< NaN': the threshold "
            "must be a finite number, not NaN",
        ),
        (
            "    checks:\n      - {name: a, expr: up, expect: != 0}\n",
            'rules.yaml:9:37: route "root": follow_up.checks[0].expect: YAML read the unquoted '
            "'!=' as a tag: quote it, expect: \"!= 0\"",
        ),
        (
            "    checks:\n      - {name: a, expr: up, expect: 0.5}\n",
            'rules.yaml:9:37: route "root": follow_up.checks[0].expect: must be text',
        ),
        (
            "    checks:\n      - {name: a, expr: '  ', expect: empty}\n",
            'rules.yaml:9:25: route "root": follow_up.checks[0].expr: must be a PromQL expression, '
            "not empty",
        ),
        (
            "    checks:\n      - {name: a, expect: empty}\n",
            'rules.yaml:9:9: route "root": missing required key "expr"',
        ),
        (
            "    checklist:\n      - fine\n      - {text: Ticket it, kind: ticket}\n",
            'rules.yaml:10:33: route "root": follow_up.checklist[1].kind: Input should be '
            "'check', 'validate', 'review' or 'action'",
        ),
        (
            "    checklist: [fine, 5]\n",
            'rules.yaml:8:23: route "root": follow_up.checklist[1]: an item is a text, or a '
            "mapping {text: ..., kind: check|validate|review|action}",
        ),
        (
            "    checklist: [{text: '', kind: check}]\n",
            'rules.yaml:8:24: route "root": follow_up.checklist[0].text: must be a non-empty text',
        ),
        (
            "    stabilization: 30min\n",
            "rules.yaml:8:20: route \"root\": follow_up.stabilization: invalid duration '30min'",
        ),
        (
            "    stabilization: -5m\n",
            "rules.yaml:8:20: route \"root\": follow_up.stabilization: invalid duration '-5m'",
        ),
        (
            "    ticket_target: tickts\n",
            'rules.yaml:8:20: route "root": unknown target "tickts" (did you mean "tickets"?)',
        ),
        (
            "    checks: [{name: 'bad name', expr: up, expect: empty}]\n",
            'rules.yaml:8:21: route "root": follow_up.checks[0].name: String should match pattern',
        ),
    ],
)
def test_bad_follow_up_keys_name_their_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: str, expected: str
) -> None:
    found = errors(tmp_path, BAD_HEAD + lines, monkeypatch)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found[0]


def test_a_misspelt_item_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = errors(tmp_path, BAD_HEAD + "    checklist: [{txt: typo}]\n", monkeypatch)
    assert found == [
        'rules.yaml:8:17: route "root": missing required key "text"',
        'rules.yaml:8:18: route "root": unknown key "txt" (did you mean "text"?)',
    ]


def test_a_check_name_is_unique_within_its_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = errors(
        tmp_path,
        BAD_HEAD
        + """\
    checks:
      - {name: errors, expr: a, expect: "< 1"}
      - {name: latency, expr: b, expect: "< 1"}
      - {name: errors, expr: c, expect: "< 2"}
  routes:
    - name: child
      matchers: x=y
      follow_up:
        checks: [{name: errors, expr: d, expect: empty}]
""",
        monkeypatch,
    )
    assert found == [
        'rules.yaml:11:16: route "root": follow_up.checks[2]: duplicate check name "errors" '
        "(first at rules.yaml:9:16)"
    ]


def test_every_error_of_the_block_is_reported_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = errors(
        tmp_path,
        BAD_HEAD
        + "    checklist: [{text: a, kind: nope}]\n"
        + "    checks: [{name: a, expr: up, expect: '=< 1'}]\n"
        + "    stabilization: soon\n",
        monkeypatch,
    )
    assert [e.split(": ", 2)[1] for e in found] == ['route "root"'] * 3
    assert [e.split(":", 3)[1:3] for e in found] == [["8", "33"], ["9", "42"], ["10", "20"]]


def test_lint_warns_about_a_range_vector_and_two_validate_items(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        BAD_HEAD
        + "    checklist: [{text: a, kind: validate}, {text: b, kind: validate}]\n"
        + "    checks: [{name: r, expr: 'rate(x[5m])[1h:]', expect: '< 1'}]\n"
        + "    stabilization: 0\n",
    )
    assert result.ruleset is not None, result.errors
    mine = [w for w in result.warnings if "follow_up" in w or "check " in w]
    assert [w.split(": ", 1)[0].rsplit("/", 1)[-1] for w in mine] == [
        "rules.yaml:8:44",
        "rules.yaml:9:30",
    ]
    text = "\n".join(mine)
    assert 'check "r": the expression ends with a range selector' in text
    assert (
        "follow_up.checklist has 2 validate items: the validation checks off only the first" in text
    )
    assert "stabilization" not in text  # checks with no window are fine
