"""No secret (token, webhook URL, routing key, password) shows in an error, a repr or a log
line produced by the targets, whatever goes wrong."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import pytest

from bridge.targets import REGISTRY, DeliveryError, Target
from tests.fakes import chat, ntfy, paging, pushover, slack, twilio, webhook
from tests.fakes.smtp import PASSWORD, SMTPFake, free_port
from tests.targets.conftest import MakeTarget, StartFake, incident, make_notification
from tests.targets.test_http_targets import CASES, IDS, Case

SECRETS = [
    slack.TOKEN,
    slack.WEBHOOK_PATH.rsplit("/", 1)[1],
    chat.TEAMS_SIG,
    chat.MATTERMOST_HOOK,
    chat.DISCORD_TOKEN,
    chat.TELEGRAM_TOKEN,
    paging.ROUTING_KEY,
    paging.GENIE_KEY,
    webhook.SECRET,
    webhook.PATH.rsplit("/", 1)[1],
    PASSWORD,
    twilio.AUTH_TOKEN,
    ntfy.ACCESS_TOKEN,
    pushover.APP_TOKEN,
]


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"secret {secret[:6]}... leaked: {text[:300]}"


def describe(err: BaseException) -> str:
    return "\n".join([str(err), repr(err), *traceback.format_exception(err)])


async def _failures(target: Target, fake: Any) -> list[DeliveryError]:
    errors: list[DeliveryError] = []
    for status in (500, 429, 400, 401, 302):
        fake.fail_next(1, status=status, body="error body", retry_after=1)
        try:
            await target.send(make_notification("opened", tier="stakeholders"))
        except DeliveryError as exc:
            errors.append(exc)
    await fake.close()
    try:
        await target.send(make_notification("opened", tier="stakeholders"))
    except DeliveryError as exc:
        errors.append(exc)
    return errors


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_no_secret_in_errors_reprs_or_logs(
    case: Case, start_fake: StartFake, make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    fake = await start_fake(case.fake)
    settings = case.settings(fake)
    target = make_target(case.type_name, **settings)
    with caplog.at_level(logging.DEBUG):
        await target.send(make_notification("opened", tier="stakeholders"))
        errors = await _failures(target, fake)
    assert len(errors) == 6
    for err in errors:
        assert_clean(describe(err))
    assert_clean(repr(target) + repr(target.config) + str(target.config.model_dump()))
    assert_clean(target.config.model_dump_json())
    assert_clean("\n".join(r.getMessage() for r in caplog.records))


@pytest.mark.parametrize(
    "type_name", ["webhook", "slack_webhook", "msteams", "mattermost", "discord"]
)
async def test_invalid_url_does_not_echo_the_url(type_name: str, make_target: MakeTarget) -> None:
    target = make_target(type_name, url=f"http://[::1/{chat.DISCORD_TOKEN}")
    with pytest.raises(DeliveryError) as err:
        await target.send(make_notification())
    assert err.value.reason == "invalid_url"
    assert_clean(describe(err.value))


async def test_telegram_token_in_the_url_never_shows(
    make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    target = make_target(
        "telegram",
        token=chat.TELEGRAM_TOKEN,
        api_url=f"http://127.0.0.1:{free_port()}",
        chat_id=1,
        timeout_s=1,
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(DeliveryError) as err:
        await target.send(make_notification())
    assert_clean(describe(err.value) + caplog.text)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_smtp_password_never_shows(
    make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    fake = SMTPFake(auth=True).start()
    try:
        target = make_target(
            "email",
            host="127.0.0.1",
            port=fake.port,
            security="none",
            sender="b@example.com",
            to=["o@example.com"],
            username="bridge",
            password=PASSWORD + "x",
        )
        with caplog.at_level(logging.DEBUG), pytest.raises(DeliveryError) as err:
            await target.send(make_notification())
        assert_clean(describe(err.value) + caplog.text + repr(target.config))
    finally:
        fake.stop()


async def test_template_errors_do_not_leak(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    from bridge.delivery.templates import Renderer
    from bridge.targets import TargetDeps

    (tmp_path / "slack").mkdir()
    (tmp_path / "slack" / "default.j2").write_text("{{ incident.nope }}")
    deps = TargetDeps(renderer=Renderer(tmp_path))
    target = REGISTRY["slack"].from_settings("s", {"token": slack.TOKEN, "channel": "C1"}, deps)
    with caplog.at_level(logging.DEBUG), pytest.raises(DeliveryError) as err:
        await target.send(make_notification(inc=incident()))
    assert err.value.reason == "template_error"
    assert "default.j2:1" in caplog.text  # the log names the file and line
    assert_clean(describe(err.value) + caplog.text)
