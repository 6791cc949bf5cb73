"""The chat grammar, the buttons, the marked messages, who a chat user is, Slack's signature."""

from __future__ import annotations

import pytest

from bridge.core import chat
from bridge.core.actions import (
    AddEntry,
    AssignRole,
    ChangeSeverity,
    Dismiss,
    PostUpdate,
    Transition,
)
from bridge.core.chat import Parsed, ParseError, parse

PEOPLE = {
    "alice": {"slack": "U0ALICE", "mattermost": "mm0alice", "mattermost_username": "alice.m"},
    "bob": {"slack": "U0BOB"},
}

# Slack's published example ("Verifying requests from Slack").
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
    b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
    b"command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
    b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_slack_published_example_vector() -> None:
    assert chat.slack_signature(SLACK_SECRET, SLACK_TS, SLACK_BODY) == SLACK_SIG
    now = int(SLACK_TS) + 10
    assert chat.check_slack_signature(SLACK_SECRET, SLACK_TS, SLACK_SIG, SLACK_BODY, now) is None


@pytest.mark.parametrize(
    ("ts", "sig", "body", "now", "why"),
    [
        (SLACK_TS, SLACK_SIG, SLACK_BODY, int(SLACK_TS) + 301, "stale timestamp"),
        (SLACK_TS, SLACK_SIG, SLACK_BODY, int(SLACK_TS) - 301, "stale timestamp"),
        (SLACK_TS, SLACK_SIG, SLACK_BODY + b"x", int(SLACK_TS), "bad signature"),
        (SLACK_TS, SLACK_SIG[:-1] + "0", SLACK_BODY, int(SLACK_TS), "bad signature"),
        (SLACK_TS, "v1=" + SLACK_SIG[3:], SLACK_BODY, int(SLACK_TS), "bad signature"),
        (None, SLACK_SIG, SLACK_BODY, int(SLACK_TS), "missing"),
        (SLACK_TS, None, SLACK_BODY, int(SLACK_TS), "missing"),
        ("15314206a8", SLACK_SIG, SLACK_BODY, int(SLACK_TS), "bad timestamp"),
        ("¹⁵³¹⁴²⁰⁶¹⁸", SLACK_SIG, SLACK_BODY, int(SLACK_TS), "bad timestamp"),  # isdigit, not int
        ("١٥٣١٤٢٠٦١٨", SLACK_SIG, SLACK_BODY, int(SLACK_TS), "bad timestamp"),  # int, not ASCII
        (SLACK_TS, "v0=é", SLACK_BODY, int(SLACK_TS), "bad signature"),
    ],
)
def test_slack_signature_refusals(
    ts: str | None, sig: str | None, body: bytes, now: int, why: str
) -> None:
    got = chat.check_slack_signature(SLACK_SECRET, ts, sig, body, now)
    assert got is not None and why in got


def test_people_are_mapped_and_unknown_users_named_by_id() -> None:
    assert chat.person("slack", "U0ALICE", PEOPLE) == chat.Person("alice")
    assert chat.person("slack", "U0NOBODY", PEOPLE) == chat.Person("slack:U0NOBODY")
    assert chat.person("mattermost", "mm0alice", PEOPLE).name == "alice"
    assert chat.person("mattermost", "x1", PEOPLE).name == "mattermost:x1"
    # a Mattermost user name is whatever its owner typed: it never names a person
    assert chat.person("mattermost", "alice.m", PEOPLE).name == "mattermost:alice.m"
    assert chat.person("slack", "U0BOB", PEOPLE, read_only=["bob"]).read_only
    assert chat.person("slack", "U0ZED", PEOPLE, read_only=["slack:U0ZED"]).read_only
    assert not chat.person("slack", "U0ALICE", PEOPLE, read_only=["bob"]).read_only


def test_every_verb() -> None:
    def p(text: str, channel: int | None = 7) -> Parsed:
        got = parse(text, "alice", people=PEOPLE, channel_incident=channel)
        assert isinstance(got, Parsed), got
        return got

    assert p("ack") == Parsed(7, Transition("alice", "acknowledge"))
    assert p("42 ack", None) == Parsed(42, Transition("alice", "acknowledge"))
    assert p("#42 acknowledge") == Parsed(42, Transition("alice", "acknowledge"))
    assert p("mitigate rolled back").command == Transition("alice", "mitigate", "rolled back")
    assert p("resolve").command == Transition("alice", "resolve")
    assert p("close done and  dusted").command == Transition("alice", "close", "done and  dusted")
    assert p("dismiss a test of <@U0BOB|bob>").command == Dismiss("alice", "a test of @bob")
    assert p("role commander").command == AssignRole("alice", "commander", "alice")
    assert p("role scribe <@U0BOB|bob>").command == AssignRole("alice", "scribe", "bob")
    assert p("role responder <@U0ZED>").command == AssignRole("alice", "responders", "slack:U0ZED")
    assert p("role liaison <@U0BOB>").command == AssignRole("alice", "liaison", "bob")
    assert p("note db at 90%\nsecond line").command == AddEntry(
        "alice", "note", "db at 90%\nsecond line"
    )
    assert p("decision roll back").command == AddEntry("alice", "decision", "roll back")
    assert p("action add an index <@U0BOB|bob>").command == AddEntry(
        "alice", "action", "add an index", owner="bob"
    )
    assert p("action add an index").command == AddEntry("alice", "action", "add an index")
    assert p("update all good now").command == PostUpdate("alice", "all good now")
    assert p("severity sev1 customers hit").command == ChangeSeverity(
        "alice", "sev1", "customers hit"
    )
    assert p("severity SEV3").command == ChangeSeverity("alice", "sev3", "changed in chat")
    assert p("status") == Parsed(7, query="status")
    assert p("help") == Parsed(7, query="help")
    assert p("") == Parsed(7, query="help")
    assert p("help", None) == Parsed(None, query="help")
    assert p(f"{2**63 - 1} ack", None) == Parsed(2**63 - 1, Transition("alice", "acknowledge"))
    assert p("#0042 status", None) == Parsed(42, query="status")


