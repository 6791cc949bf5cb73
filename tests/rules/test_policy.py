"""RulesPolicy: alerts of a webhook -> incident decisions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.core.alertmanager import parse_webhook
from bridge.core.policy import Policy
from bridge.rules import RulesPolicy, load_rules
from tests.rules.helpers import load_text, payload

NOW = 1_795_000_000 * 10**9  # 2026-11-18T08:53:20Z
RULES = """
targets:
  general: {type: console}
  page: {type: console}
rotations:
  sre: {members: [ann, bob], period: daily, handoff: "09:00", timezone: Europe/Berlin, start: 2026-11-01}
templates:
  svc: "{{ labels.alertname }} on {{ labels.service }}"
route:
  tiers: {general: [general]}
  status_update: {sev1: 15m, sev2: 1h}
  routes:
    - name: db
      matchers: ['service=~"db.*"']
      group_by: [alertname, service]
      title_template: svc
      roles: {commander: {rotation: sre}, scribe: {person: carla}, responders: [{person: dan}, {rotation: sre}]}
      continue: true
      tiers:
        stakeholders: {targets: [page], min_severity: sev2}
    - name: team-a
      matchers: ['team="a"']
      severity: sev2
      title: "{{ labels.missing_label }}"
    - name: everything
      matchers: ['service=~".+"']
      group_by: ['...']
"""


@pytest.fixture
def policy(tmp_path: Path) -> RulesPolicy:
    return RulesPolicy(load_text(tmp_path, RULES))


def test_is_a_policy(policy: RulesPolicy) -> None:
    p: Policy = policy
    assert p.evaluate(payload(), NOW) == []


def test_group_by_splits_and_keys_name_the_route(policy: RulesPolicy) -> None:
    ds = policy.evaluate(
        payload(
            {"alertname": "Down", "service": "db1", "severity": "warning", "instance": "a"},
            {"alertname": "Down", "service": "db1", "severity": "critical", "instance": "b"},
            {"alertname": "Down", "service": "db2", "instance": "c"},
        ),
        NOW,
    )
    db = [d for d in ds if d.route == "db"]
    assert [d.key for d in db] == [
        'db:{alertname="Down", service="db1"}',
        'db:{alertname="Down", service="db2"}',
    ]
    assert db[0].severity == "sev1"  # the worst of its alerts
    assert len(db[0].fingerprints) == 2
    assert db[0].title == "Down on db1"
    assert db[1].severity == "sev4"


def test_continue_puts_one_alert_into_two_incidents(policy: RulesPolicy) -> None:
    ds = policy.evaluate(payload({"alertname": "Down", "service": "db1", "instance": "a"}), NOW)
    assert [d.route for d in ds] == ["db", "everything"]
    assert ds[1].key == 'everything:{alertname="Down", instance="a", service="db1"}'
    assert ds[0].fingerprints == ds[1].fingerprints


def test_default_grouping_uses_group_key_prefixed_except_at_the_root(policy: RulesPolicy) -> None:
    ds = policy.evaluate(payload({"team": "a"}, {"other": "x"}, group_key='{}:{x="1"}'), NOW)
    assert [(d.route, d.key) for d in ds] == [
        ("team-a", 'team-a:{}:{x="1"}'),
        ("root", '{}:{x="1"}'),
    ]


def test_keys_are_stable_whatever_else_is_in_the_webhook(policy: RulesPolicy) -> None:
    alone = policy.evaluate(payload({"team": "a"}, group_key="g"), NOW)
    mixed = policy.evaluate(payload({"other": "x"}, {"team": "a"}, group_key="g"), NOW)
    assert alone[0].key == next(d.key for d in mixed if d.route == "team-a")


def test_title_falls_back_when_a_label_is_missing(policy: RulesPolicy) -> None:
    (d,) = policy.evaluate(payload({"team": "a", "alertname": "Boom"}), NOW)
    assert d.title == "Boom"
    assert d.severity == "sev2"


def test_roles_tiers_and_policies(policy: RulesPolicy) -> None:
    ds = policy.evaluate(payload({"alertname": "Down", "service": "db1", "severity": "error"}), NOW)
    d = ds[0]
    # 2026-11-18 08:53Z = 09:53 Berlin: 17 hand-offs since 2026-11-01 09:00 -> bob
    assert d.roles == {"commander": ("bob",), "scribe": ("carla",), "responders": ("dan", "bob")}
    assert d.tiers.general == ("general",) and d.tiers.stakeholders == ("page",)
    assert d.tiers.stakeholder_min_severity == "sev2"
    assert d.policies["status_update_interval_s"] == 3600.0
    assert d.policies["postmortem"] == "required"
    assert d.policies["role_handles"]["commander"] == [{"name": "bob"}]


def test_every_captured_webhook_evaluates_under_the_shipped_rules() -> None:
    root = Path(__file__).resolve().parents[2]
    rs = load_rules([root / "rules"]).ruleset
    assert rs is not None
    fixtures = sorted((root / "tests/fixtures/alertmanager-0.25").glob("*.json"))
    assert fixtures
    for f in fixtures:
        capture = json.loads(f.read_text())  # {"path", "headers", "body"}
        p = parse_webhook(json.dumps(capture["body"]).encode())
        ds = RulesPolicy(rs).evaluate(p, NOW)
        assert sum(len(d.fingerprints) for d in ds) >= len(p.alerts)
        assert all(d.key and d.title for d in ds)


def test_the_rule_engine_imports_no_io_machinery() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from bridge.rules import load_rules, RulesPolicy; load_rules(['rules']); "
        "print(sorted(m for m in ('aiohttp', 'sqlite3', 'sqlite_utils') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("critical", "sev1"),
        ("CRITICAL", "sev1"),
        (" Critical ", "sev1"),
        ("warning", "sev3"),
        ("info", "sev4"),
        (None, "sev4"),
    ],
)
def test_default_severity_mapping(tmp_path: Path, value: str | None, want: str) -> None:
    policy = RulesPolicy(load_text(tmp_path, "route: {}\n"))
    labels = {"alertname": "A"} | ({"severity": value} if value is not None else {})
    (d,) = policy.evaluate(payload(labels), NOW)
    assert d.severity == want
