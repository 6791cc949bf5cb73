"""Fixtures for the black-box tests: a bridge subprocess and the Alertmanager binaries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import service_db
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
def bridge_db(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """The database of a test's bridge: None (SQLite's file in the bridge's folder), or the URL
    of a PostgreSQL database of its own when the test runs on that backend (it takes
    ``backend`` or is marked ``BOTH_BACKENDS``: ``tests/conftest.service_db``). The test
    cluster trusts loopback: no password."""
    url = service_db(request, tmp_path, "unused").get("database_url")
    return None if url is None else url.conninfo


@pytest.fixture
def bridge(tmp_path: Path, bridge_db: str | None) -> Iterator[Bridge]:
    """A bridge with a bearer token and a fresh database, stopped (and reaped) after the test."""
    with running_bridge(tmp_path / "bridge", database_url=bridge_db) as running:
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
