"""The files the service keeps beside its database (``<db>.api-token``, ``<db>.session-key``,
``<db>.lock``), opened so that another local user cannot choose what they hold or where they
write.

A secret read from a file is trusted only when that file is the service's own: a regular file
(never a symbolic link, which ``O_NOFOLLOW`` refuses to follow), with one name (a hard link to
another file could be truncated through it), owned by the service's user and readable by it
alone. A new secret is written to a private temporary file (``O_EXCL``, 0600) and renamed into
place, so that nothing planted at its name is opened or truncated. The folder itself must not
be writable by other users: whoever can write it can plant or replace these files (and the
database's own ``-wal`` and ``-shm``), whatever the checks on each file.

Only the standard library: the settings (``config``), the store and the service use it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

# What is kept beside ``<db>``: the generated API token, the pages' signing key, the lock.
BESIDE_DB = (".api-token", ".session-key", ".lock")
_MAX_READ = 64 * 1024


class UnsafeFile(Exception):
    """A file or folder another user could have chosen the content of; the message names it
    and says how to fix it."""


def check_folder(folder: Path) -> None:
    """Refuse a folder that users other than the service's can write to (root aside), or that
    another user owns (they could make it writable at any time)."""
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        return  # made 0700 when it is created
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid not in (os.geteuid(), 0):
        raise UnsafeFile(
            f"the database folder {folder} belongs to another user (uid {st.st_uid}): they "
            "could plant or replace the files beside the database; give the service a folder "
            "of its own (chown it to the service's user, chmod 700)"
        )
    # Group write is the service's own when the group is its own (a user's private group;
    # Kubernetes' fsGroup set to the pod's runAsGroup); any other writer is refused.
    writers = 0o002 if st.st_gid == os.getegid() else 0o022
    if mode & writers:
        raise UnsafeFile(
            f"the database folder {folder} can be written by other users (mode {mode:o}): they "
            "could plant or replace the files beside the database (its API token, its session "
            f"key); run `chmod go-w {folder}` (700 is best) or give --db a folder of its own"
        )


def _check_open(fd: int, path: Path, *, secret: bool) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(f"{path} is not a regular file; remove it")
    if st.st_uid != os.geteuid():
        raise UnsafeFile(
            f"{path} belongs to another user (uid {st.st_uid}), not to the service's "
            f"(uid {os.geteuid()}); remove it"
        )
    if st.st_nlink != 1:
        raise UnsafeFile(f"{path} has {st.st_nlink} names (a hard link); remove it")
    if secret and stat.S_IMODE(st.st_mode) & 0o077:
        raise UnsafeFile(
            f"{path} can be read by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run `chmod 600 {path}`, or remove it to have a new one made"
        )


def _open(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError:
        if os.path.islink(path):  # ELOOP (or EMLINK on some systems)
            raise UnsafeFile(f"{path} is a symbolic link; remove it") from None
        raise


def check_file(path: Path, *, secret: bool = True) -> None:
    """Refuse an existing ``path`` that is not the service's own private file; a missing one
    passes (it will be made)."""
    try:
        fd = _open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        _check_open(fd, path, secret=secret)
    finally:
        os.close(fd)


def read_private(path: Path) -> str | None:
    """The text of the service's own private file (stripped), or None when there is none."""
    try:
        fd = _open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        _check_open(fd, path, secret=True)
        data = os.read(fd, _MAX_READ)
    finally:
        os.close(fd)
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise UnsafeFile(f"{path} is not ASCII text; remove it to have a new one made") from None


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only: a new temporary file beside it
    (``O_EXCL``, 0600), flushed to disk, renamed over the name. Whatever was at the name (a
    symbolic link too) is replaced, never written through."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_folder(path.parent)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # O_EXCL, 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)  # the rename survives a power cut
    finally:
        os.close(dir_fd)


def open_lock(path: Path) -> int:
    """A descriptor of the lock file ``path`` (made 0600 when missing), opened read-write
    without following a symbolic link; refused when it is not the service's own file."""
    fd = _open(path, os.O_RDWR | os.O_CREAT)
    try:
        _check_open(fd, path, secret=False)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_beside(db: Path) -> None:
    """At start-up: the database's folder, and each file kept beside the database that exists."""
    check_folder(db.parent)
    for suffix in BESIDE_DB:
        check_file(db.with_name(db.name + suffix), secret=suffix != ".lock")
