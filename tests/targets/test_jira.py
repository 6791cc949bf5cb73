"""The jira target against the Jira Cloud fake: one issue per follow-up item, never two, whatever
fails and whenever; refusals with bounded reasons; no secret anywhere."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.rules import load_rules
from bridge.targets import (
    REGISTRY,
    PermanentError,
    RetryableError,
    Target,
)
from bridge.targets.jira import DESCRIPTION_MAX, SUMMARY_MAX, adf, jql_string
from tests.fakes import jira
from tests.fakes.jira import JiraFake, adf_problem
from tests.targets.conftest import FixedClock, MakeTarget, StartFake, incident, make_notification
from tests.targets.tickets import ITEMS, describe, failures, tickets


def settings(fake: JiraFake, **overrides: Any) -> dict[str, Any]:
    return {
        "url": fake.url,
        "email": jira.EMAIL,
        "api_token": jira.API_TOKEN,
        "project": "OPS",
        "labels": ["follow-up"],
        **overrides,
    }


async def start(start_fake: StartFake, make_target: MakeTarget, **overrides: Any) -> Any:
    fake: JiraFake = await start_fake(JiraFake)
    return fake, make_target("jira", **settings(fake, **overrides))


def creates(fake: JiraFake) -> list[Any]:
    return [r for r in fake.requests if r.path == "/rest/api/3/issue"]


# -- one issue per item ------------------------------------------------------------------------


async def test_an_item_becomes_one_issue(start_fake: StartFake, make_target: MakeTarget) -> None:
    fake, target = await start(
        start_fake, make_target, assignees={"bob": "5b10ac8d82e05b22cc7d4ef5"}
    )
    result = await target.send(tickets(7))
    assert not result.skipped
    assert result.state == {"tickets": {"7": {"key": "OPS-1", "url": f"{fake.url}/browse/OPS-1"}}}
    assert result.provider_ids == {"tickets": "OPS-1"}
    # searched first (by the item's marker label, in the project), then created
    assert [r.path for r in fake.requests] == ["/rest/api/3/search/jql", "/rest/api/3/issue"]
    assert fake.requests[0].json["jql"] == (
        'project = "OPS" AND labels = "incident-bridge-42-7" ORDER BY created ASC'
    )
    issue = fake.issues["OPS-1"]
    assert issue["summary"] == f"{ITEMS[7][0]} (incident #42)"
    assert issue["issuetype"] == {"name": "Task"}
    assert issue["labels"] == ["follow-up", "incident-bridge-42-7"]
    assert issue["assignee"] == {"accountId": "5b10ac8d82e05b22cc7d4ef5"}
    assert adf_problem(issue["description"]) is None
    text = str(issue["description"])
    assert ITEMS[7][0] in text and "Owner: bob" in text and "Severity: sev2" in text
    assert "Team: checkout" in text
    link = {"type": "link", "attrs": {"href": "http://incident-bridge.example/incidents/42"}}
    assert link in _marks(issue["description"])


def _marks(doc: Any) -> list[Any]:
    out: list[Any] = []
    if isinstance(doc, dict):
        out.extend(doc.get("marks", []))
        for child in doc.get("content", []):
            out.extend(_marks(child))
    return out


async def test_coalesced_events_open_one_issue_each(
    start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake, target = await start(start_fake, make_target)
    n = tickets(7, 8, 9, 7, state={"channel": "kept"})  # item 7 twice: one issue
    result = await target.send(n)
    assert len(fake.issues) == 3
    assert result.state["channel"] == "kept"  # the state passed in is kept
    assert {k: v["key"] for k, v in result.state["tickets"].items()} == {
        "7": "OPS-1",
        "8": "OPS-2",
        "9": "OPS-3",
    }
    labels = [fake.issues[f"OPS-{i}"]["labels"][-1] for i in (1, 2, 3)]
    assert labels == ["incident-bridge-42-7", "incident-bridge-42-8", "incident-bridge-42-9"]
    assert result.provider_ids == {"tickets": "OPS-1 OPS-2 OPS-3"}


async def test_items_in_the_state_are_not_searched_nor_created(
    start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake, target = await start(start_fake, make_target)
    state = {"tickets": {"7": {"key": "OPS-9", "url": "https://x.example/browse/OPS-9"}}}
    result = await target.send(tickets(7, state=state))
    assert fake.requests == []
    assert result.state == state and result.provider_ids == {"tickets": "OPS-9"}
    await target.send(tickets(7, 8, state=state))
    assert len(creates(fake)) == 1 and fake.requests[0].json["jql"].endswith(
        '"incident-bridge-42-8" ORDER BY created ASC'
    )


async def test_an_issue_found_by_its_label_is_not_created_again(
    start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake, target = await start(start_fake, make_target)
    fake.add_issue("OPS", "made by an earlier attempt", ["incident-bridge-42-7"])
    fake.add_issue("OPS", "another incident's", ["incident-bridge-41-7"])
    result = await target.send(tickets(7))
    assert creates(fake) == []
    assert result.state["tickets"]["7"]["key"] == "OPS-1"


async def test_other_events_are_skipped(start_fake: StartFake, make_target: MakeTarget) -> None:
    fake, target = await start(start_fake, make_target)
    for event in ("opened", "resolved", "timeline"):
        result = await target.send(make_notification(event, state={"tickets": {}}))
        assert result.skipped and result.state == {"tickets": {}}
    # a ticket event without an item id cannot be keyed: skipped too
    bad = make_notification(
        "ticket", events=({"kind": "ticket_requested", "data": {"text": "x"}},), tier="tickets"
    )
    assert (await target.send(bad)).skipped
    assert fake.requests == []


# -- never two -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["500", "close"])
async def test_a_lost_answer_does_not_open_a_second_issue(
    how: str, start_fake: StartFake, make_target: MakeTarget, fixed_clock: FixedClock
) -> None:
    fake, target = await start(start_fake, make_target)
    fake.lose_next_create(how)
    with pytest.raises(RetryableError) as err:
        await target.send(tickets(7))
    assert err.value.reason == ("http_500" if how == "500" else "connection")
    assert err.value.retry_after == 30.0  # the search may lag: not before settle_s
    assert err.value.state == {"tickets": {}, "unsettled": {"7": fixed_clock.now}}
    assert len(fake.issues) == 1
    # the retry, by another process (after a restart), with the state saved with the error
    fixed_clock.now += 30
    again = REGISTRY["jira"].from_settings("t", settings(fake), target.deps)
    result = await again.send(tickets(7, state=dict(err.value.state)))
    assert len(fake.issues) == 1 and len(creates(fake)) == 1
    assert result.state == {"tickets": {"7": {"key": "OPS-1", "url": f"{fake.url}/browse/OPS-1"}}}


async def test_a_quick_retry_while_the_search_lags_waits_instead_of_creating(
    start_fake: StartFake, make_target: MakeTarget, fixed_clock: FixedClock
) -> None:
    fake, target = await start(start_fake, make_target)
    fake.search_lag = 1  # the new issue is invisible to the next search
    fake.lose_next_create("close")
    n = tickets(7)
    with pytest.raises(RetryableError):
        await target.send(n)
    # the worker's quick retry sends the same notification (its state from before the attempt)
    fixed_clock.now += 1
    with pytest.raises(RetryableError) as err:
        await target.send(n)
    assert err.value.reason == "ticket_unconfirmed"
    assert err.value.retry_after == 29.0
    assert len(fake.issues) == 1 and len(creates(fake)) == 1
    fixed_clock.now += 29
    result = await target.send(n)
    assert result.state["tickets"]["7"]["key"] == "OPS-1"
    assert len(fake.issues) == 1 and len(creates(fake)) == 1


async def test_an_unsettled_create_that_created_nothing_is_made_after_settle_s(
    start_fake: StartFake, make_target: MakeTarget, fixed_clock: FixedClock
) -> None:
    fake, target = await start(start_fake, make_target, settle_s=5)
    fake.fail_next(1, status=503, path="/rest/api/3/issue")  # refused before the handler
    with pytest.raises(RetryableError) as err:
        await target.send(tickets(7))
    assert err.value.retry_after == 5.0
    state = dict(err.value.state or {})
    with pytest.raises(RetryableError, match="ticket_unconfirmed"):
        await target.send(tickets(7, state=state))
    fixed_clock.now += 5
    result = await target.send(tickets(7, state=state))
    assert len(fake.issues) == 1 and "unsettled" not in result.state


async def test_partial_progress_is_kept_with_the_error(
    start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake, target = await start(start_fake, make_target)
    fake.quota = 2  # the third create is rate limited
    with pytest.raises(RetryableError) as err:
        await target.send(tickets(7, 8, 9))
    assert err.value.reason == "rate_limited" and err.value.retry_after == 5.0
    state = dict(err.value.state or {})
    assert (
        sorted(state["tickets"]) == ["7", "8"] and "unsettled" not in state
    )  # a 429 created nothing
    fake.quota = None
    again = REGISTRY["jira"].from_settings("t", settings(fake), target.deps)  # no memory
    result = await again.send(tickets(7, 8, 9, state=state))
    assert len(fake.issues) == 3
    assert sorted(result.state["tickets"]) == ["7", "8", "9"]
    # only item 9 was searched and created on the retry
    retry = fake.requests[-2:]
    assert [r.path for r in retry] == ["/rest/api/3/search/jql", "/rest/api/3/issue"]


# -- refusals ------------------------------------------------------------------------------------


async def test_a_wrong_token_is_permanent_and_never_shown(
    start_fake: StartFake, make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    fake, target = await start(start_fake, make_target, api_token="ATATT-wrong-SECRET-1")
    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentError) as err:
        await target.send(tickets(7))
    assert err.value.reason == "jira_unauthorized"
    text = describe(err.value) + caplog.text + repr(target) + repr(target.config)
    assert "ATATT-wrong-SECRET-1" not in text and fake.issues == {}


async def test_no_secret_in_any_failure(
    start_fake: StartFake, make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    fake, target = await start(start_fake, make_target)
    with caplog.at_level(logging.DEBUG):
        errors = await failures(fake, target, (500, 429, 400, 401, 403, 404, 302))
    assert [e.reason for e in errors] == [
        "http_500",
        "rate_limited",
        "jira_invalid_request",
        "jira_unauthorized",
        "jira_forbidden",
        "jira_not_found",
        "redirect",
        "connection",
    ]
    text = "\n".join(describe(e) for e in errors) + caplog.text + str(target.config.model_dump())
    assert jira.API_TOKEN not in text
    assert "Basic " not in text


async def test_rate_limited_is_retried_after_retry_after(
    start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake, target = await start(start_fake, make_target)
    fake.fail_next(1, status=429, retry_after=7)
    with pytest.raises(RetryableError) as err:
        await target.send(tickets(7))
    assert (err.value.reason, err.value.retry_after) == ("rate_limited", 7.0)
    assert (await target.send(tickets(7))).state["tickets"]["7"]["key"] == "OPS-1"


@pytest.mark.parametrize(
    ("overrides", "reason", "logged"),
    [
        ({"issue_type": "Epic"}, "jira_invalid_issuetype", "issuetype: Specify an issue type"),
        # the search, first, refuses a project that does not exist
        ({"project": "NOPE"}, "jira_invalid_request", "does not exist for the field 'project'"),
    ],
)
async def test_field_errors_are_permanent_and_name_the_field(
    overrides: dict[str, Any],
    reason: str,
    logged: str,
    start_fake: StartFake,
    make_target: MakeTarget,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, target = await start(start_fake, make_target, **overrides)
    with caplog.at_level(logging.WARNING), pytest.raises(PermanentError) as err:
        await target.send(tickets(7))
    assert err.value.reason == reason
    assert logged in caplog.text
    assert err.value.state == {"tickets": {}}


async def test_several_field_errors(start_fake: StartFake, make_target: MakeTarget) -> None:
    fake, target = await start(start_fake, make_target)
    body = {"errorMessages": [], "errors": {"summary": "too long", "customfield_10010": "x"}}
    fake.fail_next(1, status=400, body=body, path="/rest/api/3/issue")
    with pytest.raises(PermanentError, match="jira_invalid_fields"):
        await target.send(tickets(7))


async def test_an_owner_jira_cannot_assign_gets_an_unassigned_issue(
    start_fake: StartFake, make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    fake, target = await start(start_fake, make_target, assignees={"bob": "no-such-account"})
    with caplog.at_level(logging.WARNING):
        result = await target.send(tickets(7))
    assert "assignee" not in fake.issues["OPS-1"]
    assert "bob cannot be assigned" in caplog.text
    assert result.state["tickets"]["7"]["key"] == "OPS-1"


async def test_the_owner_account_comes_from_the_rotation_handles(
    start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake, target = await start(start_fake, make_target)
    people = {"alice": {"slack": "U0ALICE", "jira": "712020:alice-account-id"}}
    await target.send(tickets(8, 9, inc=incident(people=people)))
    assert fake.issues["OPS-1"]["assignee"] == {"accountId": "712020:alice-account-id"}
    assert "assignee" not in fake.issues["OPS-2"]  # item 9 has no owner


async def test_a_huge_item_fits_the_summary_and_the_field_limit(
    start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake, target = await start(start_fake, make_target)
    text = "Fix https://x.example/a?b=1&c=2 and <b>@here</b> now.\n" * 2000
    n = make_notification(
        "ticket",
        tier="tickets",
        events=({"kind": "ticket_requested", "data": {"item": 1, "text": text, "owner": None}},),
    )
    await target.send(n)  # the fake refuses more than 32,767 characters or a bad document
    issue = fake.issues["OPS-1"]
    assert len(issue["summary"]) <= SUMMARY_MAX and "\n" not in issue["summary"]
    assert len(str(issue["description"])) > DESCRIPTION_MAX // 2


# -- the Atlassian document ----------------------------------------------------------------------


def test_adf_paragraphs_breaks_lists_and_links() -> None:
    doc = adf(
        "First line\nsecond line (see https://a.example/x_(y)).\n\n- one\n- two http://b.example\n"
        "after the list\n\n\n   \nlast <b>not markup</b> javascript:alert(1)"
    )
    assert adf_problem(doc) is None
    para, bullets, after, last = doc["content"]
    assert para["content"][:2] == [
        {"type": "text", "text": "First line"},
        {"type": "hardBreak"},
    ]
    assert para["content"][3] == {
        "type": "text",
        "text": "https://a.example/x_(y)",
        "marks": [{"type": "link", "attrs": {"href": "https://a.example/x_(y)"}}],
    }
    assert para["content"][4] == {"type": "text", "text": ")."}
    assert [i["content"][0]["content"][0]["text"] for i in bullets["content"]] == [
        "one",
        "two ",
    ]
    assert after == {"type": "paragraph", "content": [{"type": "text", "text": "after the list"}]}
    assert last["content"] == [
        {"type": "text", "text": "last <b>not markup</b> javascript:alert(1)"}
    ]


def test_adf_of_nothing_is_an_empty_document() -> None:
    assert adf("") == {"type": "doc", "version": 1, "content": []}
    assert adf_problem(adf("\x00\x07 ctrl")) is None


def test_jql_strings_are_quoted() -> None:
    assert jql_string('a "b" \\ c') == '"a \\"b\\" \\\\ c"'


# -- the contract fake ---------------------------------------------------------------------------


async def test_the_old_search_endpoint_is_gone(start_fake: StartFake, session: Any) -> None:
    fake: JiraFake = await start_fake(JiraFake)
    async with session.get(f"{fake.url}/rest/api/3/search?jql=project=OPS") as resp:
        assert resp.status == 410
        assert (await resp.json())["errorMessages"]


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"url": "ftp://x.example"},
        {"project": "ops"},
        {"labels": ["two words"]},
        {"label_prefix": "Has Caps"},
        {"label_prefix": "x" * 25},
        {"settle_s": -1},
        {"api_token": None},
    ],
)
def test_settings_are_validated(bad: dict[str, Any]) -> None:
    base = {
        "url": "https://x.atlassian.net",
        "email": "a@b.c",
        "api_token": "t",
        "project": "OPS",
    }
    REGISTRY["jira"].Config.model_validate(base)
    with pytest.raises(ValidationError):
        REGISTRY["jira"].Config.model_validate({**base, **bad})


RULES = """\
targets:
  tickets:
    type: jira
    url: https://example.atlassian.net
    email: bridge@example.com
    api_token: {token}
    project: OPS
    labels: [follow-up]
    assignees: {{bob: 5b10ac8d82e05b22cc7d4ef5}}
route:
  name: root
  team: sre
  tiers: {{general: [tickets]}}
  follow_up: {{ticket_target: tickets}}
"""


def test_rules_take_a_jira_ticket_target(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.format(token="${JIRA_TOKEN}"))
    result = load_rules([path], env={"JIRA_TOKEN": jira.API_TOKEN})
    assert result.ruleset is not None, result.errors
    path.write_text(RULES.format(token="literal-token"))
    errors = [str(e) for e in load_rules([path], env={}).errors]
    assert any("api_token is a secret" in e for e in errors), errors
    assert not any("literal-token" in e for e in errors)


def test_the_target_type(make_target: MakeTarget) -> None:
    target: Target = make_target(
        "jira", url="https://x.atlassian.net", email="a@b.c", api_token="t", project="OPS"
    )
    assert target.type_name == "jira" and target.markup == "text"
