"""Every benchmark keeps running: each bench/*.py has a smoke mode, CI runs them all through
tools/bench-smoke (found by a glob), and the runner fails when one fails. The smoke runs
themselves take about a minute: CI runs them (.ci/run), not this test."""

from __future__ import annotations

import ast
import importlib.util
import sqlite3
import subprocess
from pathlib import Path

from bridge.store.migrations import MIGRATIONS

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "tools" / "bench-smoke"


def declares_smoke(path: Path) -> bool:
    """An ``add_argument("--smoke", ...)`` call in the script."""
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
            and any(isinstance(a, ast.Constant) and a.value == "--smoke" for a in node.args)
        ):
            return True
    return False


def test_every_benchmark_has_a_smoke_mode() -> None:
    scripts = sorted((ROOT / "bench").glob("*.py"))
    assert len(scripts) >= 10
    missing = [p.name for p in scripts if not declares_smoke(p)]
    assert not missing, f"bench scripts without --smoke: {missing}"


def test_ci_runs_every_benchmark_through_the_runner() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\ntools/bench-smoke\n" in ci
    assert "scripts=(bench/*.py)" in RUNNER.read_text()  # new scripts are picked up


def run(*scripts: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUNNER), *map(str, scripts)], capture_output=True, text=True, timeout=60
    )


def test_the_runner_fails_when_a_benchmark_fails(tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text("import sys\nassert sys.argv[1:] == ['--smoke']\nprint('figures')\n")
    failing = tmp_path / "failing.py"
    failing.write_text("raise SystemExit('lost a 200')\n")
    no_smoke = tmp_path / "no_smoke.py"
    no_smoke.write_text("import argparse\nargparse.ArgumentParser().parse_args()\n")
    passed = run(good)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "ok " in passed.stdout and "all passed" in passed.stdout
    failed = run(good, failing, no_smoke)
    assert failed.returncode == 1
    assert "2 failed" in failed.stdout and "lost a 200" in failed.stdout
    assert "unrecognized arguments: --smoke" in failed.stdout


def test_the_metrics_benchmark_builds_on_every_migration(tmp_path: Path) -> None:
    """bench/metrics.py times migration 0011 on a big store built at 0010, then applies the
    migrations after it, whatever they are by now."""
    spec = importlib.util.spec_from_file_location("bench_metrics", ROOT / "bench" / "metrics.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    db = tmp_path / "big.db"
    figures = module.build(db, 300)
    assert figures["later_migrations"] == len([m for m in MIGRATIONS if m[0] > "0011_metrics"])
    conn = sqlite3.connect(db)
    try:
        applied = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
        assert applied == {name for name, _ in MIGRATIONS}
        assert conn.execute("SELECT count(*) FROM incidents").fetchone() == (300,)
    finally:
        conn.close()
