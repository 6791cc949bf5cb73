"""The paging callback route's refusals: nothing is done and the answer names the field."""

from __future__ import annotations

from typing import Any

from bridge.core.paging import PageToken, callback_key, encode_token
from tests.conftest import MakeClient

PATH = "/api/v1/callbacks"


def token(target: str = "phone") -> str:
    page = PageToken(target=target, incident=1, person="amara", page=1, expires=4_000_000_000)
    return encode_token(page, callback_key("twilio", target, "some-auth-token"))


async def test_an_unknown_type_is_a_404_naming_it(make_client: MakeClient) -> None:
    client: Any = await make_client()
    resp = await client.post(f"{PATH}/sms/{token()}")
    assert resp.status == 404 and (await resp.json())["field"] == "type"


async def test_a_token_for_a_target_the_rules_do_not_have_is_a_401(
    make_client: MakeClient,
) -> None:
    client: Any = await make_client()
    for bad in (token(), token("console"), "garbage", "a.b"):
        resp = await client.post(f"{PATH}/twilio/{bad}", data={"Digits": "1"})
        body = await resp.json()
        assert resp.status == 401 and body == {
            "error": "unknown or expired token",
            "field": "token",
        }


async def test_a_body_too_large_or_not_a_form_is_refused(make_client: MakeClient) -> None:
    client: Any = await make_client()
    resp = await client.post(f"{PATH}/twilio/{token()}", data={"Digits": "1" * 20_000})
    assert resp.status == 413
    resp = await client.post(f"{PATH}/pushover/{token()}", json={"receipt": "x"})
    assert resp.status == 415
