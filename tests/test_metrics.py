"""The operational counters exist at 0 before their first event, for every label value known in
advance: a series that appears at 1 loses that first event to Prometheus's ``increase()`` and
``rate()`` (tests/integration/test_dashboard.py shows it against the real Prometheus)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bridge.core.events import EVENTS
from bridge.metrics import WEBHOOK_CODES
from tests.conftest import WRITE
from tests.test_reload import served

RULES = """\
targets:
  general-chat: {type: console}
  pager: {type: console}
route:
  name: root
  severity: sev1
  tiers: {general: [general-chat], stakeholders: {targets: [pager]}}
"""
MORE = RULES.replace(
    "  pager: {type: console}\n", "  pager: {type: console}\n  added: {type: console}\n"
)


def samples(text: str, name: str) -> dict[str, float]:
    """The samples of ``name``, by their label text."""
    found = {}
    for match in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        found[match.group(1)] = float(match.group(2))
    return found


async def test_counters_exist_at_zero_before_their_first_event(
    aiohttp_client: Any, tmp_path: Path, db_settings: dict[str, Any]
) -> None:
    client, _state, _rules = await served(aiohttp_client, tmp_path, RULES, db_settings)
    text = await (await client.get("/metrics")).text()
    delivered = samples(text, "incident_bridge_notifications_total")
    for target in ("general-chat", "pager"):
        for event in EVENTS:
            assert delivered[f'event="{event}",target="{target}"'] == 0.0, (target, event)
        assert (
            f'incident_bridge_notification_duration_seconds_count{{target="{target}"}} 0.0' in text
        )
    assert len(delivered) == 2 * len(EVENTS)
    codes = samples(text, "incident_bridge_webhook_requests_total")
    assert codes == {f'code="{code}"': 0.0 for code in WEBHOOK_CODES}
    statuses = samples(text, "incident_bridge_alerts_received_total")
    assert statuses == {'status="firing"': 0.0, 'status="resolved"': 0.0}


async def test_a_reload_that_adds_a_target_exports_it_at_zero(
    aiohttp_client: Any, tmp_path: Path, db_settings: dict[str, Any]
) -> None:
    client, _state, rules = await served(aiohttp_client, tmp_path, RULES, db_settings)
    assert 'target="added"' not in await (await client.get("/metrics")).text()
    rules.write_text(MORE)
    assert (await client.post("/-/reload", headers=WRITE)).status == 200
    text = await (await client.get("/metrics")).text()
    delivered = samples(text, "incident_bridge_notifications_total")
    assert all(delivered[f'event="{event}",target="added"'] == 0.0 for event in EVENTS)


async def test_an_event_counts_on_its_zero_series(
    aiohttp_client: Any, tmp_path: Path, db_settings: dict[str, Any]
) -> None:
    client, _state, _rules = await served(aiohttp_client, tmp_path, RULES, db_settings)
    await client.get("/metrics")
    assert (await client.post("/api/v1/alerts", data=b"{not json")).status == 400
    codes = samples(
        await (await client.get("/metrics")).text(), "incident_bridge_webhook_requests_total"
    )
    assert codes['code="400"'] == 1.0 and codes['code="200"'] == 0.0
