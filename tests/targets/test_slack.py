"""Slack Web API: dedicated incident channels and threaded updates in the general channel."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import pytest

from bridge.delivery.protocol import RateLimited
from bridge.targets import PermanentError, RetryableError, _http, slack
from bridge.targets.slack import channel_name
from tests.fakes.slack import TOKEN, SlackAPIFake
from tests.targets.conftest import MakeTarget, incident, make_notification


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("High error rate: checkout", "inc-42-high-error-rate-checkout"),
        ("  Ünïcödé façade — DB  ", "inc-42-unicode-facade-db"),
        ("<!channel> *boom*", "inc-42-channel-boom"),
        ("", "inc-42"),
        ("!!!", "inc-42"),
        ("x" * 200, "inc-42-" + "x" * 73),
        ("under_score OK", "inc-42-under_score-ok"),
    ],
)
def test_channel_name(title: str, expected: str) -> None:
    name = channel_name("inc", 42, title)
    assert name == expected
    assert len(name) <= 80


def test_channel_name_suffix_keeps_the_limit() -> None:
    name = channel_name("inc", 42, "y" * 200, suffix=3)
    assert name.endswith("-3") and len(name) == 80 and "--" not in name


def _target(make_target: MakeTarget, fake: SlackAPIFake, **extra: object):  # type: ignore[no-untyped-def]
    settings = {
        "token": TOKEN,
        "api_url": fake.url + "/api",
        "users": {"alice": "alice@example.com"},
        "min_interval_s": 0,  # these tests are not about pacing (tests/delivery/test_storm.py is)
    }
    settings.update(extra)
    return make_target("slack", **settings)


async def test_dedicated_channel_on_open(
    slack_api: SlackAPIFake, make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    inc = incident(
        roles={"commander": ["alice"], "scribe": ["U0BOB"], "liaison": [], "responders": ["carol"]}
    )
    target = _target(make_target, slack_api)
    with caplog.at_level(logging.WARNING):
        result = await target.send(make_notification("opened", tier="incident", inc=inc))
    cid = result.state["channel"]
    channel = slack_api.channels[cid]
    assert channel["name"] == "inc-42-high-error-rate-on-checkout"
    assert channel["members"] == {"U0ALICE", "U0BOB"}  # carol has no Slack handle: a warning
    assert "no Slack handle for carol" in caplog.text
    assert channel["topic"].startswith("sev2 | triggered | IC: alice")
    assert [b["title"] for b in channel["bookmarks"]] == ["Runbook", "Incident page"]
    assert channel["bookmarks"][0]["link"] == "https://runbooks.example/checkout/high-error-rate"
    assert slack_api.messages[-1]["channel"] == cid
    methods = [r.path.rsplit("/", 1)[1] for r in slack_api.requests]
    assert methods == [
        "conversations.create",
        "users.lookupByEmail",
        "conversations.invite",
        "bookmarks.add",
        "bookmarks.add",
        "conversations.setTopic",
        "chat.postMessage",
    ]
    assert slack_api.requests[1].headers["Content-Type"].startswith("application/x-www-form")

    # the next event posts to the same channel and only updates the topic
    inc2 = dict(inc, status="acknowledged")
    result2 = await target.send(
        make_notification(
            "acknowledged", tier="incident", inc=inc2, state=dict(result.state), sequence=2
        )
    )
    assert result2.state["channel"] == cid
    methods = [r.path.rsplit("/", 1)[1] for r in slack_api.requests[7:]]
    assert methods == ["conversations.setTopic", "chat.postMessage"]
    assert slack_api.channels[cid]["topic"].startswith("sev2 | acknowledged")
    assert len(slack_api.channels) == 2


async def test_name_taken_gets_a_suffix(slack_api: SlackAPIFake, make_target: MakeTarget) -> None:
    slack_api.names.add("inc-42-high-error-rate-on-checkout")
    result = await _target(make_target, slack_api).send(make_notification(tier="incident"))
    assert result.state["channel_name"] == "inc-42-high-error-rate-on-checkout-2"


async def test_failure_after_create_keeps_the_channel(
    slack_api: SlackAPIFake, make_target: MakeTarget
) -> None:
    target = _target(make_target, slack_api)
    slack_api.fail_next(1, status=503, path="/api/chat.postMessage")
    with pytest.raises(RetryableError) as err:
        await target.send(make_notification(tier="incident"))
    assert err.value.state is not None and err.value.state["setup"] is True
    # the caller persists err.state; the retry does not create a second channel
    await target.send(make_notification(tier="incident", state=dict(err.value.state)))
    assert len(slack_api.channels) == 2
    assert [r.path for r in slack_api.requests].count("/api/conversations.create") == 1


async def test_restricted_create_is_permanent(
    slack_api: SlackAPIFake, make_target: MakeTarget
) -> None:
    slack_api.fail_next(
        1,
        status=200,
        body={"ok": False, "error": "restricted_action"},
        path="/api/conversations.create",
    )
    with pytest.raises(PermanentError) as err:
        await _target(make_target, slack_api).send(make_notification(tier="incident"))
    assert err.value.reason == "slack_restricted_action"


async def test_general_channel_threads_updates(
    slack_api: SlackAPIFake, make_target: MakeTarget
) -> None:
    target = _target(make_target, slack_api, channel="C0GENERAL")
    first = await target.send(make_notification("opened"))
    ts = first.state["ts"]
    second = await target.send(
        make_notification("acknowledged", state=dict(first.state), sequence=2)
    )
    third = await target.send(make_notification("resolved", state=dict(second.state), sequence=3))
    assert third.state["ts"] == ts
    msgs = slack_api.messages
    assert "thread_ts" not in msgs[0]
    assert msgs[1]["thread_ts"] == ts and msgs[1]["reply_broadcast"] is False
    assert msgs[2]["thread_ts"] == ts and msgs[2]["reply_broadcast"] is True


async def test_no_channel_for_general_tier_is_permanent(
    slack_api: SlackAPIFake, make_target: MakeTarget
) -> None:
    with pytest.raises(PermanentError, match="no_channel"):
        await _target(make_target, slack_api).send(make_notification("opened"))


async def test_bad_invitee_does_not_block_the_channel(
    slack_api: SlackAPIFake, make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    inc = incident(roles={"commander": ["U0NOBODY"], "responders": []})
    with caplog.at_level(logging.WARNING):
        result = await _target(make_target, slack_api).send(
            make_notification(tier="incident", inc=inc)
        )
    assert "invite failed: slack_user_not_found" in caplog.text
    assert slack_api.messages[-1]["channel"] == result.state["channel"]


async def test_retryable_invite_failure_keeps_progress(
    slack_api: SlackAPIFake, make_target: MakeTarget
) -> None:
    slack_api.fail_next(1, status=429, retry_after=2, path="/api/conversations.invite")
    target = _target(make_target, slack_api)
    with pytest.raises(RetryableError) as err:
        await target.send(make_notification(tier="incident"))
    assert err.value.retry_after == 2.0
    state = err.value.state
    assert state is not None and "channel" in state and not state.get("setup")
    await target.send(make_notification(tier="incident", state=dict(state)))
    assert len(slack_api.channels) == 2


async def test_incident_mode_thread_uses_a_thread_in_the_channel(
    slack_api: SlackAPIFake, make_target: MakeTarget
) -> None:
    target = _target(make_target, slack_api, channel="C0GENERAL", incident_mode="thread")
    first = await target.send(make_notification("opened", tier="incident"))
    await target.send(make_notification("timeline", tier="incident", state=dict(first.state)))
    assert len(slack_api.channels) == 1  # nothing created
    assert slack_api.messages[1]["thread_ts"] == first.state["ts"]


async def test_the_rotations_handles_invite_and_mention_people(
    slack_api: SlackAPIFake, make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    """``handles: {slack: U…}`` on a rotation member is used; the target's ``users`` map may
    override it; messages mention the commander by handle."""
    inc = incident(
        roles={"commander": ["fatima"], "scribe": ["alice"], "liaison": [], "responders": []},
        people={"fatima": {"slack": "U03FATIMA"}, "alice": {"slack": "U0WRONG"}},
    )
    slack_api.users["fatima@example.com"] = "U03FATIMA"  # a member of the workspace
    target = _target(make_target, slack_api)  # users: alice -> alice@example.com (wins)
    with caplog.at_level(logging.WARNING):
        result = await target.send(make_notification("opened", tier="incident", inc=inc))
    assert "no Slack handle" not in caplog.text
    assert slack_api.channels[result.state["channel"]]["members"] == {"U03FATIMA", "U0ALICE"}
    posted = slack_api.messages[-1]
    assert "<@U03FATIMA>" in str(posted)


def _methods(fake: SlackAPIFake, start: int = 0) -> list[str]:
    return [r.path.rsplit("/", 1)[1] for r in fake.requests[start:]]


async def test_role_holders_are_invited_once_as_they_take_roles(
    slack_api: SlackAPIFake, make_target: MakeTarget
) -> None:
    """A role holder with a Slack handle who was not invited yet is invited with the next
    message to the dedicated channel (a role change, any other event), and only once."""
    roles = {"commander": ["alice"], "scribe": [], "liaison": [], "responders": []}
    target = _target(make_target, slack_api)
    first = await target.send(
        make_notification("opened", tier="incident", inc=incident(roles=roles))
    )
    cid = first.state["channel"]
    assert slack_api.channels[cid]["members"] == {"U0ALICE"}
    assert first.state["invited"] == {"alice": "alice@example.com"}

    # bob takes the liaison role: the role change invites him, and nobody else
    roles = {**roles, "liaison": ["bob"]}
    inc = incident(roles=roles, people={"bob": {"slack": "U0BOB"}})
    row = {
        "kind": "role_changed",
        "text": "bob is liaison",
        "data": {"role": "liaison", "from": [], "to": ["bob"], "action": "assign"},
    }
    mark = len(slack_api.requests)
    second = await target.send(
        make_notification(
            "timeline",
            tier="incident",
            inc=inc,
            events=(row,),
            state=dict(first.state),
            sequence=2,
        )
    )
    assert _methods(slack_api, mark) == ["conversations.invite", "chat.postMessage"]
    assert slack_api.requests[mark].json == {"channel": cid, "users": "U0BOB"}
    assert slack_api.channels[cid]["members"] == {"U0ALICE", "U0BOB"}
    assert second.state["invited"] == {"alice": "alice@example.com", "bob": "U0BOB"}

    # the next event invites nobody: no lookup, no invite
    mark = len(slack_api.requests)
    await target.send(
        make_notification("update", tier="incident", inc=inc, state=dict(second.state), sequence=3)
    )
    assert _methods(slack_api, mark) == ["chat.postMessage"]


async def test_one_refused_invitee_does_not_keep_the_others_out(
    slack_api: SlackAPIFake, make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    """Slack refuses a whole invite for one bad id (or one already in the channel): the
    target then invites them one by one; those refused are logged and not asked again."""
    roles = {"commander": ["alice"], "scribe": [], "liaison": [], "responders": []}
    target = _target(make_target, slack_api)
    first = await target.send(
        make_notification("opened", tier="incident", inc=incident(roles=roles))
    )
    cid = first.state["channel"]
    slack_api.channels[cid]["members"].add("U0BOB")  # bob joined the channel on his own
    roles = {
        "commander": ["alice"],
        "scribe": ["U0NOBODY"],
        "liaison": ["bob"],
        "responders": ["carol"],
    }
    slack_api.users["carol@example.com"] = "U0CAROL"
    inc = incident(
        roles=roles, people={"bob": {"slack": "U0BOB"}, "carol": {"email": "carol@example.com"}}
    )
    mark = len(slack_api.requests)
    with caplog.at_level(logging.WARNING):
        second = await target.send(
            make_notification(
                "timeline", tier="incident", inc=inc, state=dict(first.state), sequence=2
            )
        )
    invites = [r.json["users"] for r in slack_api.requests[mark:] if r.path.endswith(".invite")]
    assert invites == ["U0NOBODY,U0BOB,U0CAROL", "U0NOBODY", "U0BOB", "U0CAROL"]
    assert slack_api.channels[cid]["members"] == {"U0ALICE", "U0BOB", "U0CAROL"}
    assert caplog.text.count("invite failed") == 1  # U0NOBODY; bob being there already is fine
    assert "invite failed: slack_user_not_found" in caplog.text
    assert slack_api.messages[-1]["channel"] == cid
    assert set(second.state["invited"]) == {"alice", "U0NOBODY", "bob", "carol"}

    mark = len(slack_api.requests)
    await target.send(
        make_notification("timeline", tier="incident", inc=inc, state=dict(second.state))
    )
    assert _methods(slack_api, mark) == ["chat.postMessage"]


async def test_a_changed_handle_is_invited_again(
    slack_api: SlackAPIFake, make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    """A person without a Slack handle is warned about once; when the rotations give them
    one later, the next message invites them."""
    roles = {"commander": ["dana"], "scribe": [], "liaison": [], "responders": []}
    target = _target(make_target, slack_api)
    with caplog.at_level(logging.WARNING):
        first = await target.send(
            make_notification("opened", tier="incident", inc=incident(roles=roles))
        )
        second = await target.send(
            make_notification(
                "timeline",
                tier="incident",
                inc=incident(roles=roles),
                state=dict(first.state),
                sequence=2,
            )
        )
    assert caplog.text.count("no Slack handle for dana") == 1
    assert "conversations.invite" not in _methods(slack_api)
    slack_api.users["dana@example.com"] = "U0DANA"
    inc = incident(roles=roles, people={"dana": {"slack": "U0DANA"}})
    await target.send(
        make_notification(
            "timeline", tier="incident", inc=inc, state=dict(second.state), sequence=3
        )
    )
    assert slack_api.channels[first.state["channel"]]["members"] == {"U0DANA"}


async def test_a_failed_lookup_does_not_hold_the_message(
    slack_api: SlackAPIFake, make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    """Invites are best effort, also when a role changes mid-incident: a lookup Slack refuses
    (the users:read.email scope missing) is logged, and the message goes out."""
    slack_api.fail_next(
        1,
        status=200,
        body={"ok": False, "error": "missing_scope"},
        path="/api/users.lookupByEmail",
    )
    roles = {"commander": ["alice"], "scribe": ["U0BOB"], "liaison": [], "responders": []}
    with caplog.at_level(logging.WARNING):
        result = await _target(make_target, slack_api).send(
            make_notification("opened", tier="incident", inc=incident(roles=roles))
        )
    assert "lookup of alice failed: slack_missing_scope" in caplog.text
    assert slack_api.channels[result.state["channel"]]["members"] == {"U0BOB"}
    assert slack_api.messages[-1]["channel"] == result.state["channel"]


async def test_inviting_the_bot_itself_is_ignored(
    slack_api: SlackAPIFake, make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    roles = {"commander": ["alice"], "scribe": [], "liaison": [], "responders": []}
    target = _target(make_target, slack_api, invite=[slack_api.bot_user])
    with caplog.at_level(logging.WARNING):
        result = await target.send(
            make_notification("opened", tier="incident", inc=incident(roles=roles))
        )
    assert slack_api.channels[result.state["channel"]]["members"] == {"U0ALICE"}
    assert "invite failed" not in caplog.text


async def test_incident_mode_thread_invites_nobody(
    slack_api: SlackAPIFake, make_target: MakeTarget
) -> None:
    target = _target(make_target, slack_api, channel="C0GENERAL", incident_mode="thread")
    await target.send(make_notification("opened", tier="incident"))
    assert _methods(slack_api) == ["chat.postMessage"]


async def test_status_updates_and_escalations_are_broadcast_from_the_thread(
    slack_api: SlackAPIFake, make_target: MakeTarget
) -> None:
    target = _target(make_target, slack_api, channel="C0GENERAL")
    first = await target.send(make_notification("opened"))
    for seq, event in enumerate(("update", "escalated", "timeline"), start=2):
        await target.send(make_notification(event, state=dict(first.state), sequence=seq))
    replies = slack_api.messages[1:]
    assert all(m["thread_ts"] == first.state["ts"] for m in replies)
    assert [m["reply_broadcast"] for m in replies] == [True, True, False]


async def test_fake_invite_contract(
    slack_api: SlackAPIFake, session: aiohttp.ClientSession
) -> None:
    """The fake refuses what Slack refuses (docs/contracts.md): a list instead of a
    comma-separated string, the bot itself, a user already there; without ``force`` one
    refusal refuses the whole call, and ``errors`` names every refused user."""

    async def invite(users: object) -> dict[str, object]:
        async with session.post(
            slack_api.url + "/api/conversations.invite",
            json={"channel": "C0GENERAL", "users": users},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as resp:
            body: dict[str, object] = await resp.json()
            return body

    assert (await invite(["U0ALICE"]))["error"] == "invalid_arguments"
    assert (await invite(""))["error"] == "no_user"
    assert (await invite(slack_api.bot_user))["error"] == "cant_invite_self"
    assert (await invite("U0ALICE"))["ok"] is True
    refused = await invite("U0BOB,U0ALICE,U0NOBODY")
    assert refused["ok"] is False and refused["error"] == "already_in_channel"
    assert refused["errors"] == [
        {"user": "U0ALICE", "ok": False, "error": "already_in_channel"},
        {"user": "U0NOBODY", "ok": False, "error": "user_not_found"},
    ]
    assert slack_api.channels["C0GENERAL"]["members"] == {"U0ALICE"}  # bob was not invited


async def test_a_rate_limited_bookmark_holds_neither_the_message_nor_other_methods(
    slack_api: SlackAPIFake, make_target: MakeTarget
) -> None:
    """A 429 on bookmarks.add holds bookmarks.add alone, for its Retry-After: the message goes
    out, the bookmark comes with a later message, and none is added twice."""
    now = [1000.0]
    target = _target(make_target, slack_api)
    target.buckets = _http.Buckets(clock=lambda: now[0])  # type: ignore[attr-defined]
    slack_api.fail_next(1, status=429, retry_after=30, path="/api/bookmarks.add")
    first = await target.send(make_notification("opened", tier="incident"))
    cid = first.state["channel"]
    assert slack_api.messages[-1]["channel"] == cid  # not held by the bookmark
    assert slack_api.channels[cid]["bookmarks"] == [] and not first.state.get("setup")

    mark = len(slack_api.requests)
    now[0] += 10  # inside the window: no bookmarks.add, the rest goes on
    second = await target.send(
        make_notification("timeline", tier="incident", state=dict(first.state), sequence=2)
    )
    assert _methods(slack_api, mark) == ["chat.postMessage"]

    mark = len(slack_api.requests)
    now[0] += 21  # the window is over
    third = await target.send(
        make_notification("timeline", tier="incident", state=dict(second.state), sequence=3)
    )
    # after a 429 the method keeps to one call per interval (no burst): the second bookmark
    # comes with the next message a turn later
    assert _methods(slack_api, mark) == ["bookmarks.list", "bookmarks.add", "chat.postMessage"]
    assert not third.state.get("setup")
    now[0] += slack.METHOD_INTERVAL_S["bookmarks.add"] * 1.1
    mark = len(slack_api.requests)
    fourth = await target.send(
        make_notification("timeline", tier="incident", state=dict(third.state), sequence=4)
    )
    assert _methods(slack_api, mark) == ["bookmarks.add", "chat.postMessage"]
    assert [b["title"] for b in slack_api.channels[cid]["bookmarks"]] == [
        "Runbook",
        "Incident page",
    ]
    assert fourth.state["setup"] is True
    now[0] += 60
    mark = len(slack_api.requests)
    await target.send(
        make_notification("timeline", tier="incident", state=dict(fourth.state), sequence=5)
    )
    assert _methods(slack_api, mark) == ["chat.postMessage"]


async def test_a_bookmark_added_by_an_unrecorded_try_is_not_added_again(
    slack_api: SlackAPIFake, make_target: MakeTarget
) -> None:
    """The service stopped after bookmarks.add succeeded but before the outcome was saved:
    the retry, on a channel it did not create, reads the channel's bookmarks first."""
    target = _target(make_target, slack_api)
    first = await target.send(make_notification("opened", tier="incident"))
    cid = first.state["channel"]
    assert len(slack_api.channels[cid]["bookmarks"]) == 2
    lost = {k: v for k, v in first.state.items() if k not in ("bookmarks", "setup")}
    await target.send(make_notification("opened", tier="incident", state=lost))
    assert len(slack_api.channels[cid]["bookmarks"]) == 2


