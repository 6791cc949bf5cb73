"""The incident snapshot has one shape: the typed one, which docs/targets.md lists."""

from __future__ import annotations

import re
from pathlib import Path

from bridge.delivery.snapshot import (
    ALERT_KEYS,
    INCIDENT_KEYS,
    AlertSnapshot,
    IncidentSnapshot,
    from_store,
    normalized,
)

DOC = (Path(__file__).resolve().parents[2] / "docs" / "targets.md").read_text()


def _row(start: str) -> set[str]:
    """The names in backquotes of the table row that starts with ``start`` (names a template
    sees, in docs/targets.md)."""
    line = next(line for line in DOC.splitlines() if line.startswith(start))
    return set(re.findall(r"`([A-Za-z_]+)`", line.split("|")[2]))


def test_docs_list_the_snapshot_keys() -> None:
    assert _row("| `incident` | the incident snapshot") == set(IncidentSnapshot.__annotations__)
    assert _row("| `alerts` / `firing` / `resolved` |") == set(AlertSnapshot.__annotations__)


def test_from_store_speaks_alertmanager_and_links() -> None:
    stored = {
        "id": 7,
        "title": "x",
        "truncated_alerts": 2,
        "alerts": [
            {
                "fingerprint": "f",
                "status": "firing",
                "labels": {"a": "b"},
                "annotations": {},
                "starts_at": "2026-11-27T05:40:00Z",
                "ends_at": None,
                "generator_url": "http://p/graph",
                "first_seen": "2026-11-27T05:40:01Z",
            }
        ],
    }
    snap = from_store(stored, lambda i: f"https://bridge.example/incidents/{i}")
    assert snap["url"] == "https://bridge.example/incidents/7"
    assert snap["roles"] == {} and snap.get("truncated_alerts") == 2
    assert list(snap["alerts"][0]) == list(ALERT_KEYS)


def test_normalized_fills_every_documented_key() -> None:
    out = normalized({"id": 1, "alerts": [{"status": "firing"}]})
    assert set(INCIDENT_KEYS) <= set(out)
    assert set(out["roles"]) == {"commander", "scribe", "liaison", "responders"}
    assert set(out["alerts"][0]) == set(ALERT_KEYS)
