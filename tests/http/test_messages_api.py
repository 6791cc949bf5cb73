"""``GET /api/v1/messages`` and ``POST /api/v1/messages/{id}/retry`` (and the CLI's
``notifications --messages``) on both backends: the channel messages tied to no incident listed
newest first by state and page, a dead one sent again, bad input a 4xx naming the field."""

from __future__ import annotations

from typing import Any

from bridge.core.secrets import Secret
from bridge.service import AppState
from bridge.store import messages as messages_sql
from tests.conftest import BOTH_BACKENDS, MakeClient, execute, rows

READ = {"Authorization": "Bearer reader-token"}
WRITE = {"Authorization": "Bearer writer-token"}

pytestmark = BOTH_BACKENDS


async def _service(make_client: MakeClient) -> Any:
    client: Any = await make_client(
        api_token=Secret("writer-token"), api_read_token=Secret("reader-token")
    )
    store = client.server.app[AppState.KEY].store

    def write(conn: Any) -> None:
        for n in range(3):
            messages_sql.enqueue(
                conn,
                key=f"handoff:ops:{n}",
                kind="handoff",
                data={"rotation": "ops", "giver": "amara", "taker": "bjorn"},
                targets=["console"],
                now=1_000 + n,
            )

    await store.write(write)
    return client, store


async def test_listed_newest_first_by_state_and_page(make_client: MakeClient) -> None:
    client, store = await _service(make_client)
    execute(
        store,
        "UPDATE channel_messages SET state = 'dead', attempts = 5, last_error = 'http_503' "
        "WHERE message_key = ?",
        ("handoff:ops:1",),
    )
    resp = await client.get("/api/v1/messages", headers=READ)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert [m["key"] for m in body["messages"]] == [f"handoff:ops:{n}" for n in (2, 1, 0)]
    first = body["messages"][0]
    assert set(first) == {
        "id", "key", "kind", "target", "state", "attempts", "next_attempt_at", "created_at",
        "delivered_at", "last_error",
    }  # fmt: skip
    assert first["kind"] == "handoff" and first["target"] == "console"
    assert "bjorn" not in await resp.text()  # not what it said
    dead = await (await client.get("/api/v1/messages?state=dead", headers=READ)).json()
    assert [(m["key"], m["attempts"], m["last_error"]) for m in dead["messages"]] == [
        ("handoff:ops:1", 5, "http_503")
    ]
    page = await (await client.get("/api/v1/messages?limit=2", headers=READ)).json()
    assert len(page["messages"]) == 2 and page["next"]
    for query, field in (("state=gone", "state"), ("limit=0", "limit"), ("colour=red", "colour")):
        resp = await client.get(f"/api/v1/messages?{query}", headers=READ)
        assert resp.status == 400 and (await resp.json())["field"] == field, query


async def test_a_dead_message_is_sent_again(make_client: MakeClient) -> None:
    client, store = await _service(make_client)
    (dead_id,) = rows(store, "SELECT id FROM channel_messages WHERE message_key = 'handoff:ops:0'")[
        0
    ]
    execute(
        store, "UPDATE channel_messages SET state = 'dead', attempts = 5 WHERE id = ?", (dead_id,)
    )
    resp = await client.post(f"/api/v1/messages/{dead_id}/retry", headers=READ)
    assert resp.status == 403
    resp = await client.post(f"/api/v1/messages/{dead_id}/retry", headers=WRITE)
    assert resp.status == 200, await resp.text()
    again = await resp.json()
    assert again["state"] == "pending" and again["attempts"] == 0
    resp = await client.post(f"/api/v1/messages/{dead_id}/retry", headers=WRITE)
    assert resp.status == 409 and "only dead ones" in (await resp.json())["error"]
    resp = await client.post("/api/v1/messages/999/retry", headers=WRITE)
    assert resp.status == 404
    resp = await client.post("/api/v1/messages/x/retry", headers=WRITE)
    assert resp.status == 404  # not an id: no such message, as for every other resource
