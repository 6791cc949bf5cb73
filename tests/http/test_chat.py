"""Chat commands end to end: signed requests from the Slack and Mattermost fakes to the real app,
each verb from a command to the timeline (the person as the actor) and the outbox rows it
caused; refusals that do nothing; retries and replays that never act twice."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.core.secrets import Secret
from bridge.http import chat as chat_routes
from bridge.http.chat import slack as slack_routes
from bridge.runtime import rules_runtime
from bridge.service import AppState
from bridge.targets import build_target
from bridge.targets.base import TargetDeps
from bridge.targets.mattermost import MattermostConfig, MattermostTarget
from bridge.targets.slack import actions_block
from tests.conftest import BOTH_BACKENDS, SECOND, WRITE, Clock, MakeClient
from tests.fakes.slack import TOKEN
from tests.fakes.slack_app import (
    MATTERMOST_TOKEN,
    SIGNING_SECRET,
    ResponseURLFake,
    SlackWebAPIWithHistory,
    button_body,
    event_body,
    mattermost_body,
    signed,
    slash_body,
)
from tests.http.test_actions import opened

# Each test's service runs on SQLite and on PostgreSQL (tests/conftest.py: service_db).
pytestmark = BOTH_BACKENDS

PEOPLE = {
    "alice": {"slack": "U0ALICE", "mattermost": "mm0alice", "mattermost_username": "alice.m"},
    "bob": {"slack": "U0BOB"},
}
# The people come from the rotations' handles; messages go to a general target and, for the
# incident tier (every timeline entry), to a room: each verb's outbox rows are visible.
RULES = """
targets:
  general: {type: console}
  room: {type: console}
rotations:
  oncall:
    members:
      - {name: alice, handles: {slack: U0ALICE, mattermost: mm0alice,
                                mattermost_username: alice.m}}
      - {name: bob, handles: {slack: U0BOB}}
    start: 2026-01-05
route:
  tiers: {general: [general], incident: room}
  postmortem: {sev1: optional, sev3: optional}
