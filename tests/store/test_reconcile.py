"""Reconciliation's writes: decided inside the writer on what the store holds then, one
transaction per batch, scoped to the answering Alertmanager's receivers; the silence rows of
``silence_on_ack``; the receiver kept on incidents (migration 0012)."""

from __future__ import annotations

import sqlite3
from typing import Any

from bridge.core.actions import Transition
from bridge.core.reconcile import AmAlert, AmSilence, AmView
from bridge.store import Store
from bridge.store.actions import ActionRequest, apply_action
from bridge.store.changes import silence_key
from bridge.store.reconcile import apply_view, candidates
from tests.conftest import SECOND, T0, execute, fixture_body, rows
from tests.store.conftest import Databases, opened

FPS = ("b1c11497b32ce15e", "5308e11450d376b3")  # the fixture's two alerts
STARTS = 1_795_752_313_998_173_144  # their startsAt (2026-11-27T04:05:13.998173144Z)


def answer(
    *alerts: AmAlert, at: int, receivers: tuple[str, ...] = ("bridge",), **kw: Any
) -> AmView:
    return AmView(
        peer="http://am:9093",
        fetched_at=at,
        up_since=T0 - 3600 * SECOND,
        alerts={a.fingerprint: a for a in alerts},
        silences=kw.get("silences", {}),
        receivers=frozenset(receivers),
    )


def listed(fp: str, **kw: Any) -> AmAlert:
    return AmAlert(fingerprint=fp, labels={"alertname": "HighErrorRate"}, starts_at=STARTS, **kw)


async def test_missed_resolves_mitigate_once_and_a_second_poll_changes_nothing(
    store: Store,
) -> None:
    incident = await opened(store)
    assert rows(store, "SELECT receiver FROM incidents") == [("bridge",)]
    found = await store.read(lambda conn: candidates(conn, frozenset({"bridge"})))
    assert found.incidents == (incident,)
    view = answer(at=T0 + 10 * SECOND)

    def apply(conn: sqlite3.Connection) -> Any:
        return apply_view(conn, incident_ids=[incident], view=view, now=T0 + 11 * SECOND)

    done = await store.write(apply)
    assert done.changed == (incident,) and done.mitigated == (incident,)
    assert done.kinds == {"alert_resolved": 2, "status_changed": 1}
    assert done.notifications >= 1, "the tiers hear of the mitigation"
    assert rows(store, "SELECT status FROM incidents") == [("mitigated",)]
    links = rows(store, "SELECT status, ends_at, mark FROM incident_alerts ORDER BY fingerprint")
    assert links == [("resolved", T0 + 10 * SECOND, '{"resolved_via":"api"}')] * 2
    assert rows(store, "SELECT DISTINCT status FROM alerts") == [("resolved",)]
    kinds = [r[0] for r in rows(store, "SELECT actor FROM timeline WHERE kind = 'alert_resolved'")]
    assert kinds == ["alertmanager-api"] * 2
    before = rows(store, "SELECT count(*) FROM timeline")
    again = await store.write(apply)
    assert not again.changed and rows(store, "SELECT count(*) FROM timeline") == before


async def test_a_webhook_written_after_the_answer_was_asked_for_is_not_undone(
    store: Store,
) -> None:
    incident = await opened(store)
    # The answer was asked for before the webhook was written (its last_seen is T0).
    view = answer(at=T0 - SECOND)
    done = await store.write(
        lambda conn: apply_view(conn, incident_ids=[incident], view=view, now=T0 + SECOND)
    )
    assert not done.changed
    assert rows(store, "SELECT DISTINCT status FROM incident_alerts") == [("firing",)]


async def test_only_the_answering_alertmanagers_receivers_are_compared(store: Store) -> None:
    await opened(store)
    found = await store.read(lambda conn: candidates(conn, frozenset({"another"})))
    assert found.incidents == () and found.unknown_receiver == 1


