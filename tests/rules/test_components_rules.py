"""The status page's components in the rules (``components:``): loaded in the order written,
bad ones reported at file:line:col (by ``rules check`` too)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.core.status import Component
from bridge.rules import load_rules
from bridge.rules.show import ruleset_dict

RULES = """
route:
  name: root
  routes:
    - name: payments
      matchers: ['team="payments"']
components:
  checkout: {name: Checkout, description: Cart and payment, routes: [payments]}
  search:
    name: Search
    labels: {service: search}
"""

BAD = """
route:
  name: root
  routes: [{name: payments}]
components:
  a: {name: A, routes: [paymnts]}
  b: {description: no name}
  c: {name: C, lables: {service: c}}
  d: {name: ""}
  e: [not, a, mapping]
"""


def test_components_load_in_the_order_written(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(RULES))
    result = load_rules([path], env={})
    assert result.errors == []
    assert result.ruleset is not None
    assert list(result.ruleset.components.values()) == [
        Component("checkout", "Checkout", "Cart and payment", ("payments",), {}),
        Component("search", "Search", "", (), {"service": "search"}),
    ]
    # rules show and GET /api/v1/rules
    assert ruleset_dict(result.ruleset)["components"] == {
        "checkout": {
            "name": "Checkout",
            "description": "Cart and payment",
            "routes": ["payments"],
            "labels": {},
        },
        "search": {
            "name": "Search",
            "description": "",
            "routes": [],
            "labels": {"service": "search"},
        },
    }


def test_bad_components_are_errors_with_their_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(BAD))
    errors = load_rules([path], env={}).errors
    f = str(path)
    assert errors == [
        f'{f}:6:25: component "a": route "paymnts" is not a route of the rules'
        ' (did you mean "payments"?)',
        f'{f}:7:6: component "b": missing required key "name"',
        f'{f}:8:16: component "c": unknown key "lables" (did you mean "labels"?)',
        f'{f}:9:13: component "d": name: String should have at least 1 character',
        f'{f}:10:6: component "e": must be a mapping',
    ]
    assert main(["rules", "check", str(path)]) != 0
    captured = capsys.readouterr()
    assert 'component "a": route "paymnts"' in captured.out + captured.err
