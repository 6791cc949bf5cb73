"""Escalation steps are sent once per (incident, level, repetition, due time), on both backends:
whatever ticks again, and when two stores (two replicas) tick at the same instant."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bridge.config import Settings
from bridge.core.actions import Transition
from bridge.core.escalation import EscalationPolicy, Level, Reach, Recipient
from bridge.core.timeutil import NS
from bridge.store import Store
from bridge.store.actions import ActionRequest, apply_action
from bridge.store.escalation import _TICK, fire_due
from tests.conftest import T0, fixture_body, open_store, rows
from tests.store.test_store import ingest

MIN = 60 * NS
SECOND = NS
POLICY = EscalationPolicy(
    levels=(
        Level(300.0, (Recipient("rotation", "primary"),)),
        Level(600.0, (Recipient("target", "pager"), Recipient("person", "chen"))),
    ),
    repeat=1,
)


def policy(route: str, severity: str) -> EscalationPolicy:
    return POLICY


def reach(notify: Sequence[Recipient], at: int) -> Reach:
    """Level 1: amara by her phone; level 2: the pager and chen by his."""
    if notify[0].kind == "rotation":
        return Reach((("amara", {"sms": "+15550100"}),), ("sms",))
    return Reach((("chen", {"sms": "+15550102"}),), ("pager", "sms"))


async def tick(store: Any, now: int) -> list[tuple[str, int]]:
    due = await store.escalations.due_incidents(now, policy=policy)
    if not due:
        return []
    result = await store.escalations.fire_due(now, policy=policy, reach=reach, incident_ids=due)
    return [(f.kind, (f.due_at - T0) // MIN) for f in result.fired]


def sent(store: Any, incident: int) -> list[tuple[str, str, str]]:
    return [
        tuple(r)  # type: ignore[misc]
        for r in rows(
            store,
            "SELECT t.kind, o.tier, o.target FROM outbox o JOIN timeline t ON t.id = o.event_id "
            "WHERE o.incident_id = ? AND t.kind = 'escalation_step' ORDER BY o.id",
            incident,
        )
    ]


async def test_each_step_once_through_levels_and_repeats(store: Any) -> None:
    incident = (await ingest(store, fixture_body("firing-group-bearer.json"))).incidents[0].id
    assert await tick(store, T0 + 4 * MIN) == []
    assert await tick(store, T0 + 5 * MIN) == [("escalation/1/1", 5)]
    for again in (T0 + 5 * MIN, T0 + 5 * MIN + 15 * SECOND, T0 + 14 * MIN):
        assert await tick(store, again) == []
    assert await tick(store, T0 + 15 * MIN) == [("escalation/2/1", 15)]
    # one tick late past two due times: the repetition's first level only (its second is later)
    assert await tick(store, T0 + 21 * MIN) == [("escalation/1/2", 20)]
    assert await tick(store, T0 + 31 * MIN) == [("escalation/2/2", 30)]
    assert await tick(store, T0 + 300 * MIN) == []  # the policy ran out
    assert sent(store, incident) == [
        ("escalation_step", "stakeholders", "sms"),
        ("escalation_step", "stakeholders", "pager"),
        ("escalation_step", "stakeholders", "sms"),
        ("escalation_step", "stakeholders", "sms"),
        ("escalation_step", "stakeholders", "pager"),
        ("escalation_step", "stakeholders", "sms"),
    ]
    texts = rows(
        store,
        "SELECT time, text, data FROM timeline WHERE incident_id = ? AND kind = 'escalation_step' "
        "ORDER BY id",
        incident,
    )
    assert [t for t, _, _ in texts] == [T0 + m * MIN for m in (5, 15, 21, 31)]
    assert texts[1][1] == (
        "Escalation level 2 of 2: not acknowledged after 15 min, notifying chen via pager, sms"
    )
    data = json.loads(texts[1][2])
    assert data["handles"] == {"chen": {"sms": "+15550102"}}
    assert data["due_at"] == "2026-11-27T04:21:40Z"
    assert rows(
        store,
        "SELECT kind, due_at FROM reminders WHERE incident_id = ? AND event_id IS NOT NULL "
        "ORDER BY due_at",
        incident,
    ) == [
        ("escalation/1/1", T0 + 5 * MIN),
        ("escalation/2/1", T0 + 15 * MIN),
        ("escalation/1/2", T0 + 20 * MIN),
        ("escalation/2/2", T0 + 30 * MIN),
    ]


async def test_acknowledgement_stops_it_and_a_reopen_starts_it_again(store: Any) -> None:
    firing = fixture_body("ha-slow-receiver/01.json")
    resolved = fixture_body("ha-slow-receiver/04.json")
    incident = (await ingest(store, firing, T0)).incidents[0].id
    assert await tick(store, T0 + 5 * MIN) == [("escalation/1/1", 5)]
    ack = ActionRequest(incident, Transition("amara", "acknowledge"), T0 + 6 * MIN)
    await store.write(lambda conn: apply_action(conn, ack))
    assert await tick(store, T0 + 16 * MIN) == []
    # mitigated at 20 min, reopened at 40: the levels again, their waits from the reopen
    await ingest(store, resolved, T0 + 20 * MIN)
    refire = json.loads(json.dumps(firing))
    refire["alerts"][0]["startsAt"] = "2026-11-27T06:00:00Z"
    again = (await ingest(store, refire, T0 + 40 * MIN)).incidents[0]
    assert (again.id, again.status) == (incident, "triggered")
    assert await tick(store, T0 + 44 * MIN) == []
    assert await tick(store, T0 + 45 * MIN) == [("escalation/1/1", 45)]
    assert await tick(store, T0 + 55 * MIN) == [("escalation/2/1", 55)]


async def test_two_writers_ticking_at_once_send_each_step_once(
    store: Any, db_settings: dict[str, Any]
) -> None:
    """Writers on the same database tick at the same instant, several times over: each step
    goes out once. On PostgreSQL two stores (two replicas); on SQLite, where one process holds
    the file, connections of their own racing in threads (as processes would)."""
    incident = (await ingest(store, fixture_body("firing-group-bearer.json"))).incidents[0].id
    for minute in (5, 15, 20):
        now = T0 + minute * MIN
        if isinstance(store, Store):
            fired = _race_sqlite(store.path, now, incident)
        else:
            other = open_store(Settings(**db_settings))
            try:
                won = await asyncio.gather(
                    *(
                        s.escalations.fire_due(
                            now, policy=policy, reach=reach, incident_ids=[incident]
                        )
                        for s in (store, other, store, other)
                    )
                )
            finally:
                other.close()
            fired = [f.kind for result in won for f in result.fired]
        assert len(fired) == 1, (minute, fired)
    assert rows(
        store,
        "SELECT count(*) FROM timeline WHERE incident_id = ? AND kind = 'escalation_step'",
        incident,
    ) == [(3,)]
    assert len(sent(store, incident)) == 4  # sms; pager, sms; sms


def _race_sqlite(path: Path, now: int, incident: int) -> list[str]:
    racers = 6
    start = threading.Barrier(racers)
    fired: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def race() -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA busy_timeout = 30000")
        try:
            start.wait()
            conn.execute("BEGIN IMMEDIATE")
            result = fire_due(conn, now, policy=policy, reach=reach, incident_ids=[incident])
            conn.execute("COMMIT")
            with lock:
                fired.extend(f.kind for f in result.fired)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    return fired


def test_the_tick_finds_reopens_through_their_own_index(store: Any) -> None:
    """Migration 0021_escalation: on SQLite the tick's plan walks the reopens' partial index
    (not every timeline entry of each triggered incident); PostgreSQL has the same index."""
    if isinstance(store, Store):
        plan = rows(store, "EXPLAIN QUERY PLAN " + _TICK)
        assert any("idx_timeline_reopens" in str(step[-1]) for step in plan), plan
    else:
        (found,) = rows(
            store, "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_timeline_reopens'"
        )
        assert "WHERE (kind = 'reopened'::text)" in found[0]
    assert rows(store, "SELECT name FROM _migrations WHERE name = '0021_escalation'") == [
        ("0021_escalation",)
    ]
