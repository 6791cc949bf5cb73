"""The knowledge base's folder: where a file may go (never outside the folder, whatever the path
or the links in it say), and writing files atomically (a temporary file beside it, then a
rename: a reader or a crash sees the old file or the new one, never half of one).

Synchronous: the service calls these in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath


class UnsafePath(Exception):
    """A file the knowledge base must not write: it would land outside its folder."""


def inside(root: Path, relative: str) -> Path:
    """``root``/``relative``, refused (``UnsafePath``) when ``relative`` is absolute, has a
    ``..`` or an empty part, or when a folder on the way or the file itself exists as a link
    that resolves outside ``root``."""
    rel = PurePosixPath(relative)
    if (
        not relative
        or rel.is_absolute()
        or "\\" in relative
        or "\0" in relative
        or any(part in ("", ".", "..") for part in relative.split("/"))
    ):
        raise UnsafePath(f"{relative!r} is not a path inside the knowledge base")
    base = root.resolve()
    current = base
    for part in rel.parts:
        current = current / part
        if current.is_symlink() or current.exists():
            real = current.resolve()
            if not real.is_relative_to(base):
                shown = current.relative_to(base)
                raise UnsafePath(
                    f"{shown} in the knowledge base {root} is a link to {real}, outside it; "
                    "refused, nothing written"
                )
    return base.joinpath(*rel.parts)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder and a
    rename; the folder is created when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_files(root: Path, files: Mapping[str, str]) -> list[Path]:
    """Write every file (relative path -> text) under ``root``, creating folders; every path is
    checked before the first is written, so a refused one leaves everything as it was."""
    if root.exists() and not root.is_dir():
        raise UnsafePath(f"the knowledge base {root} is not a folder")
    targets = [(inside(root, rel), text) for rel, text in files.items()]
    for path, _ in targets:
        if path.is_dir():
            raise UnsafePath(f"{path} is a folder; refused, nothing written")
    root.mkdir(parents=True, exist_ok=True)
    for path, text in targets:
        # Checked again right before: a link made meanwhile is refused too.
        inside(root, str(path.relative_to(root.resolve())))
        write_atomically(path, text)
    return [path for path, _ in targets]
