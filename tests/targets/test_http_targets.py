"""Every HTTP target against its contract fake: success, 429, 5xx, auth failure, no server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.delivery.protocol import RateLimited
from bridge.targets import PermanentError, RetryableError
from tests.fakes import chat, ntfy, paging, pushover, slack, twilio, webhook
from tests.fakes.base import FakeServer
from tests.targets.conftest import MakeTarget, StartFake, make_notification

WEBHOOK_SECRET = webhook.SECRET


@dataclass(frozen=True)
class Case:
    type_name: str
    fake: type[FakeServer]
    settings: Callable[[Any], dict[str, Any]]
    wrong: Callable[[Any], dict[str, Any]]  # the same with a bad credential
    auth_reason: str
    tier: str = "general"


# one request a page (a text), as the other cases send one
_TWILIO = {"account_sid": twilio.ACCOUNT_SID, "from": "+14155550100", "to": "+14155550123"}
_TWILIO["mode"] = "sms"
CASES = [
    Case(
        "slack_webhook",
        slack.SlackWebhookFake,
        lambda f: {"url": f.hook_url},
        lambda f: {"url": f.url + "/services/T000/B000/wrong"},
        "slack_invalid_token",
    ),
    Case(
        "slack",
        slack.SlackAPIFake,
        lambda f: {"token": slack.TOKEN, "api_url": f.url + "/api", "channel": "C0GENERAL"},
        lambda f: {"token": "xoxb-wrong", "api_url": f.url + "/api", "channel": "C0GENERAL"},
        "slack_invalid_auth",
    ),
    Case(
        "msteams",
        chat.TeamsFake,
        lambda f: {"url": f.hook_url},
        lambda f: {"url": f.hook_url.replace(chat.TEAMS_SIG, "nope")},
        "http_401",
    ),
    Case(
        "mattermost",
        chat.MattermostFake,
        lambda f: {"url": f.hook_url},
        lambda f: {"url": f.url + "/hooks/wrong"},
        "http_400",
    ),
    Case(
        "discord",
        chat.DiscordFake,
        lambda f: {"url": f.hook_url, "username": "bridge"},
        lambda f: {"url": f.hook_url.replace(chat.DISCORD_TOKEN, "nope")},
        "http_401",
    ),
    Case(
        "telegram",
        chat.TelegramFake,
        lambda f: {"token": chat.TELEGRAM_TOKEN, "api_url": f.url, "chat_id": -100123},
        lambda f: {"token": "1:wrong", "api_url": f.url, "chat_id": -100123},
        "http_401",
    ),
    Case(
        "pagerduty",
        paging.PagerDutyFake,
        lambda f: {"routing_key": paging.ROUTING_KEY, "api_url": f.url + "/v2/enqueue"},
        lambda f: {"routing_key": "x" * 32, "api_url": f.url + "/v2/enqueue"},
        "http_400",
        tier="stakeholders",
    ),
    Case(
        "opsgenie",
        paging.OpsgenieFake,
        lambda f: {"api_key": paging.GENIE_KEY, "api_url": f.url},
        lambda f: {"api_key": "wrong", "api_url": f.url},
        "http_422",
        tier="stakeholders",
    ),
    Case(
        "webhook",
        webhook.WebhookFake,
        lambda f: {"url": f.hook_url, "secret": webhook.SECRET},
        lambda f: {"url": f.hook_url, "secret": "wrong"},
        "http_401",
    ),
    Case(
        "twilio",
        twilio.TwilioFake,
        lambda f: {**_TWILIO, "auth_token": twilio.AUTH_TOKEN, "api_url": f.url},
        lambda f: {**_TWILIO, "auth_token": "wrong", "api_url": f.url},
        "twilio_20003",
    ),
    Case(
        "ntfy",
        ntfy.NtfyFake,
        lambda f: {"server": f.url, "topic": "oncall", "token": ntfy.ACCESS_TOKEN},
        lambda f: {"server": f.url, "topic": "oncall", "token": "tk_wrong"},
        "ntfy_40101",
    ),
    Case(
        "pushover",
        pushover.PushoverFake,
        lambda f: {"token": pushover.APP_TOKEN, "user": pushover.USER_KEY, "api_url": f.url},
        lambda f: {"token": "wrong", "user": pushover.USER_KEY, "api_url": f.url},
        "pushover_token_invalid",
    ),
]
IDS = [c.type_name for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_success(case: Case, start_fake: StartFake, make_target: MakeTarget) -> None:
    fake = await start_fake(case.fake)
    target = make_target(case.type_name, **case.settings(fake))
    result = await target.send(make_notification("opened", tier=case.tier))
    assert not result.skipped
    assert len(fake.requests) == 1
    assert fake.requests[0].method == "POST"


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_rate_limited_is_retryable_with_retry_after(
    case: Case, start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake = await start_fake(case.fake)
    fake.fail_next(1, status=429, retry_after=7)
    target = make_target(case.type_name, **case.settings(fake))
    with pytest.raises(RetryableError) as err:
        await target.send(make_notification("opened", tier=case.tier))
    assert err.value.reason == "rate_limited"
    assert err.value.retry_after == 7.0
    if case.type_name == "slack":
        # The Slack target keeps the window itself (per method and channel): an attempt inside
        # it waits without a request, the worker reschedules it after the window.
        sent = len(fake.requests)
        with pytest.raises(RateLimited) as wait:
            await target.send(make_notification("opened", tier=case.tier))
        assert 0 < (wait.value.retry_after or 0) <= 7.0 and len(fake.requests) == sent
        return
    # and it recovers: the next attempt goes through
    await target.send(make_notification("opened", tier=case.tier))


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_server_errors_are_retryable(
    case: Case, status: int, start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake = await start_fake(case.fake)
    fake.fail_next(1, status=status, body="upstream trouble")
    target = make_target(case.type_name, **case.settings(fake))
    with pytest.raises(RetryableError) as err:
        await target.send(make_notification("opened", tier=case.tier))
    assert err.value.reason == f"http_{status}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_bad_credentials_are_permanent(
    case: Case, start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake = await start_fake(case.fake)
    target = make_target(case.type_name, **case.wrong(fake))
    with pytest.raises(PermanentError) as err:
        await target.send(make_notification("opened", tier=case.tier))
    assert err.value.reason == case.auth_reason


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_unreachable_is_retryable(
    case: Case, start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake = await start_fake(case.fake)
    settings = case.settings(fake)
    await fake.close()  # nothing listens on the port any more
    target = make_target(case.type_name, **settings)
    with pytest.raises(RetryableError) as err:
        await target.send(make_notification("opened", tier=case.tier))
    assert err.value.reason == "connection"


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_redirect_is_not_followed(
    case: Case, start_fake: StartFake, make_target: MakeTarget
) -> None:
    fake = await start_fake(case.fake)
    fake.fail_next(1, status=302, body="", headers={"Location": "/elsewhere"})
    target = make_target(case.type_name, **case.settings(fake))
    with pytest.raises(PermanentError) as err:
        await target.send(make_notification("opened", tier=case.tier))
    assert err.value.reason == "redirect"
    assert len(fake.requests) == 1


async def test_teams_200_with_error_text_is_an_error(
    teams: chat.TeamsFake, make_target: MakeTarget
) -> None:
    teams.fail_next(
        1,
        status=200,
        body="Webhook message delivery failed with error: "
        "Microsoft Teams endpoint returned HTTP error 400 with ContextId x",
    )
    target = make_target("msteams", url=teams.hook_url)
    with pytest.raises(PermanentError) as err:
        await target.send(make_notification())
    assert err.value.reason == "error_in_body"
    assert teams.cards == []


async def test_slack_ok_false_ratelimited_on_http_200(
    slack_api: slack.SlackAPIFake, make_target: MakeTarget
) -> None:
    slack_api.fail_next(
        1, status=200, body={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "3"}
    )
    target = make_target(
        "slack", token=slack.TOKEN, api_url=slack_api.url + "/api", channel="C0GENERAL"
    )
    with pytest.raises(RetryableError) as err:
        await target.send(make_notification())
    assert (err.value.reason, err.value.retry_after) == ("rate_limited", 3.0)


async def test_slack_ok_false_channel_not_found_is_permanent(
    slack_api: slack.SlackAPIFake, make_target: MakeTarget
) -> None:
    target = make_target("slack", token=slack.TOKEN, api_url=slack_api.url + "/api", channel="C404")
    with pytest.raises(PermanentError) as err:
        await target.send(make_notification())
    assert err.value.reason == "slack_channel_not_found"


async def test_discord_waits_and_never_pings(
    discord: chat.DiscordFake, make_target: MakeTarget
) -> None:
    target = make_target("discord", url=discord.hook_url)
    result = await target.send(make_notification())
    assert discord.requests[0].query["wait"] == "true"
    assert discord.messages[0]["allowed_mentions"] == {"parse": []}
    assert result.provider_ids == {"message_id": "1001"}


def test_discord_username_with_discord_is_rejected_at_config_time() -> None:
    from pydantic import ValidationError

    from bridge.targets.discord import DiscordConfig

    with pytest.raises(ValidationError, match="discord"):
        DiscordConfig.model_validate(
            {"url": "http://x/api/webhooks/1/2", "username": "My Discord Bot"}
        )


async def test_webhook_signature_and_idempotency_key(
    webhook: webhook.WebhookFake, make_target: MakeTarget
) -> None:
    target = make_target(
        "webhook",
        url=webhook.hook_url,
        secret=WEBHOOK_SECRET,
        headers={"X-Extra": "yes"},
        authorization="Bearer abc",
    )
    n = make_notification("opened")
    await target.send(n)
    await target.send(n)  # a resend after a crash: same key
    assert len(webhook.received) == 2 and len(webhook.deliveries) == 1
    req = webhook.requests[0]
    assert req.headers["Idempotency-Key"] == n.idempotency_key
    assert req.headers["X-Extra"] == "yes"
    assert req.headers["Authorization"] == "Bearer abc"
    assert req.headers["X-Incident-Bridge-Signature"].startswith("t=1795752400,v1=")
    body = req.json
    assert body["event"] == "opened" and body["incident"]["id"] == 42
    assert body["version"] == "1" and body["text"]


def test_webhook_signature_rejects_stale_and_tampered() -> None:
    from bridge.targets.webhook import sign, verify_signature

    header = sign("k", 1000, b"{}")
    assert verify_signature("k", header, b"{}", now=1100)
    assert not verify_signature("k", header, b"{}", now=2000)  # replayed later
    assert not verify_signature("k", header, b"{ }", now=1000)  # body changed
    assert not verify_signature("other", header, b"{}", now=1000)
    assert not verify_signature("k", "garbage", b"{}", now=1000)


async def test_a_large_error_body_is_read_whole(
    slack_api: slack.SlackAPIFake, make_target: MakeTarget
) -> None:
    slack_api.fail_next(
        1, status=200, body={"ok": False, "error": "invalid_auth", "pad": "x" * 300_000}
    )
    target = make_target(
        "slack", token=slack.TOKEN, api_url=slack_api.url + "/api", channel="C0GENERAL"
    )
    with pytest.raises(PermanentError) as err:
        await target.send(make_notification())
    assert err.value.reason == "slack_invalid_auth"
