"""``rules check|test|route-test|show``: output and every exit code (0, 1, 3)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge.cli import main

ROOT = Path(__file__).resolve().parents[2]
RULES = str(ROOT / "rules")

LINTY = """
targets:
  out: {type: console}
  unused: {type: console}
rotations:
  solo: {members: [alice]}
route:
  tiers: {general: [out]}
  roles: {commander: {rotation: solo}}
  routes:
    - {name: everything, matchers: ['a=~".*"']}
    - {name: never, matchers: ['a="b"']}
"""

FAILING_TEST = """
rule_files: [rules.yaml]
at: 2026-11-27T10:00:00Z
tests:
  - name: expects the wrong route
    alerts: [{labels: {a: b}}]
    routes: [never]
    incidents: [{severity: sev1}]
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["rules", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_shipped_rules_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", RULES)
    assert code == 0
    assert "SUCCESS: 9 routes, 5 targets, 4 rotations" in out


def test_shipped_rules_have_no_lint_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", "--lint-fatal", RULES)
    assert code == 0, err


def test_check_missing_path_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", str(tmp_path / "nope"))
    assert code == 1 and "no such file or directory" in err
    code, _, err = run(capsys, "check", str(tmp_path))
    assert code == 1 and "no *.yaml rule files" in err


def test_check_defaults_to_rules_directory(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = run(capsys, "check")
    assert code == 0 and "SUCCESS" in out


def test_check_errors_exit_1_with_every_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", str(ROOT / "tests/rules/bad/many_errors.yaml"))
    assert code == 1
    assert sum(1 for line in err.splitlines() if "many_errors.yaml:" in line) == 7
    assert "FAILED: 7 error(s)" in err


def test_check_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "check", "-o", "json", str(ROOT / "tests/rules/bad/unknown_target.yaml")
    )
    data = json.loads(out)
    assert code == 1 and data["status"] == "failed" and len(data["errors"]) == 4


def test_lint_warnings_exit_0_unless_lint_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = write(tmp_path / "rules.yaml", LINTY)
    code, out, err = run(capsys, "check", str(rules))
    assert code == 0 and "SUCCESS" in out
    assert 'route "never" is unreachable' in err
    assert 'rotation "solo" has only one member' in err
    assert 'target "unused" is never used' in err
    code, _, err = run(capsys, "check", "--lint-fatal", str(rules))
    assert code == 3 and "--lint-fatal" in err
    code, out, _ = run(capsys, "check", "--lint-fatal", "-o", "json", str(rules))
    assert code == 3 and json.loads(out)["status"] == "lint"


def test_no_secrets_checks_without_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    rules = write(
        tmp_path / "r.yaml",
        "targets:\n  t: {type: slack_webhook, url: '${NOT_SET_ANYWHERE}'}\nroute: {tiers: {general: [t]}}\n",
    )
    assert run(capsys, "check", str(rules))[0] == 1
    assert run(capsys, "check", "--no-secrets", str(rules))[0] == 0


def test_rules_test_shipped_examples_pass(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in (ROOT / "rules" / "tests").glob("*.yaml"))
    assert files
    code, out, err = run(capsys, "test", *files)
    assert code == 0, err
    assert out.count("SUCCESS") == len(files)


def test_rules_test_failure_prints_a_diff_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "rules.yaml", LINTY)
    t = write(tmp_path / "t.yaml", FAILING_TEST)
    code, _, err = run(capsys, "test", str(t))
    assert code == 1
    assert 'FAILED: "expects the wrong route"' in err
    assert '-    "never"' in err and '+    "everything"' in err
    assert '-      "severity": "sev1"' in err and '+      "severity": "sev4"' in err
    code, out, _ = run(capsys, "test", "-o", "json", str(t))
    data = json.loads(out)
    assert code == 1 and data["status"] == "failed" and not data["files"][0]["cases"][0]["ok"]


def test_rules_test_bad_test_file_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = write(tmp_path / "t.yaml", "tests:\n  - name: x\n    alerts: [{labls: {}}]\n")
    code, _, err = run(capsys, "test", str(t))
    assert code == 1 and 't.yaml:3:15: unknown key "labls" (did you mean "labels"?)' in err


def test_route_test(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "route-test", "--rules", RULES, "--at", "2026-11-27T10:00:00Z",
                       "team=platform", "service=postgres", "alertname=PGDown")  # fmt: skip
    assert code == 0
    assert out.splitlines()[0] == "platform-database"  # one alert, one incident
    assert "responders=ines" in out


