"""The write API: people's actions on an incident, each one transaction with its timeline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.config import ApiToken
from bridge.core.secrets import Secret
from bridge.http.actions import ACTIONS
from tests.conftest import BOTH_BACKENDS, WRITE, MakeClient, fixture_body

# Each test's service runs on SQLite and on PostgreSQL (tests/conftest.py: service_db).
pytestmark = BOTH_BACKENDS

HOOK = "/api/v1/alerts"


async def opened(client: Any) -> int:
    """A fixture webhook opens an incident; its id."""
    resp = await client.post(HOOK, json=fixture_body("firing-group-bearer.json"))
    assert resp.status == 200, await resp.text()
    return int((await resp.json())["incidents"][0]["id"])


async def post(client: Any, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    resp = await client.post(path, json=body, headers={**WRITE, **headers})
    return resp.status, await resp.json()


async def timeline(client: Any, incident: int) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/v1/incidents/{incident}", headers=WRITE)
    return list((await resp.json())["timeline"])


async def test_the_status_moves_and_illegal_ones_name_the_allowed(make_client: MakeClient) -> None:
    client: Any = await make_client()
    i = await opened(client)
    base = f"/api/v1/incidents/{i}"
    status, body = await post(client, f"{base}/close")
    assert status == 409
    assert body["error"] == (
        "cannot close: the incident is triggered; allowed now: acknowledge, mitigate, resolve"
    )
    status, body = await post(client, f"{base}/acknowledge", {"actor": "alice"})
    assert status == 200 and body["changed"] and body["incident"]["status"] == "acknowledged"
    assert body["incident"]["acknowledged_at"] is not None
    assert body["events"][0]["actor"] == "alice"
    # A retried acknowledge changes nothing and writes nothing.
    before = len(await timeline(client, i))
    status, body = await post(client, f"{base}/acknowledge", {"actor": "alice"})
    assert status == 200 and not body["changed"] and body["events"] == []
    assert len(await timeline(client, i)) == before
    status, body = await post(client, f"{base}/resolve", {"reason": "rolled back"})
    assert status == 200 and body["incident"]["status"] == "resolved"
    assert body["incident"]["mitigated_at"] is not None  # resolving passes through mitigation
    assert body["events"][0]["text"] == "Resolved by api: rolled back"
    status, body = await post(client, f"{base}/acknowledge")
    assert status == 409 and "allowed now: close" in body["error"]
    # A sev1 incident closes once its postmortem is published (the shipped policy).
    status, body = await post(client, f"{base}/close")
    assert status == 409 and "a postmortem is required for sev1 incidents" in body["error"]
    assert f"incident-bridge postmortem publish {i}" in body["error"]
    status, body = await post(client, f"{base}/postmortem", {"sections": {"summary": "x"}})
    assert status == 200
    status, body = await post(client, f"{base}/postmortem/publish")
    assert status == 200 and body["incident"]["status"] == "closed"  # publishing closes it
    status, body = await post(client, f"{base}/close")
    assert status == 200 and not body["changed"] and body["incident"]["status"] == "closed"
    status, body = await post(client, f"{base}/acknowledge")
    assert status == 409 and "no status change is allowed now" in body["error"]


async def test_roles_hand_over_and_release(make_client: MakeClient) -> None:
    client: Any = await make_client()
    i = await opened(client)
    roles = f"/api/v1/incidents/{i}/roles"
    status, body = await post(client, roles, {"role": "commander", "person": "alice"})
    assert status == 200 and body["incident"]["roles"]["commander"] == ["alice"]
    status, body = await post(
        client, roles, {"role": "commander", "person": "bob", "actor": "alice"}
    )
    event = body["events"][0]
    assert event["text"] == "Commander handed over from alice to bob"
    assert event["data"] == {
        "role": "commander",
        "from": ["alice"],
        "to": ["bob"],
        "action": "handover",
    }
    for person in ("carol", "dave", "carol"):
        await post(client, roles, {"role": "responders", "person": person})
    status, body = await post(
        client, roles, {"role": "responders", "person": "dave", "release": True}
    )
    assert body["incident"]["roles"]["responders"] == ["carol"]
    status, body = await post(client, roles, {"role": "commander", "release": True, "actor": "bob"})
    assert "commander" not in body["incident"]["roles"]
    assert body["events"][0]["text"] == "bob released the role commander; commander is unassigned"
    status, body = await post(client, roles, {"role": "captain", "person": "x"})
    assert status == 400 and body["field"] == "role"
    assert "'commander', 'scribe', 'liaison' or 'responders'" in body["error"]
    status, body = await post(client, roles, {"role": "scribe"})
    assert status == 400 and body["field"] == "person"


async def test_notes_decisions_actions_and_corrections(make_client: MakeClient) -> None:
    client: Any = await make_client()
    i = await opened(client)
    base = f"/api/v1/incidents/{i}"
    _, note = await post(client, f"{base}/notes", {"text": "db at 90% cpu", "actor": "scribe-sam"})
    _, item = await post(client, f"{base}/actions", {"text": "add an index", "owner": "bob"})
    assert item["events"][0]["text"] == "Action item: add an index (owner: bob)"
    note_id = note["events"][0]["id"]
    status, body = await post(client, f"{base}/decisions", {"text": "x", "corrects": note_id})
    assert status == 400 and body["field"] == "corrects"
    status, fixed = await post(
        client, f"{base}/notes", {"text": "db at 95% cpu", "corrects": note_id}
    )
    assert status == 200
    entries = {e["id"]: e for e in await timeline(client, i)}
    original = entries[note_id]
    assert original["text"] == "Note: db at 90% cpu"  # history is never rewritten
    assert original["corrected_by"] == fixed["events"][0]["id"]
    assert original["corrected_text"] == "db at 95% cpu"
    status, body = await post(client, f"{base}/notes", {"text": "x", "corrects": 999_999})
    assert status == 404
    status, body = await post(client, f"{base}/notes", {"text": ""})
    assert status == 400 and body["field"] == "text"
    status, body = await post(client, f"{base}/notes", {"text": "x", "colour": "red"})
    assert status == 400 and body["field"] == "colour" and "known: actor, text" in body["error"]
    resp = await client.post(f"{base}/notes", data=b"{not json", headers=WRITE)
    assert resp.status == 400 and (await resp.json())["field"] == "body"
    resp = await client.post(f"{base}/notes", data=b"[1]", headers=WRITE)
    assert resp.status == 400
    big = {"text": "x" * (70 * 1024)}
    resp = await client.post(f"{base}/notes", json=big, headers=WRITE)
    assert resp.status == 413
    status, body = await post(client, f"{base}/notes", {"text": "x" * 10_001})
    assert status == 400 and body["field"] == "text"


async def test_updates_and_severity(make_client: MakeClient) -> None:
    client: Any = await make_client()
    i = await opened(client)
    base = f"/api/v1/incidents/{i}"
    status, body = await post(
        client,
        f"{base}/updates",
        {"text": "Checkout degraded; fix rolling out", "next_update_in": 1800},
    )
    assert status == 200
    assert body["events"][0]["kind"] == "status_update"
    assert body["events"][0]["data"]["next_update_at"].endswith("Z")
    status, body = await post(client, f"{base}/updates", {"text": "x", "next_update_at": "soon"})
    assert status == 400 and body["field"] == "next_update_at"
    status, body = await post(client, f"{base}/severity", {"severity": "sev1"})
    assert status == 400 and body["field"] == "reason"
    status, body = await post(
        client, f"{base}/severity", {"severity": "sev3", "reason": "contained"}
    )
    assert status == 200 and body["incident"]["severity"] == "sev3"
    assert body["events"][0]["text"].startswith("Severity lowered from ")
    status, body = await post(client, f"{base}/severity", {"severity": "sev1", "reason": "revenue"})
    assert status == 200 and body["incident"]["severity"] == "sev1"
    assert body["events"][0]["text"] == "Severity raised from sev3 to sev1 by api: revenue"
    status, body = await post(client, f"{base}/severity", {"severity": "sev1", "reason": "again"})
    assert status == 200 and not body["changed"]


async def test_an_idempotency_key_answers_the_first_result(make_client: MakeClient) -> None:
    client: Any = await make_client()
    i = await opened(client)
    path = f"/api/v1/incidents/{i}/notes"
    first = await post(client, path, {"text": "once"}, **{"Idempotency-Key": "k1"})
    resp = await client.post(
        path, json={"text": "once"}, headers={**WRITE, "Idempotency-Key": "k1"}
    )
    assert resp.headers["Idempotent-Replayed"] == "true"
    assert (resp.status, await resp.json()) == first
    notes = [e for e in await timeline(client, i) if e["kind"] == "note"]
    assert len(notes) == 1
    status, body = await post(client, path, {"text": "other"}, **{"Idempotency-Key": "k1"})
    assert status == 422 and body["field"] == "Idempotency-Key"


@pytest.mark.parametrize("suffix", list(ACTIONS))
async def test_every_write_route_needs_a_write_token(make_client: MakeClient, suffix: str) -> None:
    client: Any = await make_client(
        api_tokens=(
            ApiToken("alice", "write", Secret("alice-token-0123456789")),
            ApiToken("wall", "read", Secret("wall-token-0123456789")),
        )
    )
    i = await opened(client)
    path = f"/api/v1/incidents/{i}/{suffix}"
    assert (await client.post(path, json={})).status == 401
    resp = await client.post(
        path, json={}, headers={"Authorization": "Bearer wall-token-0123456789"}
    )
    assert resp.status == 403 and "'wall' can only read" in (await resp.json())["error"]
    resp = await client.post(
        path, json={}, headers={"Authorization": "Bearer alice-token-0123456789"}
    )
    assert resp.status in (200, 400, 409)  # past auth: the action itself answers
    assert (await client.get(path, headers=WRITE)).status == 405
    assert (
        await client.post(f"/api/v1/incidents/999999/{suffix}", json={}, headers=WRITE)
    ).status in (400, 404)


async def test_the_tokens_name_is_the_actor(make_client: MakeClient) -> None:
    client: Any = await make_client(
        api_tokens=(ApiToken("alice", "write", Secret("alice-token-0123456789")),)
    )
    i = await opened(client)
    resp = await client.post(
        f"/api/v1/incidents/{i}/acknowledge",
        headers={"Authorization": "Bearer alice-token-0123456789"},
    )
    body = await resp.json()
    assert body["events"][0]["actor"] == "alice"
    assert body["events"][0]["text"] == "Acknowledged by alice"


async def test_concurrent_notes_and_role_changes_are_each_recorded_once(
    make_client: MakeClient,
) -> None:
    client: Any = await make_client()
    i = await opened(client)
    base = f"/api/v1/incidents/{i}"

    async def one(n: int) -> int:
        if n % 2:
            resp = await client.post(f"{base}/notes", json={"text": f"note {n}"}, headers=WRITE)
        else:
            role = {"role": "responders", "person": f"p{n}"}
            resp = await client.post(f"{base}/roles", json=role, headers=WRITE)
        return int(resp.status)

    statuses = await asyncio.gather(*(one(n) for n in range(200)))
    assert set(statuses) == {200}
    entries = await timeline(client, i)
    notes = [e["text"] for e in entries if e["kind"] == "note"]
    assert sorted(notes) == sorted(f"Note: note {n}" for n in range(1, 200, 2))
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    resp = await client.get(base, headers=WRITE)
    responders = (await resp.json())["roles"]["responders"]
    assert sorted(responders) == sorted(f"p{n}" for n in range(0, 200, 2))  # no lost update
