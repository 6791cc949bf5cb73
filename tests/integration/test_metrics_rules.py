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
    assert "SUCCESS: 16 rules found" in promtool(promtool_binary, "check", "rules", "rules.yaml")


def test_the_rules_pass_their_unit_tests(promtool_binary: str) -> None:
    assert "SUCCESS" in promtool(promtool_binary, "test", "rules", "rules_test.yaml")


def test_every_histogram_has_its_7_and_30_day_means() -> None:
    text = (RULES / "rules.yaml").read_text()
    for name in ("time_to_acknowledge", "time_to_mitigate", "time_to_resolve"):
        for window in ("7d", "30d"):
            assert f"record: severity_team:incident_bridge_{name}_seconds:mean{window}" in text


DOCS = RULES.parents[2] / "docs"


def test_the_documented_scrape_config_loads_the_shipped_rules(
    promtool_binary: str, tmp_path: Path
) -> None:
    """docs/metrics.md's Prometheus configuration (monitoring without Helm), as written, with
    the rule file it names a copy of the shipped one: ``promtool check config`` accepts both,
    and the job is the one the rules select."""
    text = (DOCS / "metrics.md").read_text()
    block = text.split("# prometheus.yml\n", 1)[1].split("```", 1)[0]
    assert "job_name: incident-bridge" in block
    assert 'job="incident-bridge"' in (RULES / "rules.yaml").read_text()
    (tmp_path / "prometheus.yml").write_text(block)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "incident-bridge.yaml").write_text((RULES / "rules.yaml").read_text())
    result = subprocess.run(
        [promtool_binary, "check", "config", "prometheus.yml"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = (result.stdout + result.stderr).decode()
    assert result.returncode == 0 and "SUCCESS: 16 rules found" in out, out


def test_the_monitoring_docs() -> None:
    metrics = (DOCS / "metrics.md").read_text()
    assert "DESIGN.md" not in metrics  # not in the repository
    assert "## Monitoring without Helm" in metrics and "/api/dashboards/db" in metrics
    deploy = (DOCS / "deploy.md").read_text()
    assert "docker push registry.example.com/incident-bridge" in deploy
    assert "metrics.md#monitoring-without-helm" in deploy
