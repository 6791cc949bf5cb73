"""The docs are part of the interface: every command, flag, variable, endpoint and metric is documented."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

from bridge.app import create_app
from bridge.cli import build_parser
from bridge.config import Settings
from bridge.metrics import Metrics
from bridge.runtime import builtin_runtime
from bridge.service import AppState
from bridge.store import Store
from bridge.targets.base import TargetDeps

ROOT = Path(__file__).parent.parent
DOCS = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def test_every_command_and_flag_is_documented() -> None:
    missing = []
    for path, parser in commands(build_parser()):
        if (
            path
            and f"incident-bridge {' '.join(path)}" not in DOCS
            and f"`{' '.join(path)}`" not in DOCS
        ):
            missing.append(" ".join(path))
        for action in parser._actions:
            for flag in action.option_strings:
                if (
                    flag.startswith("--")
                    and flag not in ("--help", "--version")
                    and not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", DOCS)
                ):
                    missing.append(f"{' '.join(path)} {flag}")
    assert not missing, f"undocumented: {missing}"


def test_every_endpoint_is_documented(tmp_path: Path) -> None:
    store = Store(tmp_path / "x.db")
    app = create_app(
        AppState(
            settings=Settings(db=tmp_path / "x.db"),
            store=store,
            metrics=Metrics.create(),
            runtime=builtin_runtime(3600, TargetDeps()),
        )
    )
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    missing = sorted(p for p in paths if p.rstrip("/") not in DOCS)
    assert not missing, missing


def test_every_metric_is_documented() -> None:
    metrics = Metrics.create()
    names = {m.name for m in metrics.registry.collect()}
    suffix = {"counter": "_total"}
    missing = []
    for family in metrics.registry.collect():
        name = family.name + suffix.get(family.type, "")
        if f"`{name}`" not in DOCS:
            missing.append(name)
    assert names and not missing, missing
