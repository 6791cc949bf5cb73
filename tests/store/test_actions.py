"""A person's action is one transaction, and its Idempotency-Key answer survives a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bridge.core.actions import AddEntry, Transition
from bridge.store import Store
from bridge.store.actions import ActionRequest, Idempotency, apply_action
from tests.conftest import SECOND, T0, fixture_body
from tests.store.test_store import ingest


def rows(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


async def test_the_kept_answer_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    store = Store(path)
    store.open()
    result = await ingest(store, fixture_body("firing-group-bearer.json"))
    incident = result.incidents[0].id
    key = Idempotency("alice", "k-1", "digest-1")
    request = ActionRequest(incident, AddEntry("alice", "note", "once"), T0 + SECOND, key)
    first = await store.write(lambda conn: apply_action(conn, request))
    store.close()
    events = rows(path, "timeline")

    store = Store(path)
    store.open()
    try:
        later = ActionRequest(incident, AddEntry("alice", "note", "once"), T0 + 9 * SECOND, key)
        again = await store.write(lambda conn: apply_action(conn, later))
        assert again.replayed and (again.status, again.body) == (first.status, first.body)
        assert rows(path, "timeline") == events  # nothing written twice
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
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "b.db")
    store.open()
    try:
        result = await ingest(store, fixture_body("firing-group-bearer.json"))
        incident = result.incidents[0].id
        before = {t: rows(store.path, t) for t in ("timeline", "outbox")}
        request = ActionRequest(incident, Transition("alice", "acknowledge"), T0 + SECOND)
        answer = await store.write(lambda conn: apply_action(conn, request))
        assert answer.status == 200 and answer.changed and answer.notifications >= 1
        assert rows(store.path, "timeline") == before["timeline"] + 1
        # The built-in policy's console target hears of the acknowledgement in the general tier.
        assert rows(store.path, "outbox") == before["outbox"] + answer.notifications
        missing = ActionRequest(999, Transition("alice", "acknowledge"), T0)
        assert (await store.write(lambda conn: apply_action(conn, missing))).status == 404
    finally:
        store.close()
