"""Fixtures for the black-box tests: a bridge subprocess and the Alertmanager binaries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.procs import (
    ALERTMANAGER,
    AMTOOL,
    PROMETHEUS,
    PROMTOOL,
    Bridge,
    require_binary,
    running_bridge,
)


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[Bridge]:
    """A bridge with a bearer token and a fresh database, stopped (and reaped) after the test."""
    with running_bridge(tmp_path / "bridge") as running:
        yield running


@pytest.fixture
def alertmanager_binary() -> str:
    return require_binary(ALERTMANAGER)


@pytest.fixture
def amtool_binary() -> str:
    return require_binary(AMTOOL)


@pytest.fixture
def prometheus_binary() -> str:
    return require_binary(PROMETHEUS)


@pytest.fixture
def promtool_binary() -> str:
    return require_binary(PROMTOOL)
