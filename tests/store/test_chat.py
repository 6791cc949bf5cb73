"""What chat reads of the store: the incident of a dedicated channel; a chat command's
idempotency key outlives the process."""

from __future__ import annotations

import functools
import json
from typing import Any

from bridge.config import Settings
from bridge.core.actions import AddEntry
from bridge.store import Store
from bridge.store.actions import ActionRequest, Idempotency, apply_action
from bridge.store.chat import ChannelIncident, incident_of_channel
from tests.conftest import open_store
from tests.store.test_store import next_id


def _incident(conn: Any, route: str = "root") -> int:
    cur = conn.execute(
        "INSERT INTO incidents (id, key, title, severity, status, route, started_at, opened_at, "
        f"updated_at) VALUES ({next_id('incidents')}, ?, 't', 'sev2', 'triggered', ?, 0, 0, 0) "
        "RETURNING id",
        (f"k-{route}-{conn.total_changes}", route),
    )
    return int(cur.fetchone()[0])


def _state(conn: Any, incident: int, target: str, state: str) -> None:
    conn.execute(
        "INSERT INTO target_state (incident_id, target, state, updated_at) VALUES (?, ?, ?, 0)",
        (incident, target, state),
    )


async def test_the_incident_of_a_dedicated_channel(store: Store) -> None:
    def setup(conn: Any) -> int:
        a, b = _incident(conn, "db"), _incident(conn, "web")
        _state(conn, a, "slack-main", json.dumps({"channel": "C0A", "channel_name": "inc-1"}))
        _state(conn, b, "email", json.dumps({"message_id": "<x@y>"}))
        _state(conn, b, "broken", "not json")
        return a

    a = await store.write(setup)
    look = functools.partial(incident_of_channel)
    assert await store.read(functools.partial(look, channel="C0A")) == ChannelIncident(
        a, "db", "slack-main"
    )
    assert await store.read(functools.partial(look, channel="C0NONE")) is None
    assert await store.read(functools.partial(look, channel="")) is None


async def test_a_chat_key_is_kept_across_a_restart(db_settings: dict[str, Any]) -> None:
    idem = Idempotency("chat slack", "trigger-1", "digest")
    store = open_store(Settings(**db_settings))
    try:
        incident = await store.write(_incident)
        request = ActionRequest(incident, AddEntry("alice", "note", "x"), 1, idem)
        first = await store.write(functools.partial(apply_action, request=request))
        assert first.changed and not first.replayed
    finally:
        store.close()
    store = open_store(Settings(**db_settings))
    try:
        again = await store.write(functools.partial(apply_action, request=request))
        assert again.replayed and again.body == first.body
    finally:
        store.close()
