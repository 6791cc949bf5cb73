"""Golden files of what every target sends for every event (UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.targets import EVENTS, REGISTRY
from tests.targets.samples import build, sample, wire

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _suffix(type_name: str) -> str:
    return ".txt" if type_name in ("console", "email") else ".json"


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("type_name", sorted(REGISTRY))
async def test_golden(type_name: str, event: str) -> None:
    got = await wire(build(type_name), sample(event))
    path = GOLDEN / type_name / f"{event}{_suffix(type_name)}"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert got == path.read_text(encoding="utf-8"), f"{path} differs; UPDATE_GOLDEN=1 rewrites it"


def test_no_stale_golden_files() -> None:
    expected = {f"{t}/{e}{_suffix(t)}" for t in REGISTRY for e in EVENTS}
    found = {str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*") if p.is_file()}
    assert found <= expected, f"stale golden files: {sorted(found - expected)}"
