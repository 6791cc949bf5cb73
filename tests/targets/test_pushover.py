"""Pushover: priority from the severity, emergency with retry/expire and a receipt, the
receipt cancelled once acknowledged elsewhere, errors naming the bad parameter, and the
callback confirmed through the receipts API."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.delivery.protocol import PermanentError, RateLimited
from bridge.targets.pushover import PushoverTarget
from tests.fakes.base import serving
from tests.fakes.pushover import APP_TOKEN, USER_KEY, PushoverFake
from tests.targets.conftest import MakeTarget, incident, make_notification

CALLBACK = "https://bridge.example.com"


@pytest.fixture
async def pushover() -> Any:
    async with serving(PushoverFake()) as f:
        yield f


def _target(make_target: MakeTarget, fake: PushoverFake, **extra: Any) -> PushoverTarget:
    settings: dict[str, Any] = {
        "token": APP_TOKEN,
        "user": USER_KEY,
        "api_url": fake.url,
        "callback_url": CALLBACK,
        "person": "amara",
        **extra,
    }
    target = make_target("pushover", "push", **settings)
    assert isinstance(target, PushoverTarget)
    return target


async def test_sev2_is_high_priority_without_receipt(
    pushover: PushoverFake, make_target: MakeTarget
) -> None:
    result = await _target(make_target, pushover).send(make_notification("opened"))
    (msg,) = pushover.messages
    assert msg["priority"] == "1" and "retry" not in msg and "callback" not in msg
    assert msg["title"] == "[sev2] #42 High error rate on checkout"
    assert msg["url"] == incident()["url"] and "receipts" not in result.state


async def test_sev1_is_an_emergency_with_a_receipt_cancelled_on_acknowledge(
    pushover: PushoverFake, make_target: MakeTarget
) -> None:
    target = _target(make_target, pushover, retry_s=45, expire_s=1800)
    sev1 = incident(severity="sev1")
    result = await target.send(make_notification("opened", inc=sev1))
    (msg,) = pushover.messages
    assert (msg["priority"], msg["retry"], msg["expire"]) == ("2", "45", "1800")
    assert msg["callback"].startswith(f"{CALLBACK}/api/v1/callbacks/pushover/")
    (receipt,) = result.state["receipts"]
    assert pushover.receipts[receipt].callback == msg["callback"]
    acked = incident(severity="sev1", status="acknowledged")
    done = await target.send(make_notification("acknowledged", inc=acked, state=dict(result.state)))
    assert pushover.receipts[receipt].cancelled and "receipts" not in done.state


async def test_errors_name_the_parameter_and_hide_the_token(
    pushover: PushoverFake, make_target: MakeTarget
) -> None:
    with pytest.raises(PermanentError) as err:
        await _target(make_target, pushover, user="x" * 30).send(make_notification())
    assert err.value.reason == "pushover_user_invalid"
    with pytest.raises(PermanentError) as err:
        await _target(make_target, pushover, token="wrongTOKENsecret").send(make_notification())
    assert err.value.reason == "pushover_token_invalid" and "wrongTOKEN" not in str(err.value)
    pushover.fail_next(status=429, retry_after=60)
    with pytest.raises(RateLimited):
        await _target(make_target, pushover).send(make_notification())


async def test_long_text_is_cut_to_the_limits(
    pushover: PushoverFake, make_target: MakeTarget
) -> None:
    await _target(make_target, pushover).send(make_notification(inc=incident(title="y" * 2000)))
    assert len(pushover.messages[0]["message"]) <= 1024
    assert len(pushover.messages[0]["title"]) <= 250


async def test_the_callback_is_confirmed_with_the_receipts_api(
    pushover: PushoverFake, make_target: MakeTarget
) -> None:
    target = _target(make_target, pushover)
    result = await target.send(make_notification(inc=incident(severity="sev1")))
    (receipt,) = result.state["receipts"]
    token = pushover.messages[0]["callback"].rsplit("/", 1)[1]
    form = {"receipt": receipt, "acknowledged": "1"}
    # a post claiming an acknowledgement Pushover does not know of
    assert (await target.callback(token, form, {})).status == 409
    pushover.receipts[receipt].acknowledged = 1
    pushover.receipts[receipt].device = "pixel8"
    answer = await target.callback(token, form, {})
    assert answer.ack is not None and answer.ack.key == f"pushover {receipt}"
    assert answer.ack.how == "from Pushover on device pixel8"
    assert (await target.callback(token, {"receipt": "x"}, {})).status == 400
    assert (await target.callback(token + "x", form, {})).status == 401
