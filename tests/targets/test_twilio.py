"""Twilio: a text and a call per page, the call's TwiML, errors by Twilio's codes, and the
callback's checks (token, signature, account, digits)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from bridge.core.paging import twilio_signature
from bridge.delivery.protocol import PermanentError, RateLimited
from bridge.targets.twilio import SMS_MAX, TwilioTarget
from tests.fakes.base import serving
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TwilioFake
from tests.targets.conftest import FixedClock, MakeTarget, incident, make_notification

CALLBACK = "https://bridge.example.com"
TO, FROM = "+14155550123", "+14155550100"


@pytest.fixture
async def twilio() -> Any:
    async with serving(TwilioFake()) as f:
        yield f


def _target(make_target: MakeTarget, fake: TwilioFake, **extra: Any) -> TwilioTarget:
    settings: dict[str, Any] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from": FROM,
        "to": TO,
        "api_url": fake.url,
        "callback_url": CALLBACK,
        "person": "amara",
        **extra,
    }
    target = make_target("twilio", "phone", **settings)
    assert isinstance(target, TwilioTarget)
    return target


async def test_a_page_texts_and_calls_with_press_1(
    twilio: TwilioFake, make_target: MakeTarget
) -> None:
    result = await _target(make_target, twilio).send(make_notification("opened"))
    (sms,) = twilio.messages
    assert sms["To"] == TO and sms["From"] == FROM
    assert sms["Body"].startswith("Incident opened: [sev2] #42 High error rate on checkout")
    (call,) = twilio.calls.values()
    assert call.to == TO
    assert "High error rate on checkout" in call.said[0] and "Press 1" in call.said[1]
    assert call.action is not None and call.action.startswith(
        f"{CALLBACK}/api/v1/callbacks/twilio/"
    )
    assert set(result.provider_ids) == {"message_sid", "call_sid"}


async def test_only_pages_while_nobody_acknowledged(
    twilio: TwilioFake, make_target: MakeTarget
) -> None:
    target = _target(make_target, twilio)
    assert (await target.send(make_notification("timeline"))).skipped
    acked = incident(status="acknowledged")
    assert (await target.send(make_notification("escalated", inc=acked))).skipped
    assert twilio.requests == []


async def test_call_only_without_callback_reads_twice_and_offers_nothing(
    twilio: TwilioFake, make_target: MakeTarget
) -> None:
    await _target(make_target, twilio, mode="call", callback_url=None).send(make_notification())
    (call,) = twilio.calls.values()
    assert call.action is None and len(call.said) == 2 and twilio.messages == []


async def test_a_long_text_is_cut_to_twilios_limit(
    twilio: TwilioFake, make_target: MakeTarget
) -> None:
    long = incident(title="x" * 3000)
    await _target(make_target, twilio, mode="sms").send(make_notification(inc=long))
    assert len(twilio.messages[0]["Body"]) == SMS_MAX


async def test_twilio_codes_are_the_reasons_and_secrets_stay_out(
    twilio: TwilioFake, make_target: MakeTarget
) -> None:
    twilio.fail_next(
        status=400, body={"code": 21211, "message": f"Invalid 'To' Phone Number: {TO}"}
    )
    with pytest.raises(PermanentError) as err:
        await _target(make_target, twilio).send(make_notification())
    assert err.value.reason == "twilio_21211" and TO not in str(err.value)
    wrong = _target(make_target, twilio, auth_token="wrongTOKENsecret")
    with pytest.raises(PermanentError) as err:
        await wrong.send(make_notification())
    assert err.value.reason == "twilio_20003"
    assert "wrongTOKENsecret" not in repr(err.value) + str(err.value)


async def test_rate_limited_with_retry_after(twilio: TwilioFake, make_target: MakeTarget) -> None:
    twilio.fail_next(status=429, retry_after=7)
    with pytest.raises(RateLimited) as err:
        await _target(make_target, twilio, mode="sms").send(make_notification())
    assert err.value.retry_after == 7


async def test_a_failed_call_keeps_the_text_sent(
    twilio: TwilioFake, make_target: MakeTarget
) -> None:
    target = _target(make_target, twilio)
    twilio.fail_next(status=503, path=f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json")
    n = make_notification()
    with pytest.raises(Exception) as err:
        await target.send(n)
    state = getattr(err.value, "state", None)
    assert state == {"page": n.id, "done": [f"sms {TO}"]}
    await target.send(make_notification(state=state))
    assert len(twilio.messages) == 1 and len(twilio.calls) == 1


def _signed(url: str, form: dict[str, str], token: str = AUTH_TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": twilio_signature(token, url, form)}


async def test_callback_checks_token_signature_and_account(
    twilio: TwilioFake, make_target: MakeTarget, fixed_clock: FixedClock
) -> None:
    target = _target(make_target, twilio)
    await target.send(make_notification())
    (call,) = twilio.calls.values()
    assert call.action is not None
    token = urlsplit(call.action).path.rsplit("/", 1)[1]
    form = {"AccountSid": ACCOUNT_SID, "CallSid": call.sid, "Digits": "1"}

    answer = await target.callback(token, form, _signed(call.action, form))
    assert answer.ack is not None and answer.ack.incident == 42
    assert answer.ack.person == "amara" and answer.ack.key == f"twilio {call.sid}"
    assert "pressed 1" in answer.ack.how and TO not in answer.ack.how

    forged = await target.callback(token, form, _signed(call.action, form, "another-token"))
    assert forged.status == 401 and forged.ack is None
    other = {**form, "AccountSid": "AC" + "f" * 32}
    assert (await target.callback(token, other, _signed(call.action, other))).status == 401
    tampered = token.replace(token[3], "A" if token[3] != "A" else "B", 1)
    assert (await target.callback(tampered, form, _signed(call.action, form))).status == 401
    another = _target(make_target, twilio, person="bjorn")
    another.name = "pager"
    assert (await another.callback(token, form, _signed(call.action, form))).status == 401

    two = {**form, "Digits": "2"}
    again = await target.callback(token, two, _signed(call.action, two))
    assert again.ack is None and "<Gather" in again.body and "You pressed 2" in again.body

    fixed_clock.now += 86_400 + 1  # the link expires after ack_valid_s
    assert (await target.callback(token, form, _signed(call.action, form))).status == 401


def _step(handles: dict[str, dict[str, str]]) -> tuple[dict[str, Any], ...]:
    """An escalation step's timeline entry as the scheduler writes it (core/escalation)."""
    data = {"level": 1, "people": list(handles), "handles": handles, "targets": ["phone"]}
    return ({"kind": "escalation_step", "text": "Escalation level 1", "data": data},)


async def test_an_escalation_step_calls_the_people_it_reaches_at_their_numbers(
    twilio: TwilioFake, make_target: MakeTarget
) -> None:
    target = _target(make_target, twilio, mode="call", to=None, person=None)
    handles = {
        "bjorn": {"phone": "+14155550177", "slack": "U0BJORN"},
        "chidi": {"twilio": "+14155550188"},  # by the target's type
        "dana": {"phone": "not a number"},  # refused, and not repeated in the log
        "erin": {"slack": "U0ERIN"},  # not reached through this target
    }
    await target.send(make_notification("escalated", events=_step(handles)))
    calls = sorted(twilio.calls.values(), key=lambda c: c.to)
    assert [c.to for c in calls] == ["+14155550177", "+14155550188"]
    tokens = [urlsplit(c.action or "").path.rsplit("/", 1)[1] for c in calls]
    assert [target.verify_token(t).person for t in tokens] == ["bjorn", "chidi"]  # type: ignore[union-attr]


async def test_nobody_to_call_is_permanent(twilio: TwilioFake, make_target: MakeTarget) -> None:
    target = _target(make_target, twilio, to=None)
    with pytest.raises(PermanentError, match="no_recipient"):
        await target.send(make_notification("escalated"))
