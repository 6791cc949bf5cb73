"""Git for the knowledge base, through the ``git`` binary in asyncio subprocesses: the event loop
never waits on it, and what git does is what an engineer's own ``git`` would do in that folder
(their configuration, hooks, credentials helpers and SSH keys apply). A library (pygit2,
dulwich, GitPython) would add a dependency, re-implement or wrap the same binary, and either
block the loop or need a thread of its own; the two commands the bridge needs (commit the
files it wrote, push) are a few lines here.

- ``commit``: ``git add`` and ``git commit`` of the given paths only (whatever else is staged
  in the repository is left alone); nothing changed in them: no commit (never an empty one).
  The author is ``--kb-author``; the committer too (so that a machine without ``user.name``
  commits), and the message names the person who published.
- ``GitPush``: the outbox's built-in sender ``@knowledge-base``: ``git push <remote> HEAD``. A
  failure is retryable: the worker retries it with backoff, then dead-letters it
  (``POST /api/v1/notifications/{id}/retry`` sends it again). Publishing never waits on it.

Commits and pushes of one folder take turns (``repo_lock``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import weakref
from dataclasses import dataclass
from pathlib import Path

from bridge.delivery.protocol import DeliveryResult, Notification, RetryableError

log = logging.getLogger("bridge.kb")

GIT = "git"
TIMEOUT_S = 60.0
PUSH_TIMEOUT_S = 120.0
# The name of the built-in sender that pushes the knowledge base: "@" is not allowed in the
# rules' target names, so no target of the rules can take it.
SENDER = "@knowledge-base"

_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def repo_lock(root: Path | None) -> asyncio.Lock:
    """The lock of one knowledge base folder (per event loop): publications, commits and
    pushes of it take turns."""
    per_loop = _locks.setdefault(asyncio.get_running_loop(), {})
    key = str(root.resolve()) if root is not None else ""
    return per_loop.setdefault(key, asyncio.Lock())


class GitError(Exception):
    """A git command failed; ``detail`` is what it said (its last lines)."""

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"{what}: {detail}" if detail else what)
        self.what = what
        self.detail = detail


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


_AUTHOR = re.compile(r"^\s*(.*?)\s*<([^<>]*)>\s*$")


def author_parts(author: str) -> tuple[str, str]:
    """``Name <address>`` -> (name, address); a bare name gets an empty address."""
    m = _AUTHOR.match(author)
    if m is None:
        return author.strip() or "incident-bridge", ""
    return m.group(1) or "incident-bridge", m.group(2)


def _env(author: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C", GIT_OPTIONAL_LOCKS="0")
    if author is not None:
        name, email = author_parts(author)
        env.update(GIT_COMMITTER_NAME=name, GIT_COMMITTER_EMAIL=email)
    return env


def _tail(text: str, lines: int = 3) -> str:
    return " / ".join(line.strip() for line in text.strip().splitlines()[-lines:])


async def run(cwd: Path, *args: str, author: str | None = None, limit_s: float = TIMEOUT_S) -> Done:
    """``git <args>`` in ``cwd``; raises ``GitError`` when git is missing or takes too long."""
    try:
        proc = await asyncio.create_subprocess_exec(
            GIT,
            *args,
            cwd=cwd,
            env=_env(author),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise GitError(f"git {args[0]}", "the git binary is not installed") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise GitError(f"git {args[0]}", f"no answer within {limit_s:g} s") from None
    return Done(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


async def is_repository(root: Path) -> bool:
    """Whether ``root`` is (in) a Git work tree; False when git is not installed (logged when
    the folder has a ``.git``)."""
    try:
        done = await run(root, "rev-parse", "--is-inside-work-tree")
    except GitError as exc:
        if (root / ".git").exists():
            log.warning("knowledge base %s: %s; publishing without a commit", root, exc)
        return False
    return done.code == 0 and done.out.strip() == "true"


async def commit(root: Path, paths: list[str], message: str, author: str) -> tuple[str, bool]:
    """Commit ``paths`` (relative to ``root``) with ``message`` by ``author``. Returns (the
    commit that holds them now, whether it is a new one); nothing to commit: no commit, and the
    last commit of the first path."""
    added = await run(root, "add", "--", *paths)
    if added.code != 0:
        raise GitError("git add", _tail(added.err))
    staged = await run(root, "diff", "--cached", "--quiet", "--", *paths)
    if staged.code == 0:
        last = await run(root, "log", "-1", "--format=%H", "--", paths[0])
        return last.out.strip(), False
    done = await run(
        root,
        "commit",
        "--quiet",
        f"--author={author}",
        "-m",
        message,
        "--",
        *paths,
        author=author,
    )
    if done.code != 0:
        raise GitError("git commit", _tail(done.err or done.out))
    head = await run(root, "rev-parse", "HEAD")
    if head.code != 0:
        raise GitError("git rev-parse", _tail(head.err))
    return head.out.strip(), True


class GitPush:
    """The outbox's built-in sender: pushes the knowledge base's HEAD to ``remote``. Any number
    of queued pushes of one folder are the same push; each is safe to repeat."""

    pacing_s = 0.0

    def __init__(self, root: Path, remote: str, name: str = SENDER) -> None:
        self.name = name
        self.root = root
        self.remote = remote

    async def send(self, notification: Notification) -> DeliveryResult:
        async with repo_lock(self.root):
            try:
                done = await run(
                    self.root, "push", "--quiet", self.remote, "HEAD", limit_s=PUSH_TIMEOUT_S
                )
            except GitError as exc:
                log.warning("knowledge base: push to %s failed: %s", self.remote, exc)
                raise RetryableError("git_push_failed") from None
            if done.code != 0:
                log.warning(
                    "knowledge base: push to %s failed (exit %d): %s",
                    self.remote,
                    done.code,
                    _tail(done.err),
                )
                raise RetryableError("git_push_failed")
            head = await run(self.root, "rev-parse", "HEAD")
        return DeliveryResult(provider_ids={"pushed": head.out.strip()[:40]})
