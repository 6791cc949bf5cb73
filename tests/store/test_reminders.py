"""Reminders and escalations are sent once per due time: whatever ticks again, restarts, or
races for them from another connection on the same file."""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bridge.core.actions import PostUpdate, Transition
from bridge.core.alertmanager import parse_webhook
from bridge.core.policy import Decision, Tiers
from bridge.core.reminders import NO_REMINDERS, ReminderPolicy
from bridge.core.timeutil import NS
from bridge.store import Store
from bridge.store.actions import ActionRequest, apply_action
from bridge.store.ingest import apply_webhook
from bridge.store.reminders import FireResult, PolicyFor, fire_due
from tests.conftest import T0, fixture_bytes, rows

MIN = 60 * NS
SEV1 = ReminderPolicy(update_every_s=1800.0, acknowledge_within_s=300.0)
TIERS = Tiers(general=("general",), incident="room", stakeholders=("pager",))


def sev1(route: str, severity: str) -> ReminderPolicy:
    return SEV1


async def open_incident(store: Store, *, tiers: Tiers = TIERS, key: str = "k1") -> int:
    """A sev1 incident opened at T0, amara commanding and dana liaison."""
    raw = fixture_bytes("firing-group-bearer.json")
    payload = parse_webhook(raw)
    decision = Decision(
        key=key,
        severity="sev1",
        title="Checkout errors",
        fingerprints=tuple(a.fingerprint for a in payload.alerts),
        tiers=tiers,
        roles={"commander": ("amara",), "liaison": ("dana",)},
    )
    result = await store.write(
        lambda conn: apply_webhook(
            conn, payload=payload, decisions=[decision], sha256=key, body=None, now=T0
        )
    )
    return result.incidents[0].id


def fire(
    store: Store, now: int, policy: PolicyFor = sev1, **kwargs: Any
) -> Any:  # an awaitable FireResult
    return store.write(functools.partial(fire_due, now=now, policy=policy, **kwargs))


def sent(store: Store, incident: int) -> list[tuple[str, str, str]]:
    """(timeline kind, tier, target) of every outbox row the scheduler wrote."""
    return [
        (kind, tier, target)
        for kind, tier, target in rows(
            store,
            "SELECT t.kind, o.tier, o.target FROM outbox o JOIN timeline t ON t.id = o.event_id "
            "WHERE o.incident_id = ? AND t.actor = 'incident-bridge' ORDER BY o.id",
            incident,
        )
    ]


async def test_each_item_is_sent_once_per_due_time(store: Store) -> None:
    incident = await open_incident(store)
    assert (await fire(store, T0 + 4 * MIN)).fired == ()
    first: FireResult = await fire(store, T0 + 5 * MIN)
    assert [(f.kind, f.due_at) for f in first.fired] == [("escalated", T0 + 5 * MIN)]
    assert first.notifications == 2
    for later in (T0 + 5 * MIN, T0 + 5 * MIN + 15 * NS, T0 + 29 * MIN):
        assert (await fire(store, later)).fired == ()  # the next ticks: nothing again
    assert sent(store, incident) == [
        ("escalated", "incident", "room"),
        ("escalated", "stakeholders", "pager"),
    ]
    (entry,) = rows(
        store,
        "SELECT id, time, text, data FROM timeline WHERE incident_id = ? AND kind = 'escalated'",
        incident,
    )
    assert entry[1] == T0 + 5 * MIN
    assert entry[2] == "Not acknowledged within 5 min: escalated to the stakeholders"
    assert json.loads(entry[3]) == {"after_s": 300, "target_s": 300}
    assert rows(store, "SELECT kind, due_at, event_id FROM reminders") == [
        ("escalated", T0 + 5 * MIN, entry[0])
    ]

    # Acknowledged at 10 min: no escalation any more, and the update reminders go on.
    ack = ActionRequest(incident, Transition("amara", "acknowledge"), T0 + 10 * MIN)
    await store.write(lambda conn: apply_action(conn, ack))
    reminder = await fire(store, T0 + 30 * MIN)
    assert [(f.kind, f.due_at) for f in reminder.fired] == [("reminder", T0 + 30 * MIN)]
    assert (await fire(store, T0 + 31 * MIN)).fired == ()
    (text,) = rows(
        store,
        "SELECT text FROM timeline WHERE kind = 'reminder' AND incident_id = ?",
        incident,
    )
    assert text == ("Status update due: liaison dana (no update yet; opened 30 min ago)",)
    # The liaison's update at 40 min promises the next for 50 min.
    update = ActionRequest(
        incident, PostUpdate("dana", "Rolled back", next_update_in_s=600), T0 + 40 * MIN
    )
    await store.write(lambda conn: apply_action(conn, update))
    assert (await fire(store, T0 + 49 * MIN)).fired == ()
    assert [f.due_at for f in (await fire(store, T0 + 50 * MIN)).fired] == [T0 + 50 * MIN]
    assert [f.due_at for f in (await fire(store, T0 + 81 * MIN)).fired] == [T0 + 80 * MIN]
    assert [k for k, *_ in sent(store, incident)] == [
        "escalated",
        "escalated",
        "reminder",
        "reminder",
        "reminder",
    ]
    # reminders go to the dedicated channel only
    assert {(tier, target) for k, tier, target in sent(store, incident) if k == "reminder"} == {
        ("incident", "room")
    }


