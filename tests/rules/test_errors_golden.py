"""Golden error messages: one rule file per error class under bad/, the expected messages
next to it in <case>.expected. Regenerate with UPDATE_GOLDEN=1 after checking the diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.rules import load_rules
from bridge.rules.samples import check_titles

ROOT = Path(__file__).resolve().parents[2]
BAD = Path(__file__).parent / "bad"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
CASES = sorted(p.stem for p in BAD.glob("*.yaml"))


def test_there_are_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", CASES)
def test_error_messages(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    rel = (BAD / f"{case}.yaml").relative_to(ROOT)
    result = load_rules([rel], env={"X": "x"})
    assert result.ruleset is None, "a bad rule file must not load"
    got = "\n".join(result.errors) + "\n"
    expected_file = BAD / f"{case}.expected"
    if UPDATE:
        expected_file.write_text(got)
    assert expected_file.exists(), f"no {expected_file.name}; run with UPDATE_GOLDEN=1"
    assert got == expected_file.read_text()
    for line in result.errors:
        # every message names its place: file:line:col with 1-based line and column
        place = line.split(": ", 1)[0]
        name, ln, col = place.rsplit(":", 2)
        assert name == str(rel) and int(ln) >= 1 and int(col) >= 1, line


def test_no_secret_leaks_into_errors(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("s3cr3t-from-file\n")
    (tmp_path / "r.yaml").write_text(
        "targets:\n"
        "  a: {type: slack, token_file: secret.txt, api_url: 5}\n"
        "  b: {type: webhook, url: '${HOOK}', bogus: '${HOOK}'}\n"
        "route: {tiers: {general: [a, b, c]}}\n"
    )
    result = load_rules([tmp_path / "r.yaml"], env={"HOOK": "https://s3cr3t-from-env"})
    text = "\n".join(result.errors + result.warnings)
    assert result.errors
    assert "s3cr3t" not in text


def test_errors_across_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a.yaml").write_text(
        "targets:\n  out: {type: console}\nrotations:\n  r: {members: [x, y]}\nroute: {name: one}\n"
    )
    Path("b.yaml").write_text(
        "targets:\n  out: {type: console}\nrotations:\n  r: {members: [x, y]}\nroute: {name: two}\nroutes:\n  - {name: one}\n"
    )
    result = load_rules(["."])
    assert result.errors == [
        'b.yaml:2:3: target "out" already declared at a.yaml:2:3',
        'b.yaml:4:3: rotation "r" already declared at a.yaml:4:3',
        "b.yaml:5:1: root route already defined at a.yaml:5:8",
        'b.yaml:7:12: route "one": duplicate route name (first at a.yaml:5:15)',
    ]


RENDER = Path(__file__).parent / "bad_render"
RENDER_CASES = sorted(p.stem for p in RENDER.glob("*.yaml"))
NOW = 1_795_000_000 * 10**9


@pytest.mark.parametrize("case", RENDER_CASES)
def test_title_render_errors(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rules that load, but whose titles raise for their routes' sample labels: the errors
    ``rules check`` adds, at the template's place."""
    monkeypatch.chdir(ROOT)
    rel = (RENDER / f"{case}.yaml").relative_to(ROOT)
    result = load_rules([rel], env={})
    assert result.ruleset is not None, result.errors
    errors = check_titles(result.ruleset, NOW)
    got = "\n".join(errors) + "\n"
    expected_file = RENDER / f"{case}.expected"
    if UPDATE:
        expected_file.write_text(got)
    assert expected_file.exists(), f"no {expected_file.name}; run with UPDATE_GOLDEN=1"
    assert got == expected_file.read_text()
    assert errors
    for line in errors:
        place = line.split(": ", 1)[0]
        name, ln, col = place.rsplit(":", 2)
        assert name == str(rel) and int(ln) >= 1 and int(col) >= 1, line


def test_shipped_rules_render_for_their_sample_labels() -> None:
    result = load_rules([ROOT / "rules"], resolve_secrets=False)
    assert result.ruleset is not None
    assert check_titles(result.ruleset, NOW) == []
