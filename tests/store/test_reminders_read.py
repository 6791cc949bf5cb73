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