def test_mattermost_mentions() -> None:
    got = parse("9 role scribe @alice.m", "bob", platform="mattermost", people=PEOPLE)
    assert isinstance(got, Parsed) and got.command == AssignRole("bob", "scribe", "alice")
    got = parse("9 role scribe @carol", "bob", platform="mattermost", people=PEOPLE)
    assert isinstance(got, Parsed) and got.command == AssignRole(
        "bob", "scribe", "mattermost:@carol"
    )
    # in Slack a bare @word is not a mention (Slack escapes real ones)
    got = parse("9 role scribe @carol", "bob", platform="slack", people=PEOPLE)
    assert isinstance(got, ParseError)


@pytest.mark.parametrize(
    ("text", "channel", "says"),
    [
        ("ack", None, "Which incident?"),
        ("frobnicate", 7, "Unknown command 'frobnicate'"),
        ("role", 7, "Which role?"),
        ("role captain", 7, "Which role?"),
        ("role scribe bob", 7, "not a @mention"),
        ("role scribe <@U0BOB> <@U0ALICE>", 7, "at most one"),
        ("note", 7, "needs a text"),
        ("action <@U0BOB>", 7, "needs a text"),
        ("update   ", 7, "needs a text"),
        ("severity", 7, "Which severity?"),
        ("severity sev9", 7, "Which severity?"),
        ("note " + "x" * 10_001, 7, "At most"),
        ("² ack", None, "'²' is not an incident id"),
        ("#¹ ack", 7, "'#¹' is not an incident id"),
        ("١٢ ack", None, "is not an incident id"),
        ("1" * 30 + " ack", None, "is not an incident id"),
        (f"{2**63} ack", 7, "is not an incident id"),
        ("0 ack", None, "is not an incident id"),
    ],
)
def test_bad_lines_get_the_help(text: str, channel: int | None, says: str) -> None:
    got = parse(text, "alice", people=PEOPLE, channel_incident=channel)
    assert isinstance(got, ParseError)
    assert says in got.message and got.text.endswith(chat.HELP)


def test_buttons_marked_messages_and_status() -> None:
    assert chat.button_command(chat.BUTTON_ACKNOWLEDGE, "bob") == Transition("bob", "acknowledge")
    assert chat.button_command(chat.BUTTON_COMMANDER, "bob") == AssignRole(
        "bob", "commander", "bob"
    )
    assert chat.button_command(chat.BUTTON_RESOLVE, "bob") == Transition("bob", "resolve")
    assert chat.button_command("other", "bob") is None
    assert chat.marked_entry("note: db is back") == ("note", "db is back")
    assert chat.marked_entry("Decision : roll back") == ("decision", "roll back")
    assert chat.marked_entry("a note: no") is None and chat.marked_entry("note:  ") is None
    link = chat.slack_permalink("C1", "1700000000.000100")
    assert link == "https://slack.com/archives/C1/p1700000000000100"
    assert chat.pinned_text("hello ", link) == f"hello ({link})"
    assert len(chat.pinned_text("x" * 20_000, link)) <= 10_000
    text = chat.status_text(
        {"id": 4, "severity": "sev2", "title": "T", "status": "acknowledged",
         "roles": {"commander": ["alice"]}},
        "http://x/incidents/4",
    )  # fmt: skip
    assert text == (
        "#4 [SEV2] T\nStatus: acknowledged | Commander: alice | Scribe: unassigned | "
        "Liaison: unassigned\nhttp://x/incidents/4"
    )


def test_the_slack_targets_buttons_are_the_chat_buttons() -> None:
    from bridge.targets.slack import actions_block

    block = actions_block("opened", {"id": 5, "status": "triggered"})
    assert block is not None
    assert [e["action_id"] for e in block["elements"]] == list(chat.BUTTONS)
    assert {e["value"] for e in block["elements"]} == {"5"}
    acked = actions_block("acknowledged", {"id": 5, "status": "acknowledged"})
    assert acked is not None and chat.BUTTON_ACKNOWLEDGE not in str(acked)
    assert actions_block("resolved", {"id": 5, "status": "resolved"}) is None
    assert actions_block("timeline", {"id": 5, "status": "triggered"}) is None


def test_slack_escapes_are_made_plain() -> None:
    text = (
        "db &lt;90% &amp; <@U0BOB|bob> asked <#C1|ops> see <https://x.example/a|the graph> <!here>"
    )
    assert chat.clean(text, "slack", PEOPLE) == (
        "db <90% & @bob asked #ops see the graph (https://x.example/a) @here"
    )
    assert chat.clean("<https://x.example>", "slack") == "https://x.example"
    assert chat.clean("<@U0ZED>", "slack") == "@slack:U0ZED"
    assert chat.clean("a &lt; b", "mattermost") == "a &lt; b"  # Mattermost sends it plain
    got = parse("note p99 &gt; 2s for <@U0BOB>", "alice", people=PEOPLE, channel_incident=1)
    assert isinstance(got, Parsed) and got.command == AddEntry("alice", "note", "p99 > 2s for @bob")
    got = parse("resolve fixed by <@U0BOB|bob>", "alice", people=PEOPLE, channel_incident=1)
    assert isinstance(got, Parsed) and got.command == Transition(
        "alice", "resolve", "fixed by @bob"
    )
    assert chat.marked_entry("decision: a &amp; b", PEOPLE) == ("decision", "a & b")
