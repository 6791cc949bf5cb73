"""Heartbeats in the rules (``heartbeats:``): loaded into the rule set, bad ones reported at
file:line:col (by ``rules check`` too), and a late heartbeat's alert decided on its route with
its severity and the key ``heartbeat:<name>``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.core.heartbeats import Heartbeat, missing_payload
from bridge.rules import load_rules
from bridge.rules.engine import RulesPolicy
from bridge.rules.show import ruleset_dict
from tests.rules.helpers import load_text

RULES = """
targets:
  infra-room: {type: console}
  general: {type: console}
route:
  name: root
  tiers: {general: [general]}
  routes:
    - name: infra
      matchers: ['team="infra"']
      severity_from: {map: {critical: sev1}, default: sev3}
      tiers: {incident: infra-room}
    - name: backups
      severity: sev4
heartbeats:
  watchdog:
    interval: 1m
    grace: 30s
    alertname: Watchdog
    labels: {team: infra}
  nightly-backup:
    interval: 1d
    route: backups
    severity: sev2
"""


def test_heartbeats_load_with_their_settings(tmp_path: Path) -> None:
    rules = load_text(tmp_path, RULES)
    assert rules.heartbeats == {
        "watchdog": Heartbeat("watchdog", 60.0, 30.0, None, None, "Watchdog", {"team": "infra"}),
        "nightly-backup": Heartbeat("nightly-backup", 86400.0, 0.0, "backups", "sev2", None, {}),
    }
    # GET /api/v1/rules and `rules show` show them
    assert ruleset_dict(rules)["heartbeats"]["watchdog"] == {
        "interval_s": 60.0,
        "grace_s": 30.0,
        "route": None,
        "severity": None,
        "alertname": "Watchdog",
        "labels": {"team": "infra"},
    }


def test_a_late_heartbeat_is_decided_on_its_route_or_by_its_labels(tmp_path: Path) -> None:
    rules = load_text(tmp_path, RULES)
    policy = RulesPolicy(rules)
    watchdog = rules.heartbeats["watchdog"]
    d = policy.decide_heartbeat(watchdog, missing_payload(watchdog, since=10**18), 10**18)
    # routed by its labels (team=infra) as an alert would be: the infra route's tiers, its
    # severity from the route (no severity label: the map's default)
    assert (d.key, d.route, d.severity, d.tiers.incident) == (
        "heartbeat:watchdog",
        "infra",
        "sev3",
        "infra-room",
    )
    nightly = rules.heartbeats["nightly-backup"]
    d = policy.decide_heartbeat(nightly, missing_payload(nightly, since=10**18), 10**18)
    # its own route, its own severity (the route says sev4)
    assert (d.key, d.route, d.severity) == ("heartbeat:nightly-backup", "backups", "sev2")
    assert d.title == "Heartbeat nightly-backup is late"


BAD = """
route:
  name: root
heartbeats:
  a:
    interval: 0s
  b:
    interval: 1m
    route: roott
  c:
    interval: 1m
    severity: sev9
    lables: {}
  d: {grace: 1m}
"""


def test_bad_heartbeats_are_errors_with_their_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(BAD))
    errors = load_rules([path], env={}).errors
    f = str(path)
    assert errors == [
        f"{f}:6:15: heartbeat \"a\": interval: must be longer than 0s, not '0s'",
        f'{f}:9:12: heartbeat "b": route "roott" is not a route of the rules (did you mean "root"?)',
        f"{f}:12:15: heartbeat \"c\": severity: Input should be 'sev1', 'sev2', 'sev3' or 'sev4'",
        f'{f}:13:5: heartbeat "c": unknown key "lables" (did you mean "labels"?)',
        f'{f}:14:6: heartbeat "d": missing required key "interval"',
    ]
    assert main(["rules", "check", str(path)]) != 0
    captured = capsys.readouterr()
    assert 'route "roott" is not a route of the rules' in captured.out + captured.err
