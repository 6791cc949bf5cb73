"""Stored overrides in the running service (service/oncall.py) on both backends: another
replica's override is applied at this one's next refresh (the loop every replica runs), a
rules reload keeps them, and everything that asks the rules who holds a rotation sees them:
the commander of a new incident and escalation's recipients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.core.escalation import Recipient
from bridge.service import reload
from bridge.service.oncall import OverridesRefresh, announce_handoffs, refresh
from bridge.service.scheduler import ReminderScheduler
from bridge.store.interface import NewOverride
from tests.conftest import T0, Clock, RulesService, fixture_body

H = 3600 * 10**9
RULES = """
targets:
  room: {type: console}
  pager: {type: console}
rotations:
  ops:
    members:
      - {name: amara, handles: {pager: "+100"}}
      - {name: bjorn, handles: {pager: "+200"}}
      - {name: chen, handles: {pager: "+300"}}
    period: daily
route:
  tiers: {incident: room}
  roles:
    commander: {rotation: ops}
"""
# At T0 (2026-11-27T04:06:40Z) bjorn holds ops (see tests/http/test_oncall.py).


@pytest.fixture
async def service(
    tmp_path: Path,
    clock: Clock,
    aiohttp_client: Callable[..., Awaitable[Any]],
    db_settings: dict[str, Any],
) -> AsyncIterator[RulesService]:
    svc = RulesService(tmp_path, clock, aiohttp_client, RULES, db_settings)
    await svc.serve()
    yield svc
    await svc.close()


def holder(svc: RulesService) -> str:
    assert svc.state is not None
    (ops,) = svc.state.runtime.oncall_now(svc.clock())
    return ops.now.person


async def another_replicas_override(svc: RulesService, person: str) -> None:
    """Written straight into the database, as another replica's API would."""
    assert svc.store is not None
    await svc.store.oncall.add_override(
        NewOverride(
            rotation="ops", person=person, start_at=T0, end_at=T0 + 2 * H,
            reason="cover", created_by="lead", now=T0,
        )
    )  # fmt: skip


async def test_another_replicas_override_counts_at_the_next_refresh(service: RulesService) -> None:
    assert service.state is not None
    await another_replicas_override(service, "chen")
    assert holder(service) == "bjorn"  # not read yet
    loop = OverridesRefresh(service.state, every_s=0.01)
    loop.start()
    try:
        for _ in range(200):
            if holder(service) == "chen":
                break
            await asyncio.sleep(0.01)
    finally:
        await loop.stop()
    assert holder(service) == "chen"
    # the commander of an incident opened now, and escalation's holder and next holder
    runtime = service.state.runtime
    reach = runtime.escalation_reach((Recipient("rotation", "ops"),), service.clock())
    assert [name for name, _ in reach.people] == ["chen"]


async def test_a_reload_keeps_the_overrides(service: RulesService) -> None:
    assert service.state is not None
    await another_replicas_override(service, "amara")
    await refresh(service.state)
    assert holder(service) == "amara"
    assert await reload(service.state) == []
    assert holder(service) == "amara"
    # and an override that ended is gone from the answer at the next refresh
    await service.state.store.oncall.end_override(override_id=1, now=service.clock(), by="lead")
    await refresh(service.state)
    assert holder(service) == "bjorn"


def handoff_entries(svc: RulesService) -> list[str]:
    return [
        text
        for (text,) in svc.rows(
            "SELECT text FROM timeline WHERE actor = 'incident-bridge' AND kind = 'note' "
            "ORDER BY id"
        )
    ]


async def test_hand_offs_are_announced_once_by_the_scheduler(
    service: RulesService, clock: Clock
) -> None:
    assert service.state is not None and service.client is not None
    resp = await service.client.post(
        "/api/v1/alerts", json=fixture_body("firing-group-bearer.json")
    )
    incident = (await resp.json())["incidents"][0]["id"]
    scheduler = ReminderScheduler(service.state, every_s=0.01)
    scheduler.start()
    try:
        await asyncio.sleep(0.1)
        assert handoff_entries(service) == []  # bjorn holds ops until 09:00
        clock.advance((9 * 60 - 4 * 60 - 6) * 60 - 40 + 30)  # 09:00:30 UTC
        for _ in range(300):
            if handoff_entries(service):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # more ticks: nothing more
        assert handoff_entries(service) == [
            f"Hand-off: bjorn hands ops to chen; chen inherits #{incident}"
        ]
        rows = service.rows(
            "SELECT count(*) FROM outbox o JOIN timeline t ON t.id = o.event_id "
            "WHERE t.actor = 'incident-bridge'"
        )
        assert rows[0][0] >= 1  # the incident's channel is told
        # an override from 10:00 is a hand-off too (chen to amara), and back at its end
        await service.state.store.oncall.add_override(
            NewOverride(
                rotation="ops", person="amara", start_at=T0 + 6 * H, end_at=T0 + 7 * H,
                reason="cover", created_by="chen", now=clock(),
            )
        )  # fmt: skip
        await refresh(service.state)
        clock.now = T0 + 6 * H + 30 * 10**9  # 10:07:10
        for _ in range(300):
            if len(handoff_entries(service)) == 2:
                break
            await asyncio.sleep(0.01)
        assert handoff_entries(service)[1] == (
            f"Hand-off: chen hands ops to amara; amara inherits #{incident}"
        )
    finally:
        await scheduler.stop()
    # a restart's first tick (the same store) announces nothing again
    assert await announce_handoffs(service.state) == 0