def _connect(path: Path) -> sqlite3.Connection:
    """A connection as the store's writer makes one."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def test_writers_racing_on_one_file_send_each_item_once(tmp_path: Path) -> None:
    """Eight connections (each its own thread, as two processes would be) fire at the same
    instant: one wins each item, the others find it taken."""
    import asyncio

    path = tmp_path / "b.db"
    store = Store(path)
    store.open()
    incident = asyncio.run(_open_and_close(store))
    racers = 8
    start = threading.Barrier(racers)
    results: list[FireResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def race() -> None:
        conn = _connect(path)
        try:
            start.wait()
            conn.execute("BEGIN IMMEDIATE")
            result = fire_due(conn, T0 + 31 * MIN, policy=sev1)
            conn.execute("COMMIT")
            with lock:
                results.append(result)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    won = [r for r in results if r.fired]
    assert len(results) == racers and len(won) == 1
    assert [f.kind for f in won[0].fired] == ["escalated", "reminder"]
    assert rows(store, "SELECT count(*) FROM reminders") == [(2,)]
    kinds = rows(
        store,
        "SELECT kind, count(*) FROM timeline WHERE actor = 'incident-bridge' GROUP BY kind",
    )
    assert sorted(kinds) == [("escalated", 1), ("reminder", 1)]
    assert sent(store, incident) == [
        ("escalated", "incident", "room"),
        ("escalated", "stakeholders", "pager"),
        ("reminder", "incident", "room"),
    ]


async def _open_and_close(store: Store) -> int:
    try:
        return await open_incident(store)
    finally:
        store.close()


def test_a_tick_on_a_stale_snapshot_cannot_send_twice(tmp_path: Path) -> None:
    """Two deferred transactions that both read before either writes: the second cannot
    commit its claim (SQLite refuses a write on a stale snapshot) and sends nothing; its next
    tick finds the item taken."""
    import asyncio

    path = tmp_path / "b.db"
    store = Store(path)
    store.open()
    asyncio.run(_open_and_close(store))
    a, b = _connect(path), _connect(path)
    try:
        a.execute("BEGIN")
        b.execute("BEGIN")
        a.execute("SELECT count(*) FROM reminders").fetchone()
        b.execute("SELECT count(*) FROM reminders").fetchone()
        assert fire_due(a, T0 + 6 * MIN, policy=sev1).fired
        a.execute("COMMIT")
        try:
            fire_due(b, T0 + 6 * MIN, policy=sev1)
            raise AssertionError("a write on a stale snapshot must fail")
        except sqlite3.OperationalError:
            b.execute("ROLLBACK")
        b.execute("BEGIN IMMEDIATE")
        assert fire_due(b, T0 + 6 * MIN, policy=sev1).fired == ()
        b.execute("COMMIT")
    finally:
        a.close()
        b.close()
    assert rows(store, "SELECT count(*) FROM timeline WHERE kind = 'escalated'") == [(1,)]


async def test_escalation_hands_the_commander_role_to_the_next_in_the_rotation(
    store: Store,
) -> None:
    incident = await open_incident(store)
    asked: list[tuple[str, str | None, int]] = []

    def next_commander(route: str, current: str | None, now: int) -> str | None:
        asked.append((route, current, now))
        return "bjorn"

    escalate = ReminderPolicy(acknowledge_within_s=300.0, escalate_to_next_commander=True)
    directory: Mapping[str, Mapping[str, str]] = {"bjorn": {"slack": "U01BJORN"}}
    result = await fire(
        store,
        T0 + 6 * MIN,
        lambda route, severity: escalate,
        next_commander=next_commander,
        directory=directory,
    )
    assert asked == [("default", "amara", T0 + 6 * MIN)]
    (fired,) = result.fired
    assert len(fired.event_ids) == 2
    entries = rows(
        store,
        "SELECT kind, actor, text, data FROM timeline WHERE incident_id = ? AND actor = ? "
        "ORDER BY id",
        incident,
        "incident-bridge",
    )
    assert [(k, a, t) for k, a, t, _ in entries] == [
        (
            "escalated",
            "incident-bridge",
            "Not acknowledged within 5 min: escalated to the stakeholders and to bjorn, "
            "the next commander",
        ),
        (
            "role_changed",
            "incident-bridge",
            "Commander handed over from amara to bjorn (by incident-bridge)",
        ),
    ]
    assert json.loads(entries[1][3]) == {
        "role": "commander",
        "from": ["amara"],
        "to": ["bjorn"],
        "action": "handover",
    }
    ((roles, people),) = rows(store, "SELECT roles, people FROM incidents WHERE id = ?", incident)
    assert json.loads(roles)["commander"] == ["bjorn"]
    assert json.loads(people)["bjorn"] == {"slack": "U01BJORN"}
    # the hand-over is a timeline entry: the dedicated channel hears of it
    assert sent(store, incident) == [
        ("escalated", "incident", "room"),
        ("escalated", "stakeholders", "pager"),
        ("role_changed", "incident", "room"),
    ]
    # Nobody next (a rotation of one, or no rotation): the escalation alone.
    other = await open_incident(store, key="k2")
    result = await fire(
        store, T0 + 7 * MIN, lambda r, s: escalate, next_commander=lambda r, c, n: None
    )
    assert [(f.incident_id, len(f.event_ids)) for f in result.fired] == [(other, 1)]


async def test_the_policy_is_asked_at_each_tick(store: Store) -> None:
    """A change of the rules applies to the incidents already open."""
    incident = await open_incident(store)
    policies: dict[str, ReminderPolicy] = {"now": NO_REMINDERS}
    current: Callable[[str, str], ReminderPolicy] = lambda route, severity: policies["now"]  # noqa: E731
    assert (await fire(store, T0 + 60 * MIN, current)).fired == ()
    policies["now"] = ReminderPolicy(update_every_s=3600.0)
    result = await fire(store, T0 + 61 * MIN, current)
    assert [(f.incident_id, f.kind, f.due_at) for f in result.fired] == [
        (incident, "reminder", T0 + 60 * MIN)
    ]


async def test_without_a_dedicated_channel_the_reminder_is_on_the_timeline_only(
    store: Store,
) -> None:
    incident = await open_incident(store, tiers=Tiers(general=("general",)))
    result = await fire(store, T0 + 31 * MIN)
    assert [f.kind for f in result.fired] == ["escalated", "reminder"]
    assert result.notifications == 0
    assert sent(store, incident) == []
    ((text,),) = rows(store, "SELECT text FROM timeline WHERE kind = 'escalated'")
    assert text == "Not acknowledged within 5 min (no stakeholders to escalate to)"


def test_the_ticks_reads_go_through_indexes(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.db")
    store.open()
    store.close()
    conn = sqlite3.connect(store.path)
    try:
        plans = [
            " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            for sql in (
                "SELECT id FROM incidents WHERE status IN ('triggered', 'acknowledged') "
                "ORDER BY id",
                "SELECT time, data FROM timeline WHERE incident_id = 1 "
                "AND kind = 'status_update' ORDER BY id DESC LIMIT 1",
                "SELECT 1 FROM reminders WHERE incident_id = 1 AND kind = 'escalated' LIMIT 1",
            )
        ]
    finally:
        conn.close()
    assert "USING" in plans[0] and "idx_incidents_status" in plans[0], plans[0]
    assert "idx_timeline_status_updates" in plans[1], plans[1]
    assert "PRIMARY KEY" in plans[2], plans[2]
