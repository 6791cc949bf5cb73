"""The ``chat_timeline`` route setting: off by default, inherited, turned off below, shown, and
what the runtime tells the chat routes."""

from __future__ import annotations

from pathlib import Path

from bridge.rules import ruleset_dict
from bridge.runtime import builtin_runtime, rules_runtime
from bridge.targets.base import TargetDeps
from tests.rules.helpers import load_text

RULES = """
route:
  chat_timeline: true
  routes:
    - name: payments
      matchers: ['team="payments"']
      routes:
        - name: ledger
          matchers: ['service="ledger"']
          chat_timeline: false
    - name: web
      matchers: ['team="web"']
"""


def test_chat_timeline_is_inherited_and_turned_off_below(tmp_path: Path) -> None:
    rs = load_text(tmp_path, RULES)
    assert rs.root.settings.chat_timeline is True
    payments, ledger = rs.route("payments"), rs.route("ledger")
    assert payments is not None and ledger is not None
    assert payments.settings.chat_timeline is True
    assert ledger.settings.chat_timeline is False
    shown = ruleset_dict(rs)
    assert shown["route"]["routes"][0]["decides"]["chat_timeline"] is True
    assert load_text(tmp_path, "route: {}\n", "off.yaml").root.settings.chat_timeline is False


def test_the_runtime_answers_per_route(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    runtime = rules_runtime([path], TargetDeps())
    assert runtime.chat_timeline("payments") and runtime.chat_timeline("web")
    assert not runtime.chat_timeline("ledger")
    assert runtime.chat_timeline("a-route-gone-since")  # the root's
    assert not builtin_runtime(3600, TargetDeps()).chat_timeline("anything")
