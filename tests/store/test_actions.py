"""A person's action is one transaction, and its Idempotency-Key answer survives a restart."""

from __future__ import annotations

from typing import Any

from bridge.config import Settings
from bridge.core.actions import AddEntry, Dismiss, Transition
from bridge.store import Store
from bridge.store.actions import ActionAnswer, ActionRequest, Idempotency, apply_action
from tests.conftest import SECOND, T0, execute, fixture_body, open_store, rows
from tests.store.conftest import opened
from tests.store.test_store import ingest, next_id


def count(store: Any, table: str) -> int:
    return int(rows(store, f"SELECT count(*) FROM {table}")[0][0])


async def test_the_kept_answer_survives_a_restart(db_settings: dict[str, Any]) -> None:
    settings = Settings(**db_settings)
    store = open_store(settings)
    result = await ingest(store, fixture_body("firing-group-bearer.json"))
    incident = result.incidents[0].id
    key = Idempotency("alice", "k-1", "digest-1")
    request = ActionRequest(incident, AddEntry("alice", "note", "once"), T0 + SECOND, key)
    first = await store.write(lambda conn: apply_action(conn, request))
    store.close()
    events = count(store, "timeline")

    store = open_store(settings)
    try:
        later = ActionRequest(incident, AddEntry("alice", "note", "once"), T0 + 9 * SECOND, key)
        again = await store.write(lambda conn: apply_action(conn, later))
        assert again.replayed and (again.status, again.body) == (first.status, first.body)
        assert count(store, "timeline") == events  # nothing written twice
        other = ActionRequest(
            incident,
            AddEntry("alice", "note", "twice"),
            T0,
            Idempotency("alice", "k-1", "digest-2"),
        )
        refused = await store.write(lambda conn: apply_action(conn, other))
        assert refused.status == 422
        # Another token's key of the same name is its own.
        bob = ActionRequest(
            incident, AddEntry("bob", "note", "mine"), T0, Idempotency("bob", "k-1", "digest-1")
        )
        assert (await store.write(lambda conn: apply_action(conn, bob))).status == 200
    finally:
        store.close()


async def test_an_action_writes_its_incident_events_and_outbox_rows_together(
    store: Store,
) -> None:
    incident = await opened(store)
    before = {t: count(store, t) for t in ("timeline", "outbox")}
    request = ActionRequest(incident, Transition("alice", "acknowledge"), T0 + SECOND)
    answer = await store.write(lambda conn: apply_action(conn, request))
    assert answer.status == 200 and answer.changed and answer.notifications >= 1
    assert count(store, "timeline") == before["timeline"] + 1
    # The built-in policy's console target hears of the acknowledgement in the general tier.
    assert count(store, "outbox") == before["outbox"] + answer.notifications
    missing = ActionRequest(999, Transition("alice", "acknowledge"), T0)
    assert (await store.write(lambda conn: apply_action(conn, missing))).status == 404


async def test_a_dismissal_closes_without_a_postmortem_and_stays_out_of_mttr(
    store: Store,
) -> None:
    n = await opened(store)

    async def do(command: object, at: int) -> ActionAnswer:
        request = ActionRequest(n, command, at)  # type: ignore[arg-type]
        return await store.write(lambda conn: apply_action(conn, request))

    assert (await do(Transition("alice", "acknowledge"), T0 + SECOND)).changed
    # An open checklist item of the false alarm is waived with it; an action item stays.
    for kind in ("check", "action"):
        execute(
            store,
            "INSERT INTO followup_items (id, incident_id, kind, text, created_by, created_at) "
            f"VALUES ({next_id('followup_items')}, ?, ?, 'x', 'b', 0)",
            (n, kind),
        )
    answer = await do(Dismiss("alice", "a test webhook"), T0 + 2 * SECOND)
    assert answer.status == 200 and answer.changed and answer.notifications >= 1
    (event,) = answer.body["events"]
    assert event["kind"] == "dismissed" and event["text"] == "Dismissed by alice: a test webhook"
    assert event["data"] == {
        "from": "acknowledged",
        "to": "closed",
        "reason": "a test webhook",
        "waived_items": 1,
    }
    row = rows(
        store,
        "SELECT status, closed_at, mitigated_at, resolved_at, dismissed_at FROM incidents "
        "WHERE id = ?",
        n,
    )
    assert row == [("closed", T0 + 2 * SECOND, None, None, T0 + 2 * SECOND)]
    assert rows(store, "SELECT kind, state FROM followup_items ORDER BY id") == [
        ("check", "waived"),
        ("action", "open"),
    ]
    # No time to mitigate or resolve, no postmortem pending (sev1: required without
    # rules), counted as dismissed; the acknowledgement observed before stays.
    metrics = {m for (m,) in rows(store, "SELECT metric FROM metric_histograms")}
    assert metrics == {"detect", "ack"}
    assert rows(store, "SELECT n FROM metric_postmortems WHERE n > 0") == []
    assert rows(store, "SELECT n FROM metric_counters WHERE metric = 'dismissed'") == [(1,)]
    # A retry changes nothing; a close after it neither (closed already).
    again = await do(Dismiss("bob", "again"), T0 + 3 * SECOND)
    assert (again.status, again.changed) == (200, False)
    assert not (await do(Transition("bob", "close"), T0 + 3 * SECOND)).changed
    assert rows(store, "SELECT n FROM metric_counters WHERE metric = 'dismissed'") == [(1,)]

    # Alertmanager repeating the same alerts (same startsAt) does not bring it back.
    repeat = await ingest(store, fixture_body("firing-group-bearer.json"), T0 + 60 * SECOND)
    assert [(i.id, i.status, i.created) for i in repeat.incidents] == [(n, "closed", False)]

    # A resolved incident was worked on: it is closed, not dismissed; its missing
    # postmortem is still counted.
    body = fixture_body("firing-group-bearer.json")
    body["groupKey"] = "{}:{other}"
    other = await ingest(store, body, T0 + 61 * SECOND)
    m = other.incidents[0].id
    assert m != n
    request = ActionRequest(m, Transition("a", "resolve"), T0 + 62 * SECOND)
    assert (await store.write(lambda conn: apply_action(conn, request))).changed
    request = ActionRequest(m, Dismiss("a", "oops"), T0 + 63 * SECOND)
    refused = await store.write(lambda conn: apply_action(conn, request))
    assert refused.status == 409
    assert "cannot dismiss: the incident is resolved" in refused.body["error"]
    assert rows(store, "SELECT n FROM metric_postmortems WHERE n > 0") == [(1,)]
