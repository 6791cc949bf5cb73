"""The reminder tick reads first, off the writer: ``due_incidents`` names the incidents with
something due and not yet sent, and ``fire_due`` writes only for those. Both backends."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.config import Settings
from bridge.service import AppState
from bridge.service.scheduler import fire_reminders
from bridge.store.interface import FireResult
from tests.conftest import T0, Clock, app_state
from tests.store.test_reminders import MIN, open_incident, sev1


async def test_only_incidents_with_something_unsent_are_named(store: Any) -> None:
    first = await open_incident(store, key="k1")
    second = await open_incident(store, key="k2")
    # nothing is due right after the opening
    assert await store.reminders.due_incidents(T0 + MIN, policy=sev1) == []
    later = T0 + 6 * MIN  # past acknowledge_within (5 min): both escalate
    assert await store.reminders.due_incidents(later, policy=sev1) == [first, second]
    # the writer sends for the one named only
    result = await store.reminders.fire_due(later, policy=sev1, incident_ids=[first])
    assert {f.incident_id for f in result.fired} == {first}
    # sent items are not named again; the other still is
    assert await store.reminders.due_incidents(later + MIN, policy=sev1) == [second]


async def test_a_tick_with_nothing_due_never_asks_the_writer(
    db_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(T0)
    state: AppState = app_state(Settings(**db_settings), clock=clock)
    try:
        await open_incident(state.store)  # type: ignore[arg-type]
        writes: list[Any] = []
        real = state.store.reminders.fire_due

        async def counted(*args: Any, **kwargs: Any) -> FireResult:
            writes.append(kwargs.get("incident_ids"))
            return await real(*args, **kwargs)

        monkeypatch.setattr(state.store.reminders, "fire_due", counted)
        clock.advance(30)
        assert await fire_reminders(state) == FireResult()
        assert writes == []
        clock.advance(20 * 60)  # the built-in rules' reminders are due by now
        result = await fire_reminders(state)
        assert writes and result.fired
    finally:
        state.store.close()


async def test_the_tick_reads_only_the_incidents_whose_rules_give_it_something(
    store: Any,
) -> None:
    from bridge.core.reminders import ReminderPolicy
    from tests.conftest import execute

    ids = [await open_incident(store, key=f"k{n}") for n in range(6)]
    # three of them on a route whose rules have reminders, three on one without
    for incident in ids[3:]:
        execute(store, "UPDATE incidents SET route = 'quiet' WHERE id = ?", (incident,))
    asked: list[tuple[str, str]] = []

    def some(route: str, severity: str) -> ReminderPolicy:
        asked.append((route, severity))
        return sev1(route, severity) if route != "quiet" else ReminderPolicy()

    later = T0 + 6 * MIN
    assert await store.reminders.due_incidents(later, policy=some) == ids[:3]
    # the quiet route's incidents were never built: its pair was asked once, not per incident
    assert asked.count(("quiet", "sev1")) == 1, asked
    # none wanted: nothing is read beyond the pairs
    asked.clear()
    none = await store.reminders.due_incidents(later, policy=lambda r, s: ReminderPolicy())
    assert none == []
    # the escalations' tick the same way: no policy, nothing read or built
    from bridge.core.escalation import EscalationPolicy

    seen: list[str] = []

    def no_policy(route: str, severity: str) -> EscalationPolicy:
        seen.append(route)
        return EscalationPolicy(levels=(), repeat=0)

    assert await store.escalations.due_incidents(later, policy=no_policy) == []
    assert sorted(seen) == ["default", "quiet"], seen


async def test_young_incidents_are_left_out_unless_an_update_names_its_next_sooner(
    store: Any,
) -> None:
    from bridge.core.actions import PostUpdate
    from bridge.core.reminders import ReminderPolicy
    from bridge.store.actions import ActionRequest, apply_action

    hourly = ReminderPolicy(update_every_s=3600.0)
    asked: list[str] = []

    def policy(route: str, severity: str) -> ReminderPolicy:
        asked.append(route)
        return hourly

    first = await open_incident(store, key="k1")
    await open_incident(store, key="k2")
    # minutes old, nothing can be due within the hour: the incidents are not read one by one
    assert await store.reminders.due_incidents(T0 + 2 * MIN, policy=policy) == []
    assert asked == ["default"]
    # an update promising the next within a minute makes the first due sooner than the hour
    update = ActionRequest(first, PostUpdate("dana", "Looking", next_update_in_s=60), T0 + MIN)
    await store.write(lambda conn: apply_action(conn, update))
    assert await store.reminders.due_incidents(T0 + 3 * MIN, policy=policy) == [first]
