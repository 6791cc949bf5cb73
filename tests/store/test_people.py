"""The role holders' handles from the rotations reach the incident (and so the targets)."""

from __future__ import annotations

import json
from pathlib import Path

from bridge.core.alertmanager import parse_webhook
from bridge.rules import RulesPolicy, load_rules
from bridge.store import Store
from bridge.store.ingest import apply_webhook
from bridge.store.queries import get_incident
from tests.conftest import fixture_body

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_795_752_400 * 10**9  # 2026-11-27, a week the rotations cover


async def test_handles_of_the_role_holders_are_kept_with_the_incident(store: Store) -> None:
    result = load_rules([ROOT / "rules"], resolve_secrets=False)
    assert result.ruleset is not None
    body = fixture_body("firing-group-bearer.json")
    payload = parse_webhook(json.dumps(body).encode())
    decisions = RulesPolicy(result.ruleset).evaluate(payload, NOW)
    await store.write(
        lambda conn: apply_webhook(
            conn, payload=payload, decisions=decisions, sha256="x", body=None, now=NOW
        )
    )
    incident = await store.read(lambda conn: get_incident(conn, 1))
    assert incident is not None
    (commander,) = incident["roles"]["commander"]
    assert incident["people"][commander]["slack"].startswith("U01")
    assert "@example.com" in incident["people"][commander]["email"]