"""
CHANNEL = "C0INC"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Chat:
    """A service with chat on, an incident with a dedicated channel, and signed posts."""

    def __init__(self, client: Any, clock: Clock, incident: int) -> None:
        self.client, self.clock, self.incident = client, clock, incident
        self.state: AppState = client.server.app[AppState.KEY]

    async def slack(
        self, kind: str, body: bytes, *, headers: dict[str, str] | None = None, json_: bool = False
    ) -> tuple[int, Any]:
        self.clock.advance(1)  # a new timestamp: a new signature, as Slack makes for a retry
        ts = self.clock.now // SECOND
        hdrs = {
            **signed(body, ts),
            "Content-Type": "application/json" if json_ else FORM["Content-Type"],
            **(headers or {}),
        }
        resp = await self.client.post(f"/api/v1/chat/slack/{kind}", data=body, headers=hdrs)
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text

    async def command(self, text: str, **kw: Any) -> dict[str, Any]:
        kw.setdefault("channel_id", CHANNEL)
        kw.setdefault("trigger_id", f"trigger-{text}-{self.clock.now}")
        status, body = await self.slack("commands", slash_body(text, **kw))
        assert status == 200, body
        assert isinstance(body, dict)
        return body

    async def timeline(self) -> list[dict[str, Any]]:
        resp = await self.client.get(f"/api/v1/incidents/{self.incident}", headers=WRITE)
        return list((await resp.json())["timeline"])

    async def incident_now(self) -> dict[str, Any]:
        resp = await self.client.get(f"/api/v1/incidents/{self.incident}", headers=WRITE)
        return dict(await resp.json())

    async def outbox(self) -> list[dict[str, Any]]:
        resp = await self.client.get("/api/v1/notifications?limit=500", headers=WRITE)
        return list((await resp.json())["notifications"])

    async def drain(self) -> None:
        await self.client.server.app[chat_routes.KEY].drain()


async def start_chat(make_client: MakeClient, clock: Clock) -> Chat:
    client: Any = await make_client(
        slack_signing_secret=Secret(SIGNING_SECRET),
        mattermost_command_token=Secret(MATTERMOST_TOKEN),
        chat_read_only_users=("carol", "slack:U0LOOK"),
    )
    state: AppState = client.server.app[AppState.KEY]
    rules = state.settings.db.parent / "chat-rules.yaml"
    rules.write_text(RULES)
    state.runtime = rules_runtime([rules], TargetDeps())
    assert dict(state.runtime.people) == PEOPLE
    incident = await opened(client)

    def dedicated(conn: Any) -> None:
        conn.execute(
            "INSERT INTO target_state (incident_id, target, state, updated_at) VALUES (?,?,?,0)",
            (incident, "slack", json.dumps({"channel": CHANNEL, "channel_name": "inc-1"})),
        )

    await state.store.write(dedicated)
    return Chat(client, clock, incident)


@pytest.fixture
async def chat(make_client: MakeClient, clock: Clock) -> Chat:
    return await start_chat(make_client, clock)


async def test_chat_routes_are_off_without_their_secret(make_client: MakeClient) -> None:
    client: Any = await make_client()
    for path in (
        "slack/commands",
        "slack/interactions",
        "slack/events",
        "mattermost/commands",
        "mattermost/actions",
    ):
        resp = await client.post(f"/api/v1/chat/{path}", data=b"text=ack")
        assert resp.status == 404, path


async def test_every_verb_from_the_dedicated_channel_to_the_timeline_and_outbox(
    chat: Chat,
) -> None:
    # verb -> (the channel's answer, the new entries' (kind, actor), the outbox rows' (target,
    # event)): milestones to both tiers, the rest of the timeline to the incident's room
    def both(event: str) -> list[tuple[str, str]]:
        return [("general", event), ("room", event)]

    room = [("room", "timeline")]
    cases: list[tuple[str, str, list[tuple[str, str]], list[tuple[str, str]]]] = [
        ("ack", "Acknowledged by alice", [("status_changed", "alice")], both("acknowledged")),
        ("role commander", "alice", [("role_changed", "alice")], room),
        ("role scribe <@U0BOB|bob>", "bob", [("role_changed", "alice")], room),
        ("role responder <@U0NEW>", "slack:U0NEW", [("role_changed", "alice")], room),
        ("note db at 90% cpu", "db at 90% cpu", [("note", "alice")], room),
        ("decision roll back", "roll back", [("decision", "alice")], room),
        ("action add an index <@U0BOB>", "owner: bob", [("action", "alice")], room),
        (
            "update rolling back now",
            "rolling back now",
            [("status_update", "alice")],
            both("update"),
        ),
        (
            "severity sev3 customers hit",
            "customers hit",
            [("severity_changed", "alice")],
            both("severity_changed"),
        ),
        ("mitigate rolled back", "rolled back", [("status_changed", "alice")], both("mitigated")),
        ("resolve", "Resolved by alice", [("status_changed", "alice")], both("resolved")),
    ]
    for text, says, entries, events in cases:
        before, outbox_before = await chat.timeline(), await chat.outbox()
        body = await chat.command(text)
        assert body["response_type"] == "in_channel", (text, body)
        assert body["text"].startswith(f"#{chat.incident}: ") and says in body["text"], body
        new = (await chat.timeline())[len(before) :]
        assert [(e["kind"], e["actor"]) for e in new] == entries, (text, new)
        rows = [r for r in await chat.outbox() if r["id"] not in {o["id"] for o in outbox_before}]
        assert sorted((r["target"], r["event"]) for r in rows) == events, (text, rows)
        assert all(r["incident_id"] == chat.incident for r in rows)
    incident = await chat.incident_now()
    assert incident["status"] == "resolved" and incident["severity"] == "sev3"
    assert incident["roles"]["commander"] == ["alice"] and incident["roles"]["scribe"] == ["bob"]
    assert incident["roles"]["responders"] == ["slack:U0NEW"]
    body = await chat.command("close no postmortem needed for sev3")
    assert body["response_type"] == "in_channel" and "Closed by alice" in body["text"]
    # a refusal is an ephemeral answer to its author
    body = await chat.command("mitigate")
    assert body["response_type"] == "ephemeral" and "no status change is allowed" in body["text"]


async def test_ids_status_help_and_bad_lines(chat: Chat) -> None:
    body = await chat.command("ack", channel_id="C0ELSEWHERE")
    assert body["response_type"] == "ephemeral" and "Which incident?" in body["text"]
    assert "/incident" in body["text"]  # the help follows
    body = await chat.command(f"{chat.incident} ack", channel_id="C0ELSEWHERE", user_id="U0ZED")
    assert body["text"] == f"#{chat.incident}: Acknowledged by slack:U0ZED"
    body = await chat.command("ack")
    assert body["response_type"] == "ephemeral" and "Nothing to change" in body["text"]
    body = await chat.command("status")
    assert body["response_type"] == "ephemeral"
    assert body["text"].startswith(f"#{chat.incident} [") and "Status: acknowledged" in body["text"]
    for line in ("help", "", "frobnicate", "role captain", "severity sev9", "note"):
        body = await chat.command(line)
        assert body["response_type"] == "ephemeral" and "`status`" in body["text"], line
    body = await chat.command("999 ack", channel_id="C0ELSEWHERE")
    assert body["response_type"] == "ephemeral" and "no incident 999" in body["text"]
    body = await chat.command("999 status", channel_id="C0ELSEWHERE")
    assert body["text"] == "No incident #999."


async def test_dismiss_closes_a_false_alarm_with_its_reason(chat: Chat) -> None:
    body = await chat.command("dismiss")
    assert body["response_type"] == "ephemeral" and "needs a reason" in body["text"]
    assert (await chat.incident_now())["status"] == "triggered"
    body = await chat.command("dismiss a load test, not an outage")
    assert body["response_type"] == "in_channel", body
    incident = await chat.incident_now()
    assert incident["status"] == "closed"
    assert incident["mitigated_at"] is None and incident["resolved_at"] is None
    dismissed = [e for e in await chat.timeline() if "a load test, not an outage" in str(e)]
    assert dismissed, await chat.timeline()
    body = await chat.command("dismiss again")  # a retry: nothing more
    assert body["response_type"] == "ephemeral"


async def test_read_only_people_can_only_look(chat: Chat) -> None:
    before = await chat.timeline()
    for user in ("U0LOOK",):
        body = await chat.command("note hello", user_id=user)
        assert body["response_type"] == "ephemeral" and "You can only look" in body["text"]
        body = await chat.command("status", user_id=user)
        assert "Status: triggered" in body["text"]
    chat.state.runtime = replace(chat.state.runtime, people={**PEOPLE, "carol": {"slack": "U0C"}})
    body = await chat.command("resolve", user_id="U0C")
    assert "You can only look" in body["text"]
    assert await chat.timeline() == before


async def test_bad_requests_are_refused_and_change_nothing(chat: Chat) -> None:
    before, outbox = await chat.timeline(), await chat.outbox()
    body = slash_body("ack", channel_id=CHANNEL)
    now = chat.clock.now // SECOND
    url = "/api/v1/chat/slack/commands"
    cases: list[tuple[dict[str, str], bytes, int]] = [
        ({**signed(body, now), "X-Slack-Signature": "v0=" + "0" * 64}, body, 401),
        (signed(body, now, secret="another-secret"), body, 401),
        (signed(body, now - 301), body, 401),  # stale
        (signed(body, now + 301), body, 401),  # from the future
        ({"X-Slack-Request-Timestamp": str(now)}, body, 401),  # no signature
        ({"X-Slack-Signature": signed(body, now)["X-Slack-Signature"]}, body, 401),  # no ts
        ({}, body, 401),
        (signed(body, now), body + b"&text=resolve", 401),  # body changed after signing
    ]
    for headers, data, status in cases:
        resp = await chat.client.post(url, data=data, headers={**FORM, **headers})
        assert resp.status == status, headers
    big = slash_body("note " + "x" * 70_000, channel_id=CHANNEL)
    resp = await chat.client.post(url, data=big, headers={**FORM, **signed(big, now)})
    assert resp.status == 413
    # a replay of a good request within the window: refused, though its signature is valid
    good = signed(body, now)
    resp = await chat.client.post(url, data=body, headers={**FORM, **good})
    assert resp.status == 200 and (await resp.json())["text"].endswith("Acknowledged by alice")
    after = await chat.timeline()
    resp = await chat.client.post(url, data=body, headers={**FORM, **good})
    assert resp.status == 401
    assert await chat.timeline() == after and len(after) == len(before) + 1
    assert len(await chat.outbox()) == len(outbox) + 2  # general and room: one acknowledge
    for kind in ("interactions", "events"):
        resp = await chat.client.post(f"/api/v1/chat/slack/{kind}", data=b"{}")
        assert resp.status == 401


async def test_a_slack_retry_changes_nothing(chat: Chat) -> None:
    body = slash_body("note first look", channel_id=CHANNEL, trigger_id="T-1")
    status, first = await chat.slack("commands", body)
    assert status == 200 and first["response_type"] == "in_channel"
    before, outbox = await chat.timeline(), await chat.outbox()
    # Slack signs the retry again (a new timestamp) and says it is one
    status, again = await chat.slack("commands", body, headers={"X-Slack-Retry-Num": "1"})
    assert status == 200 and again == first
    # the same trigger_id in a new service would find the key in the database: the table is
    # the store's idempotency_keys, kept across restarts (tests/store/test_chat.py)
    assert await chat.timeline() == before and await chat.outbox() == outbox


async def test_a_replay_after_a_restart_changes_nothing(chat: Chat) -> None:
    body = slash_body("decision fail over", channel_id=CHANNEL, trigger_id="T-restart")
    now = chat.clock.now // SECOND
    headers = {**FORM, **signed(body, now)}
    url = "/api/v1/chat/slack/commands"
    resp = await chat.client.post(url, data=body, headers=headers)
    first = await resp.json()
    assert first["response_type"] == "in_channel"
    before, outbox = await chat.timeline(), await chat.outbox()
    # a restart forgets the signatures seen; the idempotency key is in the database
    chat.client.server.app[chat_routes.KEY].seen.clear()
    resp = await chat.client.post(url, data=body, headers=headers)
    assert resp.status == 200 and await resp.json() == first
    assert await chat.timeline() == before and await chat.outbox() == outbox


async def test_buttons_act_and_update_the_message(chat: Chat) -> None:
    fake = ResponseURLFake()
    await fake.start()
    try:
        chat.client.server.app[chat_routes.KEY].response_origins.add(fake.url)
        buttons = actions_block("opened", {"id": chat.incident, "status": "triggered"})
        assert buttons is not None
        section = {"type": "section", "text": {"type": "mrkdwn", "text": "Incident opened"}}
        message = {"type": "message", "text": "Incident opened", "blocks": [section, buttons]}
        url = fake.hook()
        i = str(chat.incident)
        body = button_body("incident.acknowledge", i, response_url=url, message=message)
        status, _ = await chat.slack("interactions", body)
        assert status == 200
        await chat.drain()
        update = fake.messages[-1]
        assert update["replace_original"] is True and update["text"] == "Incident opened"
        assert update["blocks"][0] == section
        # Acknowledge is gone, I'm commander and Resolve stay
        assert [e["action_id"] for e in update["blocks"][1]["elements"]] == [
            "incident.commander",
            "incident.resolve",
        ]
        assert update["blocks"][2]["type"] == "context"
        message = {**message, "blocks": update["blocks"]}  # Slack sends the message as it is
        assert "Acknowledged by alice" in update["blocks"][2]["elements"][0]["text"]
        assert (await chat.timeline())[-1]["actor"] == "alice"
        # the same press retried: nothing more on the timeline
        before = await chat.timeline()
        status, _ = await chat.slack("interactions", body, headers={"X-Slack-Retry-Num": "1"})
        await chat.drain()
        assert status == 200 and await chat.timeline() == before
        body = button_body("incident.commander", i, user_id="U0BOB", response_url=url,
                           trigger_id="t2", message=message)  # fmt: skip
        await chat.slack("interactions", body)
        await chat.drain()
        assert (await chat.incident_now())["roles"]["commander"] == ["bob"]
        body = button_body("incident.resolve", i, user_id="U0BOB", response_url=url,
                           trigger_id="t3", message=message)  # fmt: skip
        await chat.slack("interactions", body)
        await chat.drain()
        update = fake.messages[-1]
        # no buttons left; who did what, in order
        assert [b["type"] for b in update["blocks"]] == ["section", "context", "context"]
        assert "Acknowledged by alice" in update["blocks"][1]["elements"][0]["text"]
        assert "Resolved by bob" in update["blocks"][2]["elements"][0]["text"]
        # a refusal is told to the one who pressed, the message stays
        body = button_body("incident.acknowledge", i, response_url=url, trigger_id="t4")
        await chat.slack("interactions", body)
        await chat.drain()
        assert fake.messages[-1]["response_type"] == "ephemeral"
        assert fake.messages[-1]["replace_original"] is False
        # read-only, and a button that is not the bridge's
        body = button_body("incident.resolve", i, user_id="U0LOOK", response_url=url)
        await chat.slack("interactions", body)
        await chat.drain()
        assert "You can only look" in fake.messages[-1]["text"]
        status, _ = await chat.slack("interactions", button_body("other", i, trigger_id="t5"))
        assert status == 400
    finally:
        await fake.close()


async def test_slow_work_is_acknowledged_and_finished_through_response_url(chat: Chat) -> None:
    fake = ResponseURLFake()
    await fake.start()
    try:
        chat.client.server.app[chat_routes.KEY].ack_within_s = 0
        chat.client.server.app[chat_routes.KEY].response_origins.add(fake.url)
        body = await chat.command("ack", response_url=fake.hook("commands"))
        assert body["response_type"] == "ephemeral" and body["text"].startswith("Working on it")
        await chat.drain()
        assert fake.messages == [
            {"response_type": "in_channel", "text": f"#{chat.incident}: Acknowledged by alice"}
        ]
    finally:
        await fake.close()


async def test_url_verification_and_messages_marked_for_the_timeline(chat: Chat) -> None:
    challenge = json.dumps({"type": "url_verification", "challenge": "3eZbrw1a", "token": "x"})
    status, body = await chat.slack("events", challenge.encode(), json_=True)
    assert status == 200 and body == {"challenge": "3eZbrw1a"}
    message = {
        "type": "message",
        "channel": CHANNEL,
        "user": "U0BOB",
        "text": "note: the cache was cold",
        "ts": "1700000000.000100",
    }
    before = await chat.timeline()
    # the route has not opted in: nothing is recorded
    status, _ = await chat.slack("events", event_body(message, "Ev1"), json_=True)
    await chat.drain()
    assert status == 200 and await chat.timeline() == before
    root = chat.state.runtime.root_route
    chat.state.runtime = replace(chat.state.runtime, chat_timelines={root: True})
    status, _ = await chat.slack("events", event_body(message, "Ev2"), json_=True)
    await chat.drain()
    new = (await chat.timeline())[len(before) :]
    link = "https://slack.com/archives/C0INC/p1700000000000100"
    assert [(e["kind"], e["actor"], e["text"]) for e in new] == [
        ("note", "bob", f"Note: the cache was cold ({link})")
    ]
    # Slack's retry of the event, the same message pinned, messages that are not marked
    await chat.slack("events", event_body(message, "Ev2"), headers={"X-Slack-Retry-Num": "1"},
                     json_=True)  # fmt: skip
    pin = {
        "type": "reaction_added",
        "user": "U0ALICE",
        "reaction": "pushpin",
        "item_user": "U0BOB",
        "item": {"type": "message", "channel": CHANNEL, "ts": message["ts"]},
    }
    await chat.slack("events", event_body(pin, "Ev3"), json_=True)
    for other in (
        {**message, "text": "just chatting", "ts": "1700000001.000100"},
        {**message, "subtype": "bot_message", "ts": "1700000002.000100"},
        {**message, "channel": "C0ELSEWHERE", "ts": "1700000003.000100"},
        {**message, "user": "U0LOOK", "ts": "1700000004.000100"},
    ):
        await chat.slack("events", event_body(other, f"Ev-{other['ts']}"), json_=True)
    await chat.drain()
    assert (await chat.timeline())[len(before) :] == new


async def test_a_pushpin_records_the_message_with_its_author_and_permalink(chat: Chat) -> None:
    api = SlackWebAPIWithHistory()
    await api.start()
    session = aiohttp.ClientSession()
    try:
        target = build_target(
            "slack", "slack", {"token": TOKEN, "api_url": f"{api.url}/api"},
            TargetDeps(session=session),
        )  # fmt: skip
        root = chat.state.runtime.root_route
        chat.state.runtime = replace(
            chat.state.runtime, chat_timelines={root: True}, targets={"slack": target}
        )
        ts = "1700000100.000200"
        api.history[(CHANNEL, ts)] = {"type": "message", "user": "U0ALICE", "ts": ts,
                                      "text": "restarting the primary now"}  # fmt: skip
        api.history[(CHANNEL, "1700000200.000000")] = {"type": "message", "user": "U0BOB",
                                                       "ts": "1700000200.000000", "text": "later"}  # fmt: skip
        pin = {
            "type": "reaction_added",
            "user": "U0BOB",
            "reaction": "pushpin",
            "item_user": "U0ALICE",
            "item": {"type": "message", "channel": CHANNEL, "ts": ts},
        }
        before = await chat.timeline()
        await chat.slack("events", event_body(pin, "EvP1"), json_=True)
        await chat.slack("events", event_body({**pin, "reaction": "thumbsup"}, "EvP2"), json_=True)
        await chat.slack("events", event_body({**pin, "user": "U0ALICE"}, "EvP3"), json_=True)
        # a read-only person's pin on another message records nothing
        ts2 = "1700000200.000000"
        ro_pin = {**pin, "user": "U0LOOK", "item": {**pin["item"], "ts": ts2}}  # type: ignore[dict-item]
        await chat.slack("events", event_body(ro_pin, "EvP4"), json_=True)
        await chat.drain()
        new = (await chat.timeline())[len(before) :]
        link = "https://example.slack.com/archives/C0INC/p1700000100000200"
        assert [(e["kind"], e["actor"], e["text"]) for e in new] == [
            ("note", "alice", f"Note: restarting the primary now ({link})")
        ]
    finally:
        await session.close()
        await api.close()


async def test_mattermost_command_and_buttons(chat: Chat) -> None:
    url = "/api/v1/chat/mattermost/commands"
    resp = await chat.client.post(
        url, data=mattermost_body(f"{chat.incident} ack", token="wrong-token-0000"), headers=FORM
    )
    assert resp.status == 401
    resp = await chat.client.post(url, data=b"text=ack", headers=FORM)
    assert resp.status == 401
    assert [e["kind"] for e in await chat.timeline()].count("acknowledged") == 0
    resp = await chat.client.post(url, data=mattermost_body(f"{chat.incident} ack"), headers=FORM)
    body = await resp.json()
    assert body == {
        "response_type": "in_channel",
        "text": f"#{chat.incident}: Acknowledged by alice",
    }
    # a retry (the same trigger_id) changes nothing
    before = await chat.timeline()
    resp = await chat.client.post(url, data=mattermost_body(f"{chat.incident} ack"), headers=FORM)
    assert (await resp.json())["text"] == body["text"] and await chat.timeline() == before
    resp = await chat.client.post(url, data=mattermost_body("ack"), headers=FORM)
    assert "Which incident?" in (await resp.json())["text"]
    resp = await chat.client.post(
        url,
        data=mattermost_body(
            f"{chat.incident} role scribe @alice.m", user_id="mm0x", user_name="x"
        ),
        headers=FORM,
    )
    assert "alice" in (await resp.json())["text"]
    assert (await chat.timeline())[-1]["actor"] == "mattermost:mm0x"
    actions = "/api/v1/chat/mattermost/actions"
    press = {
        "user_id": "mm0alice",
        "user_name": "alice.m",
        "channel_id": "mmchannel",
        "post_id": "p1",
        "trigger_id": "mmt-1",
        "context": {"action": "incident.resolve", "incident": chat.incident, "token": "nope"},
    }
    resp = await chat.client.post(actions, json=press)
    assert resp.status == 401
    press["context"] = {**press["context"], "token": MATTERMOST_TOKEN}  # type: ignore[dict-item]
    resp = await chat.client.post(actions, json=press)
    assert resp.status == 200
    assert (await resp.json()) == {"ephemeral_text": f"#{chat.incident}: Resolved by alice"}
    assert (await chat.incident_now())["status"] == "resolved"


async def test_a_command_never_gets_a_500(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*_: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(slack_routes, "_channel", broken)
    body = await chat.command("ack")
    assert body == {
        "response_type": "ephemeral",
        "text": "Something went wrong in the bridge; its log says what.",
    }


async def test_slack_targets_users_map_names_people(chat: Chat) -> None:
    target = build_target(
        "slack", "slack", {"token": TOKEN, "users": {"dana": "U0DANA"}}, TargetDeps()
    )
    chat.state.runtime = replace(
        chat.state.runtime, targets={**chat.state.runtime.targets, "slack": target}
    )
    body = await chat.command("note from dana", user_id="U0DANA")
    assert body["text"] == f"#{chat.incident}: Note: from dana"
    assert (await chat.timeline())[-1]["actor"] == "dana"


ROOT = Path(__file__).resolve().parents[2]


def _manifest_and_docs() -> tuple[dict[str, Any], str]:
    import yaml

    manifest = yaml.safe_load((ROOT / "examples" / "slack-app-manifest.yaml").read_text())
    return manifest, (ROOT / "docs" / "chat.md").read_text()


async def test_the_example_manifest_points_at_the_routes(chat: Chat) -> None:
    manifest, docs = _manifest_and_docs()
    base = "https://incident-bridge.example.com"
    (command,) = manifest["features"]["slash_commands"]
    settings = manifest["settings"]
    urls = {
        command["url"],
        settings["interactivity"]["request_url"],
        settings["event_subscriptions"]["request_url"],
    }
    assert command["command"] == "/incident" and command["should_escape"] is True
    routes = {
        r.resource.canonical
        for r in chat.client.server.app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith("/api/v1/chat/slack/")
    }
    assert {u.removeprefix(base) for u in urls} == routes
    assert {"message.channels", "reaction_added"} <= set(
        settings["event_subscriptions"]["bot_events"]
    )
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write", "channels:history", "reactions:read"} <= scopes
    assert all(f"`{s}`" in docs for s in scopes)


async def test_the_mattermost_targets_own_buttons_act_when_pressed(chat: Chat) -> None:
    """The mattermost target's message carries the buttons; Mattermost posts a press's context
    back as it was given: the press acts as the person who pressed."""
    from bridge.core.secrets import Secret as _Secret
    from bridge.delivery.protocol import Notification
    from bridge.targets.mattermost import MattermostConfig, MattermostTarget

    config = MattermostConfig(
        url=_Secret("https://mm.example/hooks/x"),
        actions_url="https://bridge.example/api/v1/chat/mattermost/actions",
        actions_token=_Secret(MATTERMOST_TOKEN),
    )
    target = MattermostTarget("mm", config, TargetDeps())
    incident = await chat.incident_now()
    assert incident["status"] == "triggered"
    n = Notification(1, "k", "mm", "general", "opened", incident)
    [attachment] = target.payload(n)["attachments"]
    by_name = {a["name"]: a for a in attachment["actions"]}
    assert list(by_name) == ["Acknowledge", "I'm commander", "Resolve"]
    assert all(a["id"].isalnum() for a in by_name.values())
    press = {
        "user_id": "mm0alice",
        "user_name": "alice.m",
        "channel_id": "mmchannel",
        "post_id": "p2",
        "trigger_id": "mmt-2",
        "context": by_name["Acknowledge"]["integration"]["context"],
    }
    resp = await chat.client.post("/api/v1/chat/mattermost/actions", json=press)
    assert resp.status == 200, await resp.text()
    assert (await chat.incident_now())["status"] == "acknowledged"
    assert (await chat.timeline())[-1]["actor"] == "alice"
    after = Notification(2, "k2", "mm", "general", "acknowledged", await chat.incident_now())
    names = [a["name"] for a in target.payload(after)["attachments"][0]["actions"]]
    assert names == ["I'm commander", "Resolve"]
    plain = MattermostTarget(
        "mm", MattermostConfig(url=_Secret("https://mm.example/hooks/x")), TargetDeps()
    )
    assert "attachments" not in plain.payload(n)


async def test_mattermost_people_are_known_by_user_id_never_by_user_name(chat: Chat) -> None:
    """Mattermost sends a user name as typed by whoever set it: anyone can be called alice.m.
    Only the user id names a person; the name only resolves @mentions."""
    url = "/api/v1/chat/mattermost/commands"
    i = chat.incident
    resp = await chat.client.post(
        url, data=mattermost_body(f"{i} note hi", user_id="zzz", user_name="alice.m"), headers=FORM
    )
    assert (await resp.json())["response_type"] == "in_channel"
    assert (await chat.timeline())[-1]["actor"] == "mattermost:zzz"
    resp = await chat.client.post(
        url, data=mattermost_body(f"{i} note me", user_id="mm0alice", user_name="x"), headers=FORM
    )
    assert (await chat.timeline())[-1]["actor"] == "alice"
    press = {
        "user_id": "zzz",
        "user_name": "alice.m",
        "trigger_id": "mmt-zzz",
        "context": {"action": "incident.acknowledge", "incident": i, "token": MATTERMOST_TOKEN},
    }
    resp = await chat.client.post("/api/v1/chat/mattermost/actions", json=press)
    assert (await resp.json())["ephemeral_text"] == f"#{i}: Acknowledged by mattermost:zzz"
    # rules written when a handle could be a user name: the name still names nobody
    chat.state.runtime = replace(chat.state.runtime, people={"alice": {"mattermost": "alice.m"}})
    resp = await chat.client.post(
        url, data=mattermost_body(f"{i} note again", user_id="zzz", user_name="alice.m"),
        headers=FORM,
    )  # fmt: skip
    assert (await chat.timeline())[-1]["actor"] == "mattermost:zzz"


async def _slow_command(chat: Chat, url: str, *, mattermost: bool = False) -> None:
    chat.client.server.app[chat_routes.KEY].ack_within_s = 0
    if mattermost:
        resp = await chat.client.post(
            "/api/v1/chat/mattermost/commands",
            data=mattermost_body(f"{chat.incident} note slow {url}", response_url=url),
            headers=FORM,
        )
        body = await resp.json()
    else:
        body = await chat.command(f"note slow {url}", response_url=url)
    assert body["text"].startswith("Working on it"), body
    await chat.drain()


async def test_response_url_only_on_the_platforms_own_hosts(chat: Chat) -> None:
    """Slack's response_url is https://hooks.slack.com/...; Mattermost's is on the server
    its target posts to. A verified request naming any other host gets nothing posted there."""
    fake = ResponseURLFake()
    await fake.start()
    try:
        origins = chat.client.server.app[chat_routes.KEY].response_origins
        assert origins == set()  # nothing but the platforms' own hosts unless a test adds it
        await _slow_command(chat, fake.hook("commands"))
        await _slow_command(chat, fake.mattermost_hook(), mattermost=True)
        assert fake.requests == []  # loopback is not hooks.slack.com, nor a Mattermost server
        # the mattermost target's server is Mattermost's host; Slack's stays hooks.slack.com
        config = MattermostConfig(url=Secret(f"{fake.url}/hooks/incominghook"))
        target = MattermostTarget("mm", config, TargetDeps())
        chat.state.runtime = replace(chat.state.runtime, targets={"mm": target})
        await _slow_command(chat, fake.hook("commands", 2))
        assert fake.requests == []
        await _slow_command(chat, fake.mattermost_hook(2), mattermost=True)
        [message] = fake.messages
        assert message["response_type"] == "in_channel" and "slow" in message["text"]
    finally:
        await fake.close()


def test_the_allowed_response_urls() -> None:
    allowed = chat_routes.allowed_response_url
    mm = {("https", "mm.example.com", 443)}
    assert allowed("https://hooks.slack.com/commands/T1/2/x", "slack", set(), mm)
    assert allowed("https://hooks.slack.com:443/actions/T1/2/x", "slack", set(), mm)
    for url in (
        "http://hooks.slack.com/commands/T1/2/x",
        "https://hooks.slack.com.evil.example/commands/T1/2/x",
        "https://evil.example/hooks.slack.com/",
        "https://hooks.slack.com@evil.example/x",
        "https://user@hooks.slack.com/x",
        "https://hooks.slack.com:8443/x",
        "https://mm.example.com/hooks/commands/x",
        "ftp://hooks.slack.com/x",
        "",
        "not a url",
    ):
        assert not allowed(url, "slack", set(), mm), url
    assert allowed("https://MM.example.com/hooks/commands/x", "mattermost", set(), mm)
    assert not allowed("http://mm.example.com/hooks/commands/x", "mattermost", set(), mm)
    assert not allowed("https://hooks.slack.com/commands/x", "mattermost", set(), mm)
    assert allowed("http://127.0.0.1:5/x", "slack", {"http://127.0.0.1:5"}, mm)


async def test_a_response_url_redirect_is_not_followed(chat: Chat) -> None:
    """An allowed host answering 307 elsewhere: the bridge posts once and stops there."""
    first, elsewhere = ResponseURLFake(), ResponseURLFake()
    await first.start()
    await elsewhere.start()
    try:
        chat.client.server.app[chat_routes.KEY].response_origins.add(first.url)
        first.redirect_to = elsewhere.hook("commands")
        await _slow_command(chat, first.hook("commands"))
        assert len(first.requests) == 1 and first.messages == []
        assert elsewhere.requests == []
    finally:
        await first.close()
        await elsewhere.close()
