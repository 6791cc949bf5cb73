"""The running service's escalation policies on an injected clock: the scheduler's loop walks
the levels under the rules in force, the outbox worker sends each step to whom its level
reaches, a restart between levels sends nothing twice, an acknowledgement stops it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.rules import load_rules
from bridge.rules.rotations import holder
from bridge.service.escalation import fire_escalations
from bridge.service.scheduler import ReminderScheduler
from tests.conftest import T0, WRITE, Clock, RulesService, fixture_body
from tests.test_reminders_service import until

MIN = 60 * 1_000_000_000
RULES = """
targets:
  room: {type: console}
  pager: {type: console}
  phone: {type: console}
rotations:
  primary:
    members:
      - {name: amara, handles: {phone: "+15550100"}}
      - {name: bjorn, handles: {phone: "+15550101"}}
route:
  tiers:
    incident: room
  reminders:
    sev1: ~
  escalation:
    sev1:
      levels:
        - {after: 5m, notify: {rotation: primary}}
        - after: 10m
          notify: [{next: primary}, {target: pager}]
      repeat: 1
"""


class Service(RulesService):
    def __init__(self, tmp_path: Path, clock: Clock, make_client: Any, db: dict[str, Any]) -> None:
        super().__init__(tmp_path, clock, make_client, RULES, db)
        self.scheduler: ReminderScheduler | None = None

    async def start(self) -> None:
        state = await self.serve()
        self.scheduler = ReminderScheduler(state, every_s=0.01)
        self.scheduler.start()

    async def stop(self) -> None:
        assert self.scheduler
        await self.scheduler.stop()
        await self.close()

    def steps(self) -> list[tuple[int, dict[str, Any]]]:
        return [
            (time, json.loads(data))
            for time, data in self.rows(
                "SELECT time, data FROM timeline WHERE kind = 'escalation_step' ORDER BY id"
            )
        ]

    def delivered(self) -> list[tuple[int, str, str]]:
        """(level, tier, target) of each step's outbox rows that were sent."""
        return [
            (json.loads(data)["level"], tier, target)
            for data, tier, target in self.rows(
                "SELECT t.data, o.tier, o.target FROM outbox o JOIN timeline t "
                "ON t.id = o.event_id WHERE t.kind = 'escalation_step' AND o.state = 'delivered' "
                "ORDER BY o.id"
            )
        ]


@pytest.fixture
async def service(
    tmp_path: Path,
    clock: Clock,
    aiohttp_client: Callable[..., Awaitable[Any]],
    db_settings: dict[str, Any],
) -> AsyncIterator[Service]:
    svc = Service(tmp_path, clock, aiohttp_client, db_settings)
    yield svc
    if svc.store is not None and svc.store.is_open:
        await svc.stop()


def _on_call(rules: Path) -> tuple[str, str]:
    """Who holds the primary rotation at T0 and who is next (from the rules themselves)."""
    ruleset = load_rules([rules], env={}).ruleset
    assert ruleset is not None
    now = holder(ruleset.rotations["primary"], datetime.fromtimestamp(T0 / 1e9, tz=UTC)).name
    return now, "bjorn" if now == "amara" else "amara"


async def test_levels_walked_sent_once_across_a_restart_stopped_by_ack(
    service: Service, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    holder_now, next_holder = _on_call(service.rules)
    await service.start()
    assert service.client is not None
    resp = await service.client.post(
        "/api/v1/alerts", json=fixture_body("firing-group-bearer.json")
    )
    assert resp.status == 200
    incident = (await resp.json())["incidents"][0]["id"]

    clock.advance(4 * 60)
    await asyncio.sleep(0.1)
    assert service.steps() == []
    clock.advance(60)
    await until("level 1", lambda: len(service.delivered()) == 2)
    ((at, first),) = service.steps()
    assert at == T0 + 5 * MIN
    assert (first["level"], first["repetition"], first["people"]) == (1, 1, [holder_now])
    assert service.delivered() == [(1, "incident", "room"), (1, "stakeholders", "phone")]
    out = capsys.readouterr().out
    assert "escalated" in out

    # A restart between the levels: nothing sent again, level 2 at 15 minutes.
    await service.stop()
    clock.advance(5 * 60)
    await service.start()
    assert service.state is not None
    assert (await fire_escalations(service.state)).fired == ()
    clock.advance(5 * 60)
    await until("level 2", lambda: len(service.delivered()) == 5)
    assert [(t, d["level"], d["people"]) for t, d in service.steps()] == [
        (T0 + 5 * MIN, 1, [holder_now]),
        (T0 + 15 * MIN, 2, [next_holder]),
    ]
    assert service.delivered()[2:] == [
        (2, "incident", "room"),
        (2, "stakeholders", "phone"),
        (2, "stakeholders", "pager"),
    ]
    assert service.steps()[1][1]["handles"][next_holder]["phone"].startswith("+1555")

    # Acknowledged: the repetition due at 20 minutes never comes.
    path = f"/api/v1/incidents/{incident}/acknowledge"
    assert service.client is not None
    resp = await service.client.post(path, json={"actor": next_holder}, headers=WRITE)
    assert resp.status == 200
    clock.advance(30 * 60)
    await asyncio.sleep(0.2)
    assert len(service.steps()) == 2
    assert service.rows(
        "SELECT kind, due_at FROM reminders WHERE kind LIKE 'escalation/%' ORDER BY due_at"
    ) == [("escalation/1/1", T0 + 5 * MIN), ("escalation/2/1", T0 + 15 * MIN)]