async def test_a_rate_limited_post_names_its_channel_and_waits_for_the_window(
    slack_api: SlackAPIFake, make_target: MakeTarget
) -> None:
    """A 429 on a post raises a wait scoped to that channel, with the progress made; the
    channel's next post is not sent inside the window (it raises at once)."""
    target = _target(make_target, slack_api, channel="C0GENERAL")
    slack_api.fail_next(1, status=429, retry_after=30, path="/api/chat.postMessage")
    with pytest.raises(RateLimited) as err:
        await target.send(make_notification("opened"))
    assert (err.value.scope, err.value.retry_after) == ("chat.postMessage:C0GENERAL", 30.0)
    mark = len(slack_api.requests)
    with pytest.raises(RateLimited) as again:
        await target.send(make_notification("opened"))
    assert again.value.retry_after is not None and 29 < again.value.retry_after <= 30
    assert len(slack_api.requests) == mark  # nothing sent inside the window


async def test_a_window_holds_the_requests_already_waiting_for_their_turn() -> None:
    """A request that took its turn and sleeps until then, when a 429 for its scope comes
    meanwhile, waits for the window's end too; a turn further than ``max_wait`` is refused
    with the time to wait and the scope, unsent."""
    buckets = _http.Buckets()
    await buckets.acquire("bookmarks.add", 0.2, max_wait=1.0)
    start = time.monotonic()
    waiting = asyncio.create_task(buckets.acquire("bookmarks.add", 0.2, max_wait=1.0))
    await asyncio.sleep(0.05)
    buckets.block("bookmarks.add", 0.5)  # another request of the scope got a 429
    await waiting
    assert time.monotonic() - start >= 0.5
    with pytest.raises(RateLimited) as err:
        await buckets.acquire("bookmarks.add", 0.2, max_wait=0.1)
    assert err.value.scope == "bookmarks.add" and err.value.retry_after is not None
    await buckets.acquire("conversations.invite", 0.2, max_wait=0.0)  # other scopes go on


