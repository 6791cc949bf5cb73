"""The shipped recording rules and meta-alerts (helm/incident-bridge/prometheus/rules.yaml):
``promtool check rules`` and ``promtool test rules`` with the cases in rules_test.yaml (a
counter reset included). A missing promtool skips on a laptop and fails under CI=true."""

from __future__ import annotations

import subprocess
from pathlib import Path

RULES = Path(__file__).resolve().parents[2] / "helm" / "incident-bridge" / "prometheus"


def promtool(binary: str, *args: str) -> str:
    result = subprocess.run(
        [binary, *args], cwd=RULES, capture_output=True, timeout=60, check=False
    )
    out = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, out
    return out


def test_the_rules_are_valid(promtool_binary: str) -> None:
    assert "SUCCESS: 15 rules found" in promtool(promtool_binary, "check", "rules", "rules.yaml")


def test_the_rules_pass_their_unit_tests(promtool_binary: str) -> None:
    assert "SUCCESS" in promtool(promtool_binary, "test", "rules", "rules_test.yaml")


def test_every_histogram_has_its_7_and_30_day_means() -> None:
    text = (RULES / "rules.yaml").read_text()
    for name in ("time_to_acknowledge", "time_to_mitigate", "time_to_resolve"):
        for window in ("7d", "30d"):
            assert f"record: severity_team:incident_bridge_{name}_seconds:mean{window}" in text
