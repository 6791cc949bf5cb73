"""``outbox.contexts``: what one message needs, and no more. A message shows an incident's alert
counts and its newest alerts; it never loads every alert of a large incident (a 60,000-alert
group once cost about 2 s of CPU per message)."""

from __future__ import annotations

import sqlite3
from typing import Any

from bridge.store import Store
from bridge.store import outbox as q
from tests.conftest import fixture_body
from tests.delivery.test_worker import ingest, rows

SHOWN = 100


def large_group(n: int) -> dict[str, Any]:
    """One webhook of ``n`` alerts, each starting a second after the one before; every fifth
    is resolved already."""
    body = fixture_body("ha-pair-single-delivery.json")
    template = body["alerts"][0]
    body["alerts"] = [
        {
            **template,
            "fingerprint": f"{i:016x}",
            "labels": {**template["labels"], "instance": f"node-{i}"},
            "startsAt": f"2026-11-27T03:{i // 60:02d}:{i % 60:02d}Z",
            "status": "resolved" if i % 5 == 0 else "firing",
            "endsAt": "2026-11-27T04:00:00Z" if i % 5 == 0 else "0001-01-01T00:00:00Z",
        }
        for i in range(n)
    ]
    return body


async def test_a_message_loads_the_counts_and_only_the_newest_alerts(
    store: Store, clock: Any
) -> None:
    n = SHOWN + 150
    await ingest(store, large_group(n), clock.now)
    [row] = await rows(store)

    def context(conn: sqlite3.Connection) -> q.Context:
        group = q.claim_group(conn, row.id, 20)
        return q.contexts(conn, [group], max_alerts=SHOWN)[row.id]

    incident = (await store.write(context)).incident
    resolved = len(range(0, n, 5))
    assert (incident["alert_count"], incident["firing_count"], incident["resolved_count"]) == (
        n,
        n - resolved,
        resolved,
    )
    alerts = incident["alerts"]
    # The newest by start, listed oldest first as the full list was.
    assert [a["fingerprint"] for a in alerts] == [f"{i:016x}" for i in range(n - SHOWN, n)]
    assert alerts[0]["labels"]["instance"] == f"node-{n - SHOWN}"
    assert {a["status"] for a in alerts} == {"firing", "resolved"}
    assert set(alerts[0]) == {
        "fingerprint",
        "status",
        "labels",
        "annotations",
        "starts_at",
        "ends_at",
        "generator_url",
        "first_seen",
        "last_seen",
        "suppressed",
        "resolved_via",
    }


async def test_a_small_incident_is_shown_whole(store: Store, clock: Any) -> None:
    await ingest(store, large_group(3), clock.now)
    [row] = await rows(store)
    ctx = await store.read(lambda c: q.context(c, [row], max_alerts=SHOWN))
    assert ctx is not None
    incident = ctx.incident
    assert [a["fingerprint"] for a in incident["alerts"]] == [f"{i:016x}" for i in range(3)]
    assert (incident["alert_count"], incident["firing_count"], incident["resolved_count"]) == (
        3,
        2,
        1,
    )
