"""Ids from outside (a chat command, a button, a path, a query parameter): only plain ASCII
digits from 1 to 2**63-1 are ids. Anything else (``²``, ``١٢``, 30 digits, ``0``, ``+5``) gets a
clear answer (an ephemeral line in chat, a 400 naming the field or a 404 in the API), never a
500, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.core.values import MAX_ID, parse_id
from bridge.http import chat as chat_routes
from tests.conftest import BOTH_BACKENDS, WRITE, Clock, MakeClient
from tests.fakes.slack_app import MATTERMOST_TOKEN, ResponseURLFake, button_body, mattermost_body
from tests.http.test_actions import opened
from tests.http.test_chat import FORM, Chat, start_chat

# Each test's service runs on SQLite and on PostgreSQL (tests/conftest.py: service_db).
pytestmark = BOTH_BACKENDS

# Not ids: digits that are not ASCII (superscripts pass str.isdigit() and fail int(); Arabic-
# Indic ones pass int()), signs, spaces, underscores, zero, and beyond SQLite's integers.
NOT_IDS = ["²", "¹", "١٢", "+5", " 5", "5 ", "1_000", "0", "00", "-1", "", "5.0", "0x10",
           "1" * 30, str(MAX_ID + 1)]  # fmt: skip


@pytest.fixture
async def chat(make_client: MakeClient, clock: Clock) -> Chat:
    return await start_chat(make_client, clock)


def test_only_plain_ascii_digits_in_range_are_ids() -> None:
    assert parse_id("1") == 1 and parse_id("42") == 42 and parse_id("007") == 7
    assert parse_id(str(MAX_ID)) == MAX_ID == 2**63 - 1
    for text in NOT_IDS:
        assert parse_id(text) is None, text


@pytest.mark.parametrize("bad", ["²", "1" * 30, str(MAX_ID + 1), "0"])
async def test_a_mattermost_button_with_a_bad_id_is_answered_not_a_500(
    chat: Chat, bad: str
) -> None:
    before = await chat.timeline()
    press = {
        "user_id": "mm0alice",
        "user_name": "alice.m",
        "trigger_id": f"mmt-{bad}",
        "context": {"action": "incident.acknowledge", "incident": bad, "token": MATTERMOST_TOKEN},
    }
    resp = await chat.client.post("/api/v1/chat/mattermost/actions", json=press)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert "is not an incident id" in body["ephemeral_text"], body
    assert await chat.timeline() == before


async def test_a_mattermost_button_with_a_json_number_beyond_the_store_is_answered(
    chat: Chat,
) -> None:
    press = {
        "user_id": "mm0alice",
        "trigger_id": "mmt-big",
        "context": {"action": "incident.resolve", "incident": 10**30, "token": MATTERMOST_TOKEN},
    }
    resp = await chat.client.post("/api/v1/chat/mattermost/actions", json=press)
    assert resp.status == 200 and "is not an incident id" in (await resp.json())["ephemeral_text"]


@pytest.mark.parametrize("bad", ["¹", "1" * 30])
async def test_a_slack_button_with_a_bad_id_is_answered_to_who_pressed(
    chat: Chat, bad: str
) -> None:
    fake = ResponseURLFake()
    await fake.start()
    try:
        chat.client.server.app[chat_routes.KEY].response_origins.add(fake.url)
        before = await chat.timeline()
        body = button_body("incident.acknowledge", bad, response_url=fake.hook(), trigger_id=bad)
        status, _ = await chat.slack("interactions", body)
        await chat.drain()
        assert status == 200
        [message] = fake.messages
        assert message["response_type"] == "ephemeral" and message["replace_original"] is False
        assert "is not an incident id" in message["text"]
        assert await chat.timeline() == before
    finally:
        await fake.close()


@pytest.mark.parametrize("bad", ["²", "#²", "1" * 30, f"#{MAX_ID + 1}", "١٢"])
async def test_a_command_with_a_bad_id_is_answered_with_the_help(chat: Chat, bad: str) -> None:
    before = await chat.timeline()
    body = await chat.command(f"{bad} ack", channel_id="C0ELSEWHERE")
    assert body["response_type"] == "ephemeral"
    assert "is not an incident id" in body["text"] and "`status`" in body["text"], body
    resp = await chat.client.post(
        "/api/v1/chat/mattermost/commands", data=mattermost_body(f"{bad} ack"), headers=FORM
    )
    assert resp.status == 200
    answer = await resp.json()
    assert answer["response_type"] == "ephemeral" and "is not an incident id" in answer["text"]
    assert await chat.timeline() == before


async def test_the_largest_id_is_an_id(chat: Chat) -> None:
    body = await chat.command(f"{MAX_ID} ack", channel_id="C0ELSEWHERE")
    assert body["text"] == f"Not done on #{MAX_ID}: no incident {MAX_ID}"


@pytest.mark.parametrize("bad", ["²", "١٢", "1" * 30, str(MAX_ID + 1), "0", "+5"])
async def test_api_paths_with_a_bad_id_are_not_found(make_client: MakeClient, bad: str) -> None:
    client: Any = await make_client()
    i = await opened(client)
    for method, path, body in [
        ("GET", "/api/v1/incidents/{}", None),
        ("POST", "/api/v1/incidents/{}/acknowledge", {}),
        ("GET", "/api/v1/incidents/{}/followup", None),
        ("GET", "/api/v1/incidents/{}/postmortem", None),
        ("POST", "/api/v1/incidents/{}/postmortem", {"sections": {"summary": "x"}}),
        ("POST", "/api/v1/notifications/{}/retry", None),
        ("GET", "/incidents/{}/postmortem", None),
    ]:
        resp = await client.request(method, path.format(bad), json=body, headers=WRITE)
        assert resp.status == 404, (path, bad, await resp.text())
    page = await client.get(f"/incidents/{bad}", headers=WRITE)
    assert page.status == 404
    incident = await (await client.get(f"/api/v1/incidents/{i}", headers=WRITE)).json()
    assert incident["status"] == "triggered"


@pytest.mark.parametrize("bad", ["²", "١٢", "1" * 30, str(MAX_ID + 1), "0", "+5", " 5", "1_0"])
async def test_api_query_ids_and_numbers_that_are_not_plain_digits_are_a_400(
    make_client: MakeClient, bad: str
) -> None:
    client: Any = await make_client()
    for path, name in [
        ("/api/v1/incidents", "before"),
        ("/api/v1/incidents", "limit"),
        ("/api/v1/notifications", "before"),
        ("/api/v1/search?q=x", "limit"),
        ("/api/v1/incidents/1/postmortem", "version"),
    ]:
        resp = await client.get(path, params={name: bad}, headers=WRITE)
        assert resp.status == 400, (path, name, bad)
        assert (await resp.json())["field"] == name, (path, name, bad)


@pytest.mark.parametrize("bad", ["²", "1" * 30, "12", " 5", 10**30, 0, -1, True, 1.0, 1.5])
async def test_api_body_ids_that_are_not_ids_are_a_400_naming_the_field(
    make_client: MakeClient, bad: Any
) -> None:
    client: Any = await make_client()
    i = await opened(client)
    for suffix, body, field in [
        ("notes", {"text": "x", "corrects": bad}, "corrects"),
        ("followup/check", {"item": bad}, "item"),
        ("followup/reopen", {"item": bad}, "item"),
        ("followup/waive", {"item": bad, "reason": "r"}, "item"),
    ]:
        resp = await client.post(f"/api/v1/incidents/{i}/{suffix}", json=body, headers=WRITE)
        assert resp.status == 400, (suffix, bad, await resp.text())
        assert (await resp.json())["field"] == field


async def test_a_slack_timestamp_in_other_digits_is_a_401_not_a_500(chat: Chat) -> None:
    for kind in ("commands", "interactions", "events"):
        headers = {"X-Slack-Request-Timestamp": "¹⁵", "X-Slack-Signature": "v0=" + "0" * 64}
        resp = await chat.client.post(f"/api/v1/chat/slack/{kind}", data=b"x", headers=headers)
        assert resp.status == 401, (kind, await resp.text())


@pytest.mark.parametrize("bad", ["²", "١٢", "1" * 30, "+5"])
async def test_the_pages_numbers_that_are_not_plain_digits_are_ignored_not_a_500(
    make_client: MakeClient, bad: str
) -> None:
    """The pages read numbers from their query (the list's page, the timeline fragment's last
    entry): one that is not plain ASCII digits is the default, never a 500."""
    client: Any = await make_client()
    i = await opened(client)
    listing = await client.get("/", params={"before": bad})
    assert listing.status == 200, await listing.text()
    entries = await client.get(f"/incidents/{i}/fragments/timeline", params={"after": bad})
    assert entries.status == 200, await entries.text()


async def test_a_live_stream_with_an_after_that_is_not_plain_digits_is_a_stream(
    make_client: MakeClient,
) -> None:
    client: Any = await make_client()
    i = await opened(client)
    resp = await client.get(f"/incidents/{i}/live", params={"after": "²"})
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    resp.close()
