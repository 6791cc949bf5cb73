from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def amtool() -> str:
    """amtool's path; skipped when missing, but a failure under CI=true (CI must run it)."""
    path = shutil.which("amtool") or (
        "/usr/bin/amtool" if Path("/usr/bin/amtool").exists() else None
    )
    if path:
        return path
    message = "amtool not found (Debian package prometheus-alertmanager)"
    if in_ci():
        pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(message)
