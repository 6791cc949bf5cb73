"""Rule files that would cost the loader without bound: a "billion laughs" of nested aliases,
nesting deeper than the parser's recursion, a file too large. Each is refused before anything
is built, quickly, with a clear error at its place, by the loader, ``rules check`` and
``rules test``."""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.rules import load_rules
from bridge.rules.source import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES
from tests.rules.hostile import alias_bomb, deep

ROOT = Path(__file__).resolve().parents[2]


def test_an_alias_bomb_is_refused_at_the_alias_quickly_and_small(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert path.stat().st_size < 1024
    tracemalloc.start()
    started = time.perf_counter()
    result = load_rules([path])
    took = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.ruleset is None
    assert result.errors == [f"{path}:8:31: aliases expand to more than {MAX_NODES} nodes"]
    assert took < 2.0, took
    assert peak < 20 * 2**20, peak


def test_aliases_within_the_bound_still_load(tmp_path: Path) -> None:
    path = tmp_path / "shared.yaml"
    path.write_text(
        "targets: {out: {type: console}}\n"
        "route:\n"
        "  name: root\n"
        "  tiers: &tiers {general: [out]}\n"
        "  routes:\n"
        "    - {name: a, matchers: ['team=\"a\"'], tiers: *tiers}\n"
        "    - {name: b, matchers: ['team=\"b\"'], tiers: *tiers}\n"
    )
    result = load_rules([path])
    assert result.errors == [] and result.ruleset is not None


def test_deep_nesting_is_a_clear_error_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(deep())
    result = load_rules([path])
    assert result.errors == [f"{path}:1:{9 + MAX_DEPTH - 1}: nesting deeper than {MAX_DEPTH}"]


def test_nesting_within_the_bound_loads(tmp_path: Path) -> None:
    """Twenty levels of routes (forty of YAML) are fine."""
    text = "targets: {out: {type: console}}\nroute:\n  name: r0\n"
    indent = "  "
    for i in range(1, 21):
        text += f"{indent}routes:\n{indent}  - name: r{i}\n"
        indent += "    "
    path = tmp_path / "nested.yaml"
    path.write_text(text)
    result = load_rules([path])
    assert result.errors == [] and result.ruleset is not None


def test_a_file_too_large_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "large.yaml"
    path.write_text("# " + "x" * MAX_FILE_BYTES + "\n")
    result = load_rules([path])
    assert result.errors == [f"{path}:0:0: larger than {MAX_FILE_BYTES} bytes"]


@pytest.mark.parametrize(
    ("text", "error"),
    [(deep(), "nesting deeper than"), (alias_bomb(), "aliases expand to more than")],
    ids=["deep", "bomb"],
)
def test_rules_check_prints_the_error_not_a_traceback(
    tmp_path: Path, text: str, error: str
) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "rules", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 1, proc.stderr
    assert error in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_rules_test_refuses_a_deep_test_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("tests: " + "[" * 3000 + "]" * 3000 + "\n")
    assert main(["rules", "test", str(path)]) == 1
    out = capsys.readouterr()
    assert f"nesting deeper than {MAX_DEPTH}" in out.out + out.err


SECRET = "DB_PASSWORD: hunter2-very-long-secret-value-0123456789abcdef\nroot: x:0:0:root:/root\n"


def test_a_link_leaving_the_rules_folder_is_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret.env"
    secret.write_text(SECRET)
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "00-ok.yaml").write_text("targets: {out: {type: console}}\n")
    link = folder / "leak.yaml"
    link.symlink_to(secret)
    for paths in ([folder], [link]):
        result = load_rules(paths)
        assert result.errors == [
            f"{link}:0:0: a symbolic link to a file outside the rules folder: not read"
        ]
    assert main(["rules", "check", str(folder)]) == 1
    out = capsys.readouterr()
    assert "symbolic link" in out.out + out.err
    assert "hunter2" not in out.out + out.err and "DB_PASSWORD" not in out.out + out.err


def test_links_inside_the_folder_are_followed(tmp_path: Path) -> None:
    """A Kubernetes ConfigMap volume: each file a link into ..data, itself a link."""
    folder = tmp_path / "rules"
    (folder / "..2026_12_07").mkdir(parents=True)
    (folder / "..2026_12_07" / "root.yaml").write_text(
        "targets: {out: {type: console}}\nroute: {name: root, tiers: {general: [out]}}\n"
    )
    (folder / "..data").symlink_to("..2026_12_07")
    (folder / "root.yaml").symlink_to("..data/root.yaml")
    result = load_rules([folder])
    assert result.errors == [] and result.ruleset is not None


def test_a_file_that_is_not_rules_is_named_not_quoted(tmp_path: Path) -> None:
    path = tmp_path / "notes.yaml"
    path.write_text(SECRET)
    result = load_rules([path])
    assert result.errors == [
        f"{path}:1:1: not a rules file: no top-level key targets, rotations, templates, "
        "heartbeats, components, route, routes"
    ]


def test_files_within_their_bounds_are_bounded_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.rules import loader

    monkeypatch.setattr(loader, "MAX_TOTAL_NODES", 40)
    for i in range(3):
        (tmp_path / f"{i}.yaml").write_text(f"targets: {{t{i}: {{type: console}}}}\n" + "#\n" * i)
    assert load_rules([tmp_path]).errors == []  # 3 x 7 nodes
    for i in range(3, 8):
        (tmp_path / f"{i}.yaml").write_text(f"targets: {{t{i}: {{type: console}}}}\n")
    result = load_rules([tmp_path])
    assert result.ruleset is None
    assert result.errors == [
        f"{tmp_path / '5.yaml'}:0:0: the rule files up to this one have more than 40 nodes together"
    ]
