"""ntfy: headers of a page (title, priority from the severity, tags, click, the Acknowledge
action), auth, errors by ntfy's codes, and the action's token."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from bridge.delivery.protocol import PermanentError, RateLimited
from bridge.targets.ntfy import NtfyConfig, NtfyTarget
from tests.fakes.base import serving
from tests.fakes.ntfy import ACCESS_TOKEN, NtfyFake
from tests.targets.conftest import MakeTarget, incident, make_notification

CALLBACK = "https://bridge.example.com"
SECRET = "ntfyCALLBACKsecret0123"


@pytest.fixture
async def ntfy() -> Any:
    async with serving(NtfyFake()) as f:
        yield f


def _target(make_target: MakeTarget, fake: NtfyFake, **extra: Any) -> NtfyTarget:
    settings: dict[str, Any] = {
        "server": fake.url,
        "topic": "oncall-payments",
        "token": ACCESS_TOKEN,
        "callback_url": CALLBACK,
        "callback_secret": SECRET,
        "person": "amara",
        **extra,
    }
    target = make_target("ntfy", "push", **settings)
    assert isinstance(target, NtfyTarget)
    return target


async def test_a_page_with_title_priority_click_and_acknowledge(
    ntfy: NtfyFake, make_target: MakeTarget
) -> None:
    inc = incident(severity="sev1", title="Paiement refusé à 100 %")
    result = await _target(make_target, ntfy).send(make_notification("opened", inc=inc))
    (msg,) = ntfy.messages
    assert msg["topic"] == "oncall-payments" and msg["priority"] == 5
    assert msg["title"] == "[sev1] #42 Paiement refusé à 100 %"  # RFC 2047 in the header
    assert msg["tags"] == ["rotating_light"] and msg["click"] == inc["url"]
    (action,) = msg["actions"]
    assert action["action"] == "http" and action["label"] == "Acknowledge"
    assert action["method"] == "POST" and action["url"].startswith(
        f"{CALLBACK}/api/v1/callbacks/ntfy/"
    )
    assert result.provider_ids == {"message_id": msg["id"]}


async def test_priority_follows_the_severity_and_pages_only(
    ntfy: NtfyFake, make_target: MakeTarget
) -> None:
    target = _target(make_target, ntfy)
    await target.send(make_notification("escalated", inc=incident(severity="sev3")))
    assert ntfy.messages[0]["priority"] == 3
    assert (await target.send(make_notification("update"))).skipped
    assert len(ntfy.messages) == 1


async def test_auth_and_errors(ntfy: NtfyFake, make_target: MakeTarget) -> None:
    with pytest.raises(PermanentError) as err:
        await _target(make_target, ntfy, token="tk_wrongSECRET").send(make_notification())
    assert err.value.reason == "ntfy_40101" and "wrongSECRET" not in str(err.value)
    ntfy.access_token, ntfy.basic = None, ("pager", "s3cretPASS")
    await _target(make_target, ntfy, token=None, username="pager", password="s3cretPASS").send(
        make_notification()
    )
    assert len(ntfy.messages) == 1
    ntfy.fail_next(status=429, retry_after=30)
    with pytest.raises(RateLimited) as limited:
        await _target(make_target, ntfy, token=None, username="pager", password="s3cretPASS").send(
            make_notification()
        )
    assert limited.value.retry_after == 30


async def test_a_long_body_is_cut_to_ntfys_limit(ntfy: NtfyFake, make_target: MakeTarget) -> None:
    await _target(make_target, ntfy).send(make_notification(inc=incident(title="é" * 5000)))
    assert len(ntfy.messages[0]["message"].encode()) <= 4096


async def test_the_action_token_is_the_proof(ntfy: NtfyFake, make_target: MakeTarget) -> None:
    target = _target(make_target, ntfy)
    await target.send(make_notification())
    token = urlsplit(ntfy.messages[0]["actions"][0]["url"]).path.rsplit("/", 1)[1]
    answer = await target.callback(token, {}, {})
    assert answer.ack is not None and answer.ack.person == "amara" and answer.ack.incident == 42
    other = _target(make_target, ntfy, callback_secret="anotherSECRET")
    assert (await other.callback(token, {}, {})).status == 401


def test_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="callback_secret"):
        NtfyConfig.model_validate({"topic": "t", "callback_url": CALLBACK})
    with pytest.raises(ValidationError, match="not both"):
        NtfyConfig.model_validate({"topic": "t", "token": "a", "username": "u", "password": "p"})
    with pytest.raises(ValidationError, match="1 to 5"):
        NtfyConfig.model_validate({"topic": "t", "priority_map": {"sev1": 9}})


async def test_an_escalation_step_pushes_to_each_persons_topic(
    ntfy: NtfyFake, make_target: MakeTarget
) -> None:
    handles = {"bjorn": {"push": "oncall-bjorn"}, "chidi": {"ntfy": "oncall-chidi"}}
    data = {"handles": handles, "people": list(handles)}
    events = ({"kind": "escalation_step", "text": "Escalation level 1", "data": data},)
    target = _target(make_target, ntfy)
    result = await target.send(make_notification("escalated", events=events))
    assert sorted(m["topic"] for m in ntfy.messages) == ["oncall-bjorn", "oncall-chidi"]
    assert result.state["done"] == ["oncall-bjorn", "oncall-chidi"]
    for message in ntfy.messages:
        token = urlsplit(message["actions"][0]["url"]).path.rsplit("/", 1)[1]
        page = target.verify_token(token)
        assert page is not None and page.person == message["topic"].removeprefix("oncall-")