async def test_the_candidates_come_oldest_first(store: Store) -> None:
    from tests.store.test_store import ingest

    body = fixture_body("firing-group-bearer.json")
    for n in range(3):
        await ingest(store, {**body, "groupKey": f'{{}}:{{alertname="G{n}"}}'})
    ids = [r[0] for r in rows(store, "SELECT id FROM incidents ORDER BY id")]
    assert len(ids) == 3
    # PostgreSQL writes an updated row anew at the end of its table: read without an order,
    # the first incident would now come last
    execute(store, "UPDATE incidents SET title = title || '' WHERE id = ?", (ids[0],))
    found = await store.read(lambda conn: candidates(conn, frozenset({"bridge"})))
    assert list(found.incidents) == ids


async def test_a_silence_is_recorded_on_the_incident_and_in_the_api_read(store: Store) -> None:
    incident = await opened(store)
    s = AmSilence("sil-1", "active", "alice", "deploy", T0, T0 + 3600 * SECOND)
    view = answer(
        listed(FPS[0], state="suppressed", silenced_by=("sil-1",)),
        listed(FPS[1]),
        at=T0 + 5 * SECOND,
        silences={"sil-1": s},
    )
    done = await store.write(
        lambda conn: apply_view(conn, incident_ids=[incident], view=view, now=T0 + 6 * SECOND)
    )
    assert done.kinds == {"alert_silenced": 1}
    from bridge.store.queries import get_incident

    detail = await store.read(lambda conn: get_incident(conn, incident))
    assert detail is not None
    marks = {a["fingerprint"]: a["suppressed"] for a in detail["alerts"]}
    assert marks[FPS[1]] is None
    assert marks[FPS[0]]["silenced_by"][0]["created_by"] == "alice"
    assert detail["status"] == "triggered"


async def test_silence_on_ack_writes_one_make_row_and_one_expire_row(store: Store) -> None:
    incident = await opened(store)

    async def act(verb: str, at: int, silence: bool = True) -> Any:
        request = ActionRequest(
            incident,
            Transition("alice", verb, reason="fixed" if verb == "resolve" else ""),
            at,
            silence_on_ack=(lambda route: 7200.0) if silence else None,
        )
        return await store.write(lambda conn: apply_action(conn, request))

    assert (await act("acknowledge", T0 + SECOND)).status == 200
    made = rows(
        store,
        "SELECT target, tier, event FROM outbox WHERE idempotency_key = ?",
        silence_key(incident, "make"),
    )
    assert made == [("@alertmanager", "alertmanager", "acknowledged")]
    answer_ = await act("resolve", T0 + 2 * SECOND)
    assert answer_.status == 200, answer_.body
    expired = rows(
        store,
        "SELECT event FROM outbox WHERE idempotency_key = ?",
        silence_key(incident, "expire"),
    )
    assert expired == [("resolved",)]


async def test_no_silence_rows_without_the_route_asking(store: Store) -> None:
    incident = await opened(store)
    request = ActionRequest(incident, Transition("alice", "acknowledge"), T0 + SECOND)
    assert (await store.write(lambda conn: apply_action(conn, request))).status == 200
    assert rows(store, "SELECT count(*) FROM outbox WHERE target = '@alertmanager'") == [(0,)]


def test_the_migration_fills_the_receiver_of_open_incidents_from_the_journal(
    databases: Databases,
) -> None:
    conn = databases.new(upto="0012")
    conn.execute(
        "INSERT INTO incidents (id, key, title, severity, status, started_at, opened_at) "
        "VALUES (1, 'a', 't', 'sev2', 'triggered', 1, 1), (2, 'b', 't', 'sev2', 'closed', 1, 1)"
    )
    conn.execute(
        "INSERT INTO webhooks (id, received_at, sha256, receiver, status, incidents) VALUES "
        "(1, 1, 'x', 'old', 'applied', '[1, 2]'), (2, 2, 'y', 'newer', 'applied', '[1]'), "
        "(3, 3, 'z', 'zz', 'applied', 'not json')"
    )
    assert databases.upgrade(conn)[0] == "0012_reconcile"  # and any later ones
    got = dict(conn.execute("SELECT id, receiver FROM incidents").fetchall())
    assert got == {1: "newer", 2: None}, "open incidents only, the newest webhook's receiver"
