"""Where each kind of module goes (docs/architecture.md): the loose top-level modules of
``bridge`` stay where they are, and a new module goes into a package, never beside them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The top-level modules there are; this list only shrinks (a module moved into a package).
LOOSE = {
    "__init__",
    "__main__",
    "alertmanager_api",
    "app",
    "config",
    "indexer",
    "logs",
    "metrics",
    "private_files",
    "promql",
    "reconciler",
    "runtime",
    "silences",
}


def test_a_new_module_goes_into_a_package() -> None:
    loose = {p.stem for p in (ROOT / "bridge").glob("*.py")}
    assert loose <= LOOSE, f"{sorted(loose - LOOSE)}: into a package (docs/architecture.md)"


def test_the_map_names_the_loose_modules() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Where each kind of module goes", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(\w+)`", section.split(";", 1)[0]))
    assert named == LOOSE - {"__init__", "__main__"}
