"""The running service's reminders and escalation on an injected clock: the scheduler's loop,
the rules in force, the outbox worker sending what it wrote, and a restart between due times
(the store closed, the same file opened again): what was sent is not sent again, what falls
due next is."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.service.scheduler import ReminderScheduler, fire_reminders
from tests.conftest import T0, WRITE, Clock, RulesService, fixture_body

MIN = 60 * 1_000_000_000
RULES = """
targets:
  room: {type: console}
  pager: {type: console}
rotations:
  commanders:
    members: [amara, bjorn]
route:
  tiers:
    incident: room
    stakeholders: {targets: [pager], min_severity: sev1}
  roles:
    commander: {rotation: commanders}
    liaison: {person: dana}
  reminders:
    sev1: {update_every: 30m, acknowledge_within: 5m, escalate_to_next_commander: true}
"""


class Service(RulesService):
    """The service's parts as ``run`` wires them (store, rules, worker, scheduler, HTTP), on a
    clock the test moves; ``start``/``stop`` is one life of the process."""

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

    def bridge_entries(self) -> list[tuple[str, int]]:
        """(kind, time) of what the scheduler put on the timeline."""
        return [
            (kind, time)
            for kind, time in self.rows(
                "SELECT kind, time FROM timeline WHERE actor = 'incident-bridge' ORDER BY id"
            )
        ]

    def delivered(self, kind: str) -> list[tuple[str, str]]:
        return [
            (tier, target)
            for tier, target in self.rows(
                "SELECT o.tier, o.target FROM outbox o JOIN timeline t ON t.id = o.event_id "
                "WHERE t.kind = ? AND o.state = 'delivered' ORDER BY o.id",
                kind,
            )
        ]


async def until(what: str, check: Callable[[], Any], within_s: float = 10.0) -> None:
    """Wait for ``check()`` to be true (the scheduler ticks every 10 ms of real time)."""
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def service(
    tmp_path: Path,
    clock: Clock,
    aiohttp_client: Callable[..., Awaitable[Any]],
    db_settings: dict[str, Any],
) -> AsyncIterator[Service]:
    """The service on each backend (``db_settings``)."""
    svc = Service(tmp_path, clock, aiohttp_client, db_settings)
    yield svc
    if svc.store is not None and svc.store.is_open:
        await svc.stop()


async def started_with_a_webhook(service: Service) -> Any:
    """The service started, and a webhook (an incident opened) answered 200: the answer."""
    await service.start()
    assert service.client is not None
    resp = await service.client.post(
        "/api/v1/alerts", json=fixture_body("firing-group-bearer.json")
    )
    assert resp.status == 200
    return resp


async def test_reminders_and_escalation_across_a_restart(
    service: Service, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    resp = await started_with_a_webhook(service)
    incident = (await resp.json())["incidents"][0]["id"]
    ((roles,),) = service.rows("SELECT roles FROM incidents WHERE id = ?", incident)
    commander = "amara" if '"amara"' in roles else "bjorn"
    successor = "bjorn" if commander == "amara" else "amara"

    # Five minutes without an acknowledgement: escalated, the stakeholders paged, the next
    # commander of the rotation takes over.
    clock.advance(4 * 60)
    await asyncio.sleep(0.1)  # ticks happen; nothing is due yet
    assert service.bridge_entries() == []
    clock.advance(60)
    await until("the escalation", lambda: service.bridge_entries())
    assert service.bridge_entries() == [("escalated", T0 + 5 * MIN), ("role_changed", T0 + 5 * MIN)]
    await until("sent", lambda: len(service.delivered("escalated")) == 2)
    assert service.delivered("escalated") == [("incident", "room"), ("stakeholders", "pager")]
    ((roles,),) = service.rows("SELECT roles FROM incidents WHERE id = ?", incident)
    assert f'"commander":["{successor}"]' in roles
    assert "escalated: not acknowledged within 5 min" in capsys.readouterr().out

    path = f"/api/v1/incidents/{incident}/acknowledge"
    resp = await service.client.post(path, json={"actor": successor}, headers=WRITE)
    assert resp.status == 200

    # The first status update is due 30 minutes after the incident opened.
    clock.advance(25 * 60)
    await until("the first reminder", lambda: len(service.bridge_entries()) == 3)
    assert service.bridge_entries()[-1] == ("reminder", T0 + 30 * MIN)
    await until("sent", lambda: service.delivered("reminder") == [("incident", "room")])

    # A restart between due times: the same file, a new store, rules, worker and scheduler.
    await service.stop()
    clock.advance(60)
    await service.start()
    assert service.state is not None
    again = await fire_reminders(service.state)  # besides the loop's own ticks
    assert again.fired == ()
    await asyncio.sleep(0.1)
    assert [k for k, _ in service.bridge_entries()] == ["escalated", "role_changed", "reminder"]

    # No update came: the next reminder is due 30 minutes after the first, sent once.
    clock.advance(29 * 60)
    await until("the second reminder", lambda: len(service.bridge_entries()) == 4)
    await asyncio.sleep(0.1)
    assert service.bridge_entries() == [
        ("escalated", T0 + 5 * MIN),
        ("role_changed", T0 + 5 * MIN),
        ("reminder", T0 + 30 * MIN),
        ("reminder", T0 + 60 * MIN),
    ]
    await until("sent", lambda: len(service.delivered("reminder")) == 2)
    assert service.rows("SELECT kind, due_at FROM reminders ORDER BY due_at") == [
        ("escalated", T0 + 5 * MIN),
        ("reminder", T0 + 30 * MIN),
        ("reminder", T0 + 60 * MIN),
    ]
    reminders = [line for line in capsys.readouterr().out.splitlines() if "reminder:" in line]
    assert [line.split("]")[0] for line in reminders] == ["[room/incident", "[room/incident"]
    assert "status update due by 2026-11-27 04:36:40 UTC, liaison=dana" in reminders[0]
    assert "status update due by 2026-11-27 05:06:40 UTC, liaison=dana" in reminders[1]


async def test_what_fell_due_while_stopped_goes_out_at_start(
    service: Service, clock: Clock
) -> None:
    await started_with_a_webhook(service)
    await service.stop()
    clock.advance(95 * 60)  # down for the escalation and three update periods
    await service.start()
    await until("at start", lambda: len(service.bridge_entries()) == 3)
    await asyncio.sleep(0.1)
    # one escalation, and one reminder for the latest due time (not one per missed period)
    assert service.bridge_entries() == [
        ("escalated", T0 + 95 * MIN),
        ("role_changed", T0 + 95 * MIN),
        ("reminder", T0 + 95 * MIN),
    ]
    assert service.rows("SELECT kind, due_at FROM reminders ORDER BY due_at") == [
        ("escalated", T0 + 5 * MIN),
        ("reminder", T0 + 90 * MIN),
    ]


async def test_a_store_error_does_not_stop_the_scheduler(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    await service.start()
    assert service.store is not None and service.scheduler is not None
    scheduler = service.scheduler
    # it ticks once it holds its lease (the first write of its own; docs/postgresql.md#replicas)
    await until("the scheduler's lease", lambda: scheduler.leading)
    service.store.close()  # every write now fails
    with caplog.at_level(logging.WARNING, logger="bridge.service"):
        await until(
            "two failed ticks",
            lambda: sum("reminders: store unavailable" in r.message for r in caplog.records) >= 2,
        )
    task = service.scheduler._task
    assert task is not None and not task.done()
    await service.scheduler.stop()
    assert service.state is not None and service.state.worker is not None
    await service.state.worker.stop()
    assert service.client is not None
    await service.client.close()
