"""The service's rooms: the shared state, reload and ``act`` in ``bridge.service``, the scheduler
and the API access in modules of their own; and the one call a writer makes after its commit
(``AppState.committed``), which wakes whoever must look (the outbox worker, the scheduler)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any, cast

import pytest

from bridge.service import AppState

PACKAGE = Path(__file__).resolve().parents[1] / "bridge"


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("bridge.service", ("AppState", "reload", "act", "activate", "BackgroundLoop")),
        (
            "bridge.service.scheduler",
            ("ReminderScheduler", "fire_reminders", "advance_followups"),
        ),
        (
            "bridge.service.access",
            ("ApiAccess", "api_access", "ensure_api_token", "token_fingerprint"),
        ),
    ],
)
def test_each_job_of_the_service_has_its_module(module: str, names: tuple[str, ...]) -> None:
    loaded = importlib.import_module(module)
    for name in names:
        assert getattr(loaded, name).__module__ == module, name


class Worker:
    def __init__(self) -> None:
        self.woken = 0

    def notify(self) -> None:
        self.woken += 1


def bare_state(worker: Worker | None) -> AppState:
    """A state with only what ``committed`` reads: the worker and the scheduler's event."""
    none = cast(Any, None)
    return AppState(settings=none, store=none, metrics=none, runtime=none, worker=cast(Any, worker))


def test_a_commit_wakes_whoever_must_look() -> None:
    worker = Worker()
    state = bare_state(worker)
    state.committed(notifications=0)
    assert (worker.woken, state.scheduler_due.is_set()) == (0, False)
    state.committed(notifications=3)
    assert (worker.woken, state.scheduler_due.is_set()) == (1, False)
    state.committed(notifications=0, mitigated=True)
    assert (worker.woken, state.scheduler_due.is_set()) == (1, True)
    bare_state(None).committed(notifications=2, mitigated=True)  # no worker (CLI, tests): fine


def wakes(path: Path) -> list[int]:
    """Lines of ``path`` that wake the outbox worker or the scheduler themselves."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and (
            (node.attr == "notify" and getattr(node.value, "attr", None) == "worker")
            or (node.attr == "set" and getattr(node.value, "attr", None) == "scheduler_due")
            or node.attr == "wake_scheduler"
        ):
            lines.append(node.lineno)
    return lines


def test_writers_say_what_they_committed_through_one_call() -> None:
    found = {
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "service" / "__init__.py"
        for line in wakes(path)
    }
    assert not found, "wake through state.committed(...), not by hand"