async def test_a_burst_then_the_pace_and_no_burst_after_a_429() -> None:
    buckets = _http.Buckets()
    for _ in range(3):  # a burst of three goes at once
        await buckets.acquire("m", 10.0, max_wait=0.0, burst=3)
    with pytest.raises(RateLimited):
        await buckets.acquire("m", 10.0, max_wait=0.0, burst=3)
    buckets.block("n", 0.01)
    await asyncio.sleep(0.02)
    await buckets.acquire("n", 10.0, max_wait=0.0, burst=3)
    with pytest.raises(RateLimited):  # strict after its 429: one per interval
        await buckets.acquire("n", 10.0, max_wait=0.0, burst=3)


async def test_a_refused_turn_is_kept_for_the_incident_that_asked() -> None:
    """Three incidents refused for turns too far away each get their own turn, in order; each
    coming back at its time is served at once, and nobody else takes it."""
    now = [100.0]
    buckets = _http.Buckets(clock=lambda: now[0])
    await buckets.acquire("conversations.create", 3.0, max_wait=0.0)
    waits = {}
    for incident_id in ("1", "2", "3"):
        _http.TICKET.set(incident_id)
        with pytest.raises(RateLimited) as err:
            await buckets.acquire("conversations.create", 3.0, max_wait=0.0)
        waits[incident_id] = err.value.retry_after
    assert waits["1"] is not None and waits["2"] is not None and waits["3"] is not None
    assert waits["1"] < waits["2"] < waits["3"]  # one turn each, in order
    _http.TICKET.set(None)
    now[0] += waits["1"]
    with pytest.raises(RateLimited):  # a request without a kept turn waits behind them
        await buckets.acquire("conversations.create", 3.0, max_wait=0.0)
    for incident_id in ("1", "2", "3"):
        now[0] = 100.0 + waits[incident_id]
        _http.TICKET.set(incident_id)
        await buckets.acquire("conversations.create", 3.0, max_wait=0.0)  # its turn: no wait
    _http.TICKET.set(None)
