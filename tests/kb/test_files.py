"""The knowledge base's folder: a path never leaves it (``..``, absolute, links pointing out),
and files are replaced atomically, leaving no temporary file behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.kb.files import UnsafePath, inside, write_files


@pytest.mark.parametrize(
    "relative",
    ["", "../x.md", "2026/../../x.md", "/etc/passwd", "2026//x.md", "./x.md", "a\\b.md", "x\0.md"],
)
def test_a_path_that_is_not_inside_is_refused(tmp_path: Path, relative: str) -> None:
    with pytest.raises(UnsafePath):
        inside(tmp_path, relative)


def test_links_inside_are_followed_links_outside_refused(tmp_path: Path) -> None:
    kb, outside = tmp_path / "kb", tmp_path / "outside"
    (kb / "real").mkdir(parents=True)
    outside.mkdir()
    (kb / "2025").symlink_to(kb / "real", target_is_directory=True)
    (kb / "2026").symlink_to(outside, target_is_directory=True)
    (kb / "index.md").symlink_to(outside / "index.md")
    assert inside(kb, "2025/1-a.md") == kb.resolve() / "2025" / "1-a.md"
    for relative in ("2026/1-a.md", "index.md"):
        with pytest.raises(UnsafePath, match=r"is a link to .*outside it"):
            inside(kb, relative)


def test_files_are_written_whole_or_not_at_all(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    written = write_files(kb, {"2026/1-a.md": "one\n", "README.md": "index\n"})
    assert [p.read_text() for p in written] == ["one\n", "index\n"]
    write_files(kb, {"2026/1-a.md": "two\n"})
    assert (kb / "2026" / "1-a.md").read_text() == "two\n"
    assert sorted(p.name for p in kb.rglob("*")) == ["1-a.md", "2026", "README.md"]  # no temp
    (tmp_path / "out").mkdir()
    (kb / "2027").symlink_to(tmp_path / "out", target_is_directory=True)
    with pytest.raises(UnsafePath):
        write_files(kb, {"README.md": "changed\n", "2027/2-b.md": "x\n"})
    assert (kb / "README.md").read_text() == "index\n"  # checked before anything was written
    assert list((tmp_path / "out").iterdir()) == []
