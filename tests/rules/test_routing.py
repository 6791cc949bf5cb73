"""Routing and inheritance, as tables of named cases over one tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.rules import Route, RuleSet, match_routes
from tests.rules.helpers import load_text

TREE = """
targets:
  general: {type: console}
  pager: {type: console}
  db-channel: {type: console}
route:
  name: root
  team: sre
  severity: sev4
  reopen_window: 1h
  tiers: {general: [general]}
  routes:
    - name: payments
      matchers: ['team="payments"']
      team: payments
      severity: sev2
      tiers:
        stakeholders: {targets: [pager], min_severity: sev2}
      routes:
        - name: payments-db
          matchers: '{service=~"db|pg.*"}'
          continue: true
          tiers: {incident: db-channel}
        - name: payments-api
          matchers: ['service="api"']
          severity: sev1
          reopen_window: 10m
    - name: audit
      matchers: ['env=~"prod"']
      continue: true
      team: audit
    - name: empty-env
      matchers: ['env=""']
    - name: catch-rest
      matchers: ['env!~"dev.*"']
"""

CASES = [
    # (name, labels, expected routes)
    ("no match falls back to its parent", {"env": "dev"}, ["root"]),
    ("first match wins", {"team": "payments", "env": "prod"}, ["payments"]),
    (
        "child is preferred over its parent",
        {"team": "payments", "service": "api"},
        ["payments-api"],
    ),
    (
        "continue goes on to the next sibling",
        {"team": "payments", "service": "db"},
        ["payments-db"],
    ),
    (
        "continue also reaches later siblings",
        {"team": "payments", "service": "pg-main"},
        ["payments-db"],
    ),
    ("regex is anchored", {"team": "payments", "service": "dbx"}, ["payments"]),
    ("continue on a top-level route", {"env": "prod"}, ["audit", "catch-rest"]),
    ("anchoring: prod-eu is not prod", {"env": "prod-eu"}, ["catch-rest"]),
    ("absent label equals empty", {}, ["empty-env"]),
    ("explicitly empty label equals absent", {"env": ""}, ["empty-env"]),
    ("not-regex on a dev env", {"env": "dev-1"}, ["root"]),
]


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return load_text(tmp_path_factory.mktemp("routing"), TREE)


@pytest.mark.parametrize(
    ("labels", "want"), [(ls, w) for _, ls, w in CASES], ids=[n for n, _, _ in CASES]
)
def test_routes(ruleset: RuleSet, labels: dict[str, str], want: list[str]) -> None:
    assert [r.name for r in match_routes(ruleset.root, labels)] == want


INHERIT = [
    # (route, attribute path, expected)
    ("payments-db", "team", "payments"),
    ("payments-db", "severity", "sev2"),
    ("payments-api", "severity", "sev1"),
    ("payments-api", "reopen_window_s", 600.0),
    ("payments-db", "reopen_window_s", 3600.0),
    ("payments-db", "tiers.general", ("general",)),
    ("payments-db", "tiers.incident", "db-channel"),
    ("payments-db", "tiers.stakeholders", ("pager",)),
    ("payments-db", "tiers.stakeholder_min_severity", "sev2"),
    ("payments-api", "tiers.incident", None),
    ("audit", "team", "audit"),
    ("audit", "tiers.stakeholders", ()),
    ("catch-rest", "team", "sre"),
]


@pytest.mark.parametrize(
    ("route", "attr", "want"), INHERIT, ids=[f"{r}.{a}" for r, a, _ in INHERIT]
)
def test_inheritance(ruleset: RuleSet, route: str, attr: str, want: object) -> None:
    r = ruleset.route(route)
    assert r is not None
    value: object = r.settings
    for part in attr.split("."):
        value = getattr(value, part)
    assert value == want


def test_top_level_routes_from_several_files_join_the_root_in_file_order(tmp_path: Path) -> None:
    (tmp_path / "a-root.yaml").write_text(
        "route:\n  name: base\n  routes:\n    - {name: own, matchers: ['x=\"1\"']}\n"
    )
    (tmp_path / "b-team.yaml").write_text("routes:\n  - {name: team-b, matchers: ['x=~\"1|2\"']}\n")
    (tmp_path / "c-team.yaml").write_text("routes:\n  - {name: team-c, matchers: ['x=~\"2|3\"']}\n")
    from bridge.rules import load_rules

    rs = load_rules([tmp_path]).ruleset
    assert rs is not None
    assert [c.name for c in rs.root.children] == ["own", "team-b", "team-c"]
    assert [r.name for r in match_routes(rs.root, {"x": "2"})] == ["team-b"]
    assert [r.name for r in match_routes(rs.root, {"x": "3"})] == ["team-c"]
    assert [r.name for r in match_routes(rs.root, {"x": "4"})] == ["base"]


def _naive(route: Route, labels: dict[str, str]) -> list[str]:
    if not all(m.matches(labels.get(m.name, "")) for m in route.matchers):
        return []
    out: list[str] = []
    for child in route.children:
        got = _naive(child, labels)
        out.extend(got)
        if got and not child.continue_:
            break
    return out or [route.name]


@settings(max_examples=300, deadline=None)
@given(
    labels=st.dictionaries(
        st.sampled_from(["team", "service", "env", "x"]),
        st.sampled_from(["", "payments", "db", "pg-1", "api", "prod", "dev-2", "a"]),
    )
)
def test_index_agrees_with_evaluating_every_matcher(labels: dict[str, str]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        rs = load_text(Path(tmp), TREE)
    for _ in range(2):  # the second time answers from the memo
        assert [r.name for r in match_routes(rs.root, labels)] == _naive(rs.root, labels)


def test_index_memo_is_bounded(ruleset: RuleSet, monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.rules import index

    monkeypatch.setattr(index, "MEMO_LIMIT", 3)
    for i in range(10):
        assert [r.name for r in match_routes(ruleset.root, {"env": f"prod{i}"})] == ["catch-rest"]
    assert all(len(m) <= 3 for m in ruleset.root.index.memo.values())
    assert [r.name for r in match_routes(ruleset.root, {"env": "prod"})] == ["audit", "catch-rest"]
