"""The github target against the GitHub fake: one issue per follow-up item, never two, whatever
fails and whenever; rate limits (primary and secondary) retried; refusals with bounded
reasons; inert Markdown; no secret anywhere."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.rules import load_rules
from bridge.targets import REGISTRY, PermanentError, RetryableError
from bridge.targets.github import BODY_MAX, TITLE_MAX, plain_title
from tests.fakes import github
from tests.fakes.github import GitHubFake
from tests.targets.conftest import (
    NOW,
    FixedClock,
    MakeTarget,
    StartFake,
    incident,
    make_notification,
)
from tests.targets.tickets import ITEMS, describe, failures, tickets

EVIL = "@everyone @bob <script>x</script> <img src=x onerror=alert(1)> [click](http://evil.example)"


def settings(fake: GitHubFake, **overrides: Any) -> dict[str, Any]:
    return {
        "api_url": fake.url,
        "token": github.TOKEN,
        "repo": github.REPO,
        "labels": ["follow-up"],
        **overrides,
    }


async def start(start_fake: StartFake, make_target: MakeTarget, **overrides: Any) -> Any:
    fake: GitHubFake = await start_fake(GitHubFake)
    return fake, make_target("github", **settings(fake, **overrides))


def creates(fake: GitHubFake) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST"]


def url(number: int) -> str:
    return f"https://github.example/{github.REPO}/issues/{number}"


# -- one issue per item ------------------------------------------------------------------------


async def test_an_item_becomes_one_issue(start_fake: StartFake, make_target: MakeTarget) -> None:
    fake, target = await start(start_fake, make_target, assignees={"bob": "bob-gh"})
    result = await target.send(tickets(7))
    assert result.state == {"tickets": {"7": {"key": "#1", "url": url(1)}}}
    assert result.provider_ids == {"tickets": "#1"}
    search, create = fake.requests
    assert (search.method, search.path) == ("GET", f"/repos/{github.REPO}/issues")
    assert search.query["labels"] == "incident-bridge-42-7" and search.query["state"] == "all"
    assert create.headers["Authorization"] == f"Bearer {github.TOKEN}"
    assert create.headers["Accept"] == "application/vnd.github+json"
    assert create.headers["X-GitHub-Api-Version"] == "2022-11-28"
    issue = fake.issues[1]
    assert issue["title"] == f"{ITEMS[7][0]} (incident 42)"
    assert [x["name"] for x in issue["labels"]] == ["follow-up", "incident-bridge-42-7"]
    assert issue["assignees"] == [{"login": "bob-gh"}]
    body = issue["body"]
    assert body.startswith(ITEMS[7][0]) and "**Owner:** bob" in body
    assert (
        "[Incident 42: High error rate on checkout](http://incident-bridge.example/incidents/42)"
        in body
    )
    assert "**Severity:** sev2" in body and "**Team:** checkout" in body


async def test_coalesced_events_open_one_issue_each(
    start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake, target = await start(start_fake, make_target)
    result = await target.send(tickets(7, 8, 9, 8, state={"other": 1}))
    assert len(fake.issues) == 3 and result.state["other"] == 1
    assert {k: v["key"] for k, v in result.state["tickets"].items()} == {
        "7": "#1",
        "8": "#2",
        "9": "#3",
    }
    assert result.provider_ids == {"tickets": "#1 #2 #3"}


async def test_items_in_the_state_are_not_searched_nor_created(
    start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake, target = await start(start_fake, make_target)
    state = {"tickets": {"7": {"key": "#5", "url": url(5)}}}
    assert (await target.send(tickets(7, state=state))).state == state
    assert fake.requests == []


async def test_an_issue_found_by_its_label_is_not_created_again(
    start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake, target = await start(start_fake, make_target)
    fake.add_issue("another incident's", ["incident-bridge-41-7"])
    fake.add_issue("made by an earlier attempt, closed since", ["incident-bridge-42-7"], "closed")
    result = await target.send(tickets(7))
    assert creates(fake) == []
    assert result.state["tickets"]["7"] == {"key": "#2", "url": url(2)}


async def test_other_events_are_skipped(start_fake: StartFake, make_target: MakeTarget) -> None:
    fake, target = await start(start_fake, make_target)
    for event in ("opened", "update", "timeline"):
        assert (await target.send(make_notification(event))).skipped
    assert fake.requests == []


# -- never two -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["502", "close"])
async def test_a_lost_answer_does_not_open_a_second_issue(
    how: str, start_fake: StartFake, make_target: MakeTarget, fixed_clock: FixedClock
) -> None:
    fake, target = await start(start_fake, make_target)
    fake.lose_next_create(how)
    n = tickets(7, 8)
    with pytest.raises(RetryableError) as err:
        await target.send(n)
    assert err.value.reason == ("http_502" if how == "502" else "connection")
    assert err.value.retry_after == 10.0
    assert err.value.state == {"tickets": {}, "unsettled": {"7": NOW}}
    # a quick retry (the same notification) finds it: no second issue
    result = await target.send(n)
    assert len(fake.issues) == 2 and len(creates(fake)) == 2
    assert result.state == {
        "tickets": {"7": {"key": "#1", "url": url(1)}, "8": {"key": "#2", "url": url(2)}}
    }
    # and so does another process given the error's state
    fixed_clock.now += 60
    again = REGISTRY["github"].from_settings("t", settings(fake), target.deps)
    assert (await again.send(tickets(7, state=dict(err.value.state or {})))).state["tickets"] == {
        "7": {"key": "#1", "url": url(1)}
    }
    assert len(creates(fake)) == 2


async def test_partial_progress_is_kept_with_the_error(
    start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake, target = await start(start_fake, make_target)
    fake.quota = 1  # the second create hits the secondary rate limit
    with pytest.raises(RetryableError) as err:
        await target.send(tickets(7, 8, 9))
    assert (err.value.reason, err.value.retry_after) == ("rate_limited", 60.0)
    state = dict(err.value.state or {})
    assert list(state["tickets"]) == ["7"] and "unsettled" not in state
    fake.quota = None
    again = REGISTRY["github"].from_settings("t", settings(fake), target.deps)
    result = await again.send(tickets(7, 8, 9, state=state))
    assert len(fake.issues) == 3 and sorted(result.state["tickets"]) == ["7", "8", "9"]


async def test_dropped_labels_are_warned_about(
    start_fake: StartFake, make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    fake, target = await start(start_fake, make_target, assignees={"bob": "bob-gh"})
    fake.push_access = False  # GitHub drops labels and assignees without a word
    with caplog.at_level(logging.WARNING):
        result = await target.send(tickets(7))
    assert result.state["tickets"]["7"]["key"] == "#1"
    assert "GitHub dropped the labels of #1" in caplog.text


# -- rate limits and refusals --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "body", "wait"),
    [
        (429, {"Retry-After": "7"}, None, 7.0),
        (
            403,
            {"retry-after": "30"},
            {"message": "You have exceeded a secondary rate limit."},
            30.0,
        ),
        (
            403,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 120)},
            None,
            120.0,
        ),
        (403, {}, {"message": "You have exceeded a secondary rate limit."}, 60.0),
        (429, {}, {"message": "too many"}, 60.0),
    ],
)
async def test_rate_limits_are_retried_after_their_hint(
    status: int,
    headers: dict[str, str],
    body: Any,
    wait: float,
    start_fake: StartFake,
    make_target: MakeTarget,
) -> None:
    fake, target = await start(start_fake, make_target)
    fake.fail_next(
        1, status=status, headers=headers, body=body or {"message": "API rate limit exceeded"}
    )
    with pytest.raises(RetryableError) as err:
        await target.send(tickets(7))
    assert (err.value.reason, err.value.retry_after) == ("rate_limited", wait)
    assert (await target.send(tickets(7))).state["tickets"]["7"]["key"] == "#1"


async def test_refusals_are_permanent_with_bounded_reasons(
    start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake, target = await start(start_fake, make_target)
    fake.issues_enabled = False
    with pytest.raises(PermanentError, match="github_issues_disabled"):
        await target.send(tickets(7))
    fake.issues_enabled = True
    wrong_repo = REGISTRY["github"].from_settings(
        "t", settings(fake, repo="acme/nope"), target.deps
    )
    with pytest.raises(PermanentError, match="github_not_found"):
        await wrong_repo.send(tickets(7))
    fake.fail_next(1, status=403, body={"message": "Resource not accessible by integration"})
    with pytest.raises(PermanentError, match="github_forbidden"):
        await target.send(tickets(7))
    assert fake.issues == {}


async def test_a_wrong_token_is_permanent_and_never_shown(
    start_fake: StartFake, make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    _, target = await start(start_fake, make_target, token="ghp_wrongSECRETwrong")
    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentError) as err:
        await target.send(tickets(7))
    assert err.value.reason == "github_unauthorized"
    text = describe(err.value) + caplog.text + repr(target.config) + target.config.model_dump_json()
    assert "ghp_wrongSECRETwrong" not in text


async def test_no_secret_in_any_failure(
    start_fake: StartFake, make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    fake, target = await start(start_fake, make_target)
    with caplog.at_level(logging.DEBUG):
        errors = await failures(fake, target, (500, 429, 422, 401, 403, 404, 410, 302))
    assert [e.reason for e in errors] == [
        "http_500",
        "rate_limited",
        "github_invalid",
        "github_unauthorized",
        "rate_limited",  # a 403 with Retry-After is a secondary rate limit
        "github_not_found",
        "github_issues_disabled",
        "redirect",
        "connection",
    ]
    text = "\n".join(describe(e) for e in errors) + caplog.text
    assert github.TOKEN not in text and "Bearer" not in text


async def test_validation_failed_names_the_field(
    start_fake: StartFake, make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    fake, target = await start(start_fake, make_target)
    body = {
        "message": "Validation Failed",
        "errors": [
            {
                "resource": "Issue",
                "code": "custom",
                "field": "title",
                "message": "title is too long",
            }
        ],
    }
    fake.script_create(422, body)
    with caplog.at_level(logging.WARNING), pytest.raises(PermanentError) as err:
        await target.send(tickets(7))
    assert err.value.reason == "github_invalid_title"
    assert "title: title is too long" in caplog.text


async def test_an_owner_github_cannot_assign_gets_an_unassigned_issue(
    start_fake: StartFake, make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    fake, target = await start(start_fake, make_target, assignees={"bob": "not-a-collaborator"})
    with caplog.at_level(logging.WARNING):
        await target.send(tickets(7))
    assert fake.issues[1]["assignees"] == []
    assert "bob cannot be assigned" in caplog.text


async def test_the_owner_login_comes_from_the_rotation_handles(
    start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake, target = await start(start_fake, make_target)
    people = {"alice": {"slack": "U0ALICE", "github": "alice-gh"}}
    await target.send(tickets(8, inc=incident(people=people)))
    assert fake.issues[1]["assignees"] == [{"login": "alice-gh"}]


async def test_text_from_people_can_neither_ping_nor_inject(
    start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake, target = await start(start_fake, make_target)
    n = make_notification(
        "ticket",
        tier="tickets",
        inc=incident(title=f"Title {EVIL}", team="@acme/oncall"),
        events=(
            {
                "kind": "ticket_requested",
                "actor": "@mallory",
                "data": {"item": 1, "text": EVIL, "owner": "@everyone"},
            },
        ),
    )
    await target.send(n)
    issue = fake.issues[1]
    for raw in ("@everyone", "@bob", "@acme", "@mallory", "<script>", "[click](http"):
        assert raw not in issue["body"], raw
    assert re.search(r"(?<!\\)<", issue["body"]) is None  # every < is escaped: no HTML
    assert "@\u200beveryone" in issue["body"] and "\\<script\\>" in issue["body"]
    assert "@everyone" not in issue["title"] and "<script>x</script>" in issue["title"]


async def test_a_huge_item_fits_the_limits(start_fake: StartFake, make_target: MakeTarget) -> None:
    fake, target = await start(start_fake, make_target)
    text = "a *b* [c](d) @e " * 10_000
    n = make_notification(
        "ticket",
        tier="tickets",
        events=({"kind": "ticket_requested", "data": {"item": 1, "text": text}},),
    )
    await target.send(n)  # the fake refuses a title over 256 or a body over 65,536 characters
    issue = fake.issues[1]
    assert len(issue["title"]) <= TITLE_MAX and len(issue["body"]) <= BODY_MAX


def test_plain_title() -> None:
    assert plain_title("a \\[b\\] \\#1 \\<x\\> \\\\ @\u200bc") == "a [b] #1 <x> \\ @\u200bc"


# -- the contract fake ---------------------------------------------------------------------------


async def test_the_fake_wants_the_api_headers(start_fake: StartFake, session: Any) -> None:
    fake: GitHubFake = await start_fake(GitHubFake)
    auth = {"Authorization": f"token {github.TOKEN}"}
    async with session.post(
        f"{fake.url}/repos/{github.REPO}/issues", json={"title": "x"}, headers=auth
    ) as resp:
        assert resp.status == 400
    headers = {
        **auth,
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }
    async with session.post(
        f"{fake.url}/repos/{github.REPO}/issues", json={}, headers=headers
    ) as resp:
        assert resp.status == 422
        assert (await resp.json())["errors"][0]["field"] == "title"


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"repo": "no-slash"},
        {"repo": "a/b/c"},
        {"api_url": "not a url"},
        {"labels": ["x" * 51]},
        {"labels": ["a,b"]},
        {"label_prefix": "-starts-with-a-dash"},
        {"token": 1},
    ],
)
def test_settings_are_validated(bad: dict[str, Any]) -> None:
    base = {"token": "t", "repo": "acme/checkout"}
    assert REGISTRY["github"].Config.model_validate(base).api_url == "https://api.github.com"
    with pytest.raises(ValidationError):
        REGISTRY["github"].Config.model_validate({**base, **bad})


RULES = """\
targets:
  tickets:
    type: github
    token: {token}
    repo: acme/checkout
    labels: [follow-up]
route:
  name: root
  team: sre
  follow_up: {{ticket_target: tickets}}
"""


def test_rules_take_a_github_ticket_target(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.format(token="${GITHUB_TOKEN}"))
    result = load_rules([path], env={"GITHUB_TOKEN": github.TOKEN})
    assert result.ruleset is not None, result.errors
    path.write_text(RULES.format(token="ghp_literal"))
    errors = [str(e) for e in load_rules([path], env={}).errors]
    assert any("token is a secret" in e for e in errors), errors
    assert not any("ghp_literal" in e for e in errors)