def test_route_test_tree_and_expect(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "route-test", "--tree", "--rules", RULES, "--expect", "payments-ledger",
                       "team=payments", "service=ledger")  # fmt: skip
    assert code == 0
    assert 'payments-ledger  {service="ledger"}  <- matched' in out
    code, _, err = run(
        capsys, "route-test", "--rules", RULES, "--expect", "default", "team=payments"
    )
    assert code == 1 and "FAILED: expected routes default, got payments" in err
    code, out, _ = run(capsys, "route-test", "-o", "json", "--rules", RULES, "alertname=X")
    assert code == 0 and json.loads(out)["routes"] == ["default"]


def test_route_test_bad_label_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "route-test", "--rules", RULES, "nolabel")[0] == 1


def test_show_masks_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_URL", "https://hooks.example.com/very-secret-path")
    (tmp_path / "token").write_text("xoxb-very-secret\n")
    rules = write(
        tmp_path / "r.yaml",
        """
        targets:
          hook: {type: slack_webhook, url: "${HOOK_URL}"}
          bot: {type: slack, token_file: token, channel: "#ops"}
        route: {tiers: {general: [hook, bot]}}
        """,
    )
    code, out, _ = run(capsys, "show", str(rules))
    assert code == 0
    assert "very-secret" not in out
    data = json.loads(out)
    assert data["targets"]["hook"]["settings"]["url"] == "<secret>"
    assert data["targets"]["bot"]["settings"] == {"token": "<secret>", "channel": "#ops"}


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["rules", "frobnicate"])
    assert exc.value.code == 2


def test_module_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "rules", "check", RULES],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "SUCCESS" in proc.stdout


RAISING_TITLE = """
route:
  routes:
    - name: cpu
      matchers: ['alertname="HighCPU"']
      title: "CPU at {{ labels.value|float / (labels.value|float - 3) }}"
"""

RAISING_TITLE_TEST = """
rule_files: [rules.yaml]
at: 2026-11-27T10:00:00Z
tests:
  - name: the title divides by zero at 3
    alerts: [{labels: {alertname: HighCPU, value: "3"}}]
    routes: [cpu]
    incidents: [{route: cpu, title: HighCPU}]
  - name: and not at 4
    alerts: [{labels: {alertname: HighCPU, value: "4"}}]
    incidents: [{route: cpu, title: CPU at 4.0}]
"""


def test_check_renders_titles_against_sample_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = write(
        tmp_path / "rules.yaml",
        """
        targets: {out: {type: console}}
        route:
          tiers: {general: [out]}
          routes:
            - name: cpu
              matchers: ['alertname="HighCPU"', 'service=~"api|web"']
              title: "CPU at {{ labels.value|float / 0 }}"
        """,
    )
    code, _, err = run(capsys, "check", str(rules))
    assert code == 1
    assert (
        f'{rules}:8:14: route "cpu": title: ZeroDivisionError: float division by zero '
        '(labels {alertname="HighCPU", instance="host-1:9100", service="api", '
        'severity="critical", team="sample-team", value="42"})'
    ) in err
    assert "FAILED: 1 error(s)" in err and "Traceback" not in err
    code, out, _ = run(capsys, "check", "-o", "json", str(rules))
    assert code == 1 and "ZeroDivisionError" in json.loads(out)["errors"][0]


def test_route_test_reports_a_title_that_raises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = write(tmp_path / "rules.yaml", RAISING_TITLE)
    code, out, err = run(
        capsys, "route-test", "--rules", str(rules), "alertname=HighCPU", "value=3"
    )
    assert code == 1
    assert out.splitlines()[0] == "cpu" and "title='HighCPU'" in out  # the fallback title
    assert 'ERROR: route "cpu": title: ZeroDivisionError: float division by zero' in err
    assert "Traceback" not in err
    code, out, _ = run(capsys, "route-test", "-o", "json", "--rules", str(rules),
                       "alertname=HighCPU", "value=3")  # fmt: skip
    (incident,) = json.loads(out)["incidents"]
    assert code == 1
    assert incident["render_errors"] == ["title: ZeroDivisionError: float division by zero"]
    code, out, err = run(
        capsys, "route-test", "--rules", str(rules), "alertname=HighCPU", "value=4"
    )
    assert code == 0 and "title='CPU at 4.0'" in out and not err


def test_rules_test_reports_a_title_that_raises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "rules.yaml", RAISING_TITLE)
    t = write(tmp_path / "t.yaml", RAISING_TITLE_TEST)
    code, _, err = run(capsys, "test", str(t))
    assert code == 1
    assert 'FAILED: "the title divides by zero at 3"' in err
    assert 'ERROR: route "cpu": title: ZeroDivisionError: float division by zero' in err
    assert "and not at 4" not in err and "Traceback" not in err
    code, out, _ = run(capsys, "test", "-o", "json", str(t))
    failed, passed = json.loads(out)["files"][0]["cases"]
    assert code == 1 and not failed["ok"] and passed["ok"]
    assert failed["render_errors"] == [
        'route "cpu": title: ZeroDivisionError: float division by zero'
    ]
