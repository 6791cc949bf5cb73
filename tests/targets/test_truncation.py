"""Messages over a target's limit are cut to fit without breaking the target's markup; the
contract fakes (which enforce the limits and parse the markup) accept the result."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.delivery.markup import (
    ELLIPSIS,
    balanced_html,
    escape_html,
    escape_markdown,
    escape_slack,
    truncate,
    utf16_len,
)
from bridge.targets.opsgenie import MESSAGE_MAX
from bridge.targets.pagerduty import SUMMARY_MAX
from tests.fakes import chat, paging, slack
from tests.fakes.chat import telegram_visible_text
from tests.targets.conftest import MakeTarget, incident, make_notification
from tests.targets.samples import build

# Every character class that gets escaped, so cuts land next to entities and escapes.
CHUNK = 'a<b>&c "q" *d* _e_ @everyone [f](g) 🚀 é '
HUGE = CHUNK * 3000


def huge(event: str = "timeline"):  # type: ignore[no-untyped-def]
    return make_notification(
        event, inc=incident(title="T " + CHUNK * 50), events=({"kind": event, "text": HUGE},)
    )


def slack_valid(text: str) -> bool:
    """No bare <, > or &: every one belongs to a link/mention or an entity."""
    rest = re.sub(r"<[^<>]*>|&(?:amp|lt|gt);", "", text)
    return not re.search(r"[<>&]", rest)


def markdown_valid(text: str) -> bool:
    """No dangling backslash and no broken @ mention guard."""
    body = text[: -len(ELLIPSIS)] if text.endswith(ELLIPSIS) else text
    return not re.search(r"(?<!\\)(\\\\)*\\$", body) and "@everyone" not in text


async def test_slack(slack_api: slack.SlackAPIFake, make_target: MakeTarget) -> None:
    t = make_target("slack", token=slack.TOKEN, api_url=slack_api.url + "/api", channel="C0GENERAL")
    await t.send(huge())
    text = slack_api.messages[0]["text"]
    assert len(text) <= 3000 and text.endswith(ELLIPSIS) and slack_valid(text)


async def test_slack_webhook(slack_hook: slack.SlackWebhookFake, make_target: MakeTarget) -> None:
    await make_target("slack_webhook", url=slack_hook.hook_url).send(huge())
    text = slack_hook.messages[0]["blocks"][0]["text"]["text"]
    assert len(text) <= 3000 and slack_valid(text)


async def test_telegram(telegram: chat.TelegramFake, make_target: MakeTarget) -> None:
    t = make_target("telegram", token=chat.TELEGRAM_TOKEN, api_url=telegram.url, chat_id=1)
    await t.send(huge())  # the fake parses the HTML like the Bot API
    text = telegram.messages[0]["text"]
    assert utf16_len(text) <= 4096 and balanced_html(text)
    telegram_visible_text(text)


async def test_discord(discord: chat.DiscordFake, make_target: MakeTarget) -> None:
    await make_target("discord", url=discord.hook_url).send(huge())
    content = discord.messages[0]["content"]
    assert len(content) <= 2000 and markdown_valid(content)


async def test_mattermost(mattermost: chat.MattermostFake, make_target: MakeTarget) -> None:
    await make_target("mattermost", url=mattermost.hook_url).send(huge())
    text = mattermost.posts[0]["text"]
    assert len(text) <= 16_383 and markdown_valid(text)


async def test_msteams(teams: chat.TeamsFake, make_target: MakeTarget) -> None:
    await make_target("msteams", url=teams.hook_url).send(huge())
    raw = teams.requests[0].body
    assert len(raw) <= 28_000
    assert markdown_valid(json.loads(raw)["attachments"][0]["content"]["body"][1]["text"])


async def test_pagerduty(pagerduty: paging.PagerDutyFake, make_target: MakeTarget) -> None:
    t = make_target(
        "pagerduty", routing_key=paging.ROUTING_KEY, api_url=pagerduty.url + "/v2/enqueue"
    )
    await t.send(huge("opened"))
    assert len(pagerduty.events[0]["payload"]["summary"]) <= SUMMARY_MAX


async def test_opsgenie(opsgenie: paging.OpsgenieFake, make_target: MakeTarget) -> None:
    await make_target("opsgenie", api_key=paging.GENIE_KEY, api_url=opsgenie.url).send(
        huge("opened")
    )
    alert = next(iter(opsgenie.alerts.values()))
    assert len(alert["message"]) <= MESSAGE_MAX


def test_email_subject_is_bounded() -> None:
    msg = build("email").message(huge("opened"))  # type: ignore[attr-defined]
    assert len(str(msg["Subject"])) <= 200


@pytest.mark.parametrize(
    ("markup", "value", "limit", "expected"),
    [
        ("text", "abcdef", 10, "abcdef"),
        ("text", "abcdef", 4, "abc…"),
        ("slack", "a &amp; b", 5, "a …"),  # never "a &am…"
        ("slack", "x <http://a|b> y", 8, "x …"),  # never half a link
        ("html", "<b>bold text</b>", 12, "<b>bold…</b>"),
        ("html", "<b><i>xy</i></b> tail", 15, "<b><i>…</i></b>"),
        ("html", "a &lt; b", 5, "a …"),
        ("html", "ab<br>cd", 7, "ab<br>…"),
        ("markdown", "a \\* b", 4, "a …"),  # never a lone backslash
        ("markdown", "x @\u200beveryone", 4, "x …"),
    ],
)
def test_truncate_cases(markup: str, value: str, limit: int, expected: str) -> None:
    assert truncate(value, limit, markup) == expected  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=8), st.integers(min_value=0, max_value=200))
def test_truncated_html_stays_valid(parts: list[str], limit: int) -> None:
    value = "".join(f"<b>{escape_html(p)}</b><i>{escape_html(p)}<code>x</code></i>" for p in parts)
    out = truncate(value, limit, "html")
    assert len(out) <= max(limit, 0) or out == value
    assert balanced_html(out) or len(out) < len("<b></b>")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.integers(min_value=2, max_value=300))
def test_truncated_slack_and_markdown_stay_valid(text: str, limit: int) -> None:
    s = truncate(escape_slack(text), limit, "slack")
    assert len(s) <= limit and slack_valid(s)
    m = truncate(escape_markdown(text), limit, "markdown")
    assert len(m) <= limit and markdown_valid(m)
