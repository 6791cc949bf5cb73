"""On-call overrides in the store (store/oncall.py), on both backends: made with who and why,
listed while they hold, ended early (kept, with who ended them), a retry with the same key
answered with the row it made."""

from __future__ import annotations

from typing import Any

from bridge.store.interface import NewOverride
from tests.conftest import rows
from tests.store.conftest import opened

H = 3600 * 10**9


def new(person: str = "bob", start: int = 10 * H, end: int = 20 * H, **kw: Any) -> NewOverride:
    return NewOverride(
        rotation=kw.pop("rotation", "ops"),
        person=person,
        start_at=start,
        end_at=end,
        reason=kw.pop("reason", "covering for alice"),
        created_by=kw.pop("created_by", "alice"),
        now=kw.pop("now", 1 * H),
        **kw,
    )


async def test_an_override_is_stored_with_who_and_why_and_listed_while_it_holds(
    store: Any,
) -> None:
    row, made = await store.oncall.add_override(new())
    assert made and row.id > 0
    assert (row.rotation, row.person, row.start_at, row.end_at) == ("ops", "bob", 10 * H, 20 * H)
    assert (row.reason, row.created_by, row.created_at, row.ended_at) == (
        "covering for alice", "alice", 1 * H, None,
    )  # fmt: skip
    other, _ = await store.oncall.add_override(new("carol", 30 * H, 40 * H, rotation="db"))
    assert [o.id for o in await store.oncall.list_overrides()] == [row.id, other.id]
    assert [o.id for o in await store.oncall.list_overrides(rotation="db")] == [other.id]
    # past its end it is no longer listed for a later instant
    assert [o.id for o in await store.oncall.list_overrides(after=20 * H)] == [other.id]


async def test_ending_an_override_keeps_it_with_who_ended_it(store: Any) -> None:
    row, _ = await store.oncall.add_override(new())
    ended = await store.oncall.end_override(override_id=row.id, now=12 * H, by="bob")
    assert ended is not None and (ended.ended_at, ended.ended_by) == (12 * H, "bob")
    assert ended.effective_end == 12 * H
    assert [o.id for o in await store.oncall.list_overrides(after=13 * H)] == []
    # a second end changes nothing; an unknown id is None
    again = await store.oncall.end_override(override_id=row.id, now=15 * H, by="carol")
    assert again is not None and (again.ended_at, again.ended_by) == (12 * H, "bob")
    assert await store.oncall.end_override(override_id=row.id + 99, now=15 * H, by="x") is None


async def test_a_retry_with_the_same_key_returns_the_row_it_made(store: Any) -> None:
    first, made = await store.oncall.add_override(new(idempotency_key="k1"))
    second, made_again = await store.oncall.add_override(new("carol", idempotency_key="k1"))
    assert made and not made_again and second == first
    assert len(await store.oncall.list_overrides()) == 1
    third, made = await store.oncall.add_override(new("carol", idempotency_key="k2"))
    assert made and third.id != first.id


async def test_a_hand_off_is_announced_once_on_the_open_incidents_inherited(store: Any) -> None:
    incident = await opened(store)
    (route,) = rows(store, "SELECT route FROM incidents WHERE id = ?", incident)[0]
    first = await store.oncall.record_handoff(
        rotation="ops", at=9 * H, giver="bjorn", taker="chen", routes=[route], now=9 * H + 5
    )
    assert first.recorded and first.incidents == (incident,)
    entries = rows(
        store, "SELECT kind, actor, text FROM timeline WHERE incident_id = ? AND actor = ?",
        incident, "incident-bridge",
    )  # fmt: skip
    assert entries == [
        ("note", "incident-bridge", f"Hand-off: bjorn hands ops to chen; chen inherits #{incident}")
    ]
    assert first.notifications == len(
        rows(store, "SELECT id FROM outbox WHERE event_id = (SELECT max(id) FROM timeline)")
    )
    # once: a second tick, a restart or another replica writes nothing
    again = await store.oncall.record_handoff(
        rotation="ops", at=9 * H, giver="bjorn", taker="chen", routes=[route], now=9 * H + 9
    )
    assert not again.recorded and again.incidents == ()
    # a rotation no route takes its commander from: recorded, nobody inherits anything
    other = await store.oncall.record_handoff(
        rotation="db", at=9 * H, giver="dana", taker="emil", routes=[], now=9 * H
    )
    assert other.recorded and other.incidents == ()
    assert len(rows(store, "SELECT 1 FROM timeline WHERE actor = 'incident-bridge'")) == 1
