"""On call from chat (``/incident oncall``, ``/incident oncall take ROTATION until 18:00``):
signed Slack commands to the real app; the override stored with the person who typed it and
why, applied at once; what is refused says why and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.core import chat as core_chat
from tests.conftest import BOTH_BACKENDS, WRITE, Clock, MakeClient
from tests.fakes.slack_app import slash_body
from tests.http.test_chat import CHANNEL, Chat, start_chat

pytestmark = BOTH_BACKENDS


@pytest.fixture
async def chat(make_client: MakeClient, clock: Clock) -> Chat:
    return await start_chat(make_client, clock)


async def holder(chat: Chat) -> str:
    resp = await chat.client.get("/api/v1/oncall", headers=WRITE)
    return str((await resp.json())["rotations"][0]["now"]["person"])


async def overrides(chat: Chat) -> list[dict[str, Any]]:
    resp = await chat.client.get("/api/v1/oncall/oncall/overrides?all=true", headers=WRITE)
    return list((await resp.json())["overrides"])


async def test_i_take_it_until_1800(chat: Chat) -> None:
    before = await holder(chat)
    taker = "bob" if before == "alice" else "alice"
    user = {"alice": "U0ALICE", "bob": "U0BOB"}[taker]
    body = await chat.command("oncall")
    assert body["response_type"] == "ephemeral" and f"• oncall: {before} until " in body["text"]
    body = await chat.command("oncall take oncall until 18:00 covering the release", user_id=user)
    assert body["response_type"] == "in_channel", body
    assert body["text"] == f"{taker} holds oncall until 2026-11-27 18:00 UTC (override #1)."
    assert await holder(chat) == taker
    (made,) = await overrides(chat)
    assert (made["person"], made["created_by"], made["reason"]) == (
        taker, taker, "covering the release",
    )  # fmt: skip
    assert made["end"] == "2026-11-27T18:00:00Z"


async def test_refused_takes_say_why_and_write_nothing(chat: Chat) -> None:
    cases = {
        "oncall take oncall until 18:00": ("U0ZED", "Not taken: person: unknown person"),
        "oncall take nope until 18:00": ("U0BOB", "Not taken: no rotation 'nope'"),
        "oncall take oncall until teatime": ("U0BOB", "Not taken: until 'teatime'"),
    }
    for line, (user, said) in cases.items():
        body = await chat.command(line, user_id=user)
        assert body["response_type"] == "ephemeral" and body["text"].startswith(said), body
    body = await chat.command("oncall take oncall until 18:00", user_id="U0LOOK")
    assert "You can only look" in body["text"]
    for line in ("oncall frob", "oncall take oncall", "oncall take oncall by 18:00"):
        body = await chat.command(line, user_id="U0BOB")
        assert "`oncall take <rotation> until 18:00" in body["text"] and "`status`" in body["text"]
    assert await overrides(chat) == []


async def test_a_slack_retry_makes_one_override(chat: Chat) -> None:
    body = slash_body(
        "oncall take oncall until 18:00", channel_id=CHANNEL, trigger_id="T-9", user_id="U0BOB"
    )
    status, first = await chat.slack("commands", body)
    status, again = await chat.slack("commands", body, headers={"X-Slack-Retry-Num": "1"})
    assert status == 200 and again["text"] == first["text"]
    assert len(await overrides(chat)) == 1


def test_the_grammar_of_oncall() -> None:
    parsed = core_chat.parse("oncall take ops until 2026-12-08T18:00:00Z swap", "amara")
    assert isinstance(parsed, core_chat.Parsed) and parsed.oncall == core_chat.TakeRotation(
        "amara", "ops", "2026-12-08T18:00:00Z", "swap"
    )
    shown = core_chat.parse("oncall", "amara")
    assert isinstance(shown, core_chat.Parsed) and shown.query == "oncall"
    assert "oncall take" in core_chat.HELP
