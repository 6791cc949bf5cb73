"""A NUL (U+0000) in a webhook's or a person's text: PostgreSQL's text cannot hold it, so it is
kept as U+FFFD on both backends; the webhook is answered 200 (Alertmanager drops a 4xx for good)
and the note is written, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

from bridge.core.jsontext import without_nul
from bridge.core.secrets import Secret
from tests.conftest import BOTH_BACKENDS, WRITE, MakeClient, fixture_body

pytestmark = BOTH_BACKENDS
TOKEN = "s3cret-token"


async def test_a_nul_in_a_label_and_a_note_is_kept_as_a_replacement_character(
    make_client: MakeClient,
) -> None:
    client: Any = await make_client(webhook_token=Secret(TOKEN))
    body = fixture_body("firing-group-bearer.json")
    body["alerts"][0]["labels"]["pod"] = "web\x00-1"
    body["alerts"][0]["annotations"]["summary"] = "nul \x00 here"
    raw = json.dumps(body).encode()
    assert b"\\u0000" in raw
    resp = await client.post(
        "/api/v1/alerts", data=raw,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )  # fmt: skip
    assert resp.status == 200, await resp.text()
    (opened,) = (await resp.json())["incidents"]
    shown = await (await client.get(f"/api/v1/incidents/{opened['id']}", headers=WRITE)).json()
    assert "web\ufffd-1" in json.dumps(shown, ensure_ascii=False)
    note = json.dumps({"text": "a \x00 b"}).encode()
    wrote = await client.post(
        f"/api/v1/incidents/{opened['id']}/notes", data=note,
        headers={**WRITE, "Content-Type": "application/json"},
    )  # fmt: skip
    assert wrote.status == 200, await wrote.text()
    shown = await (await client.get(f"/api/v1/incidents/{opened['id']}", headers=WRITE)).json()
    assert any("a \ufffd b" in e["text"] for e in shown["timeline"])


def test_only_an_escape_of_nul_is_replaced() -> None:
    assert without_nul(b'{"a": "x\\u0000y"}') == b'{"a": "x\\ufffdy"}'
    assert without_nul(b'{"a": "x\\\\u0000y"}') == b'{"a": "x\\\\u0000y"}'  # a literal text
    assert without_nul(b'{"a": "x\\\\\\u0000y"}') == b'{"a": "x\\\\\\ufffdy"}'
    plain = b'{"a": 1}'
    assert without_nul(plain) is plain


def test_a_chat_form_keeps_a_nul_as_a_replacement_character() -> None:
    from bridge.http.chat.common import form_fields

    assert form_fields(b"text=note%3A+a%00b&user_id=U1") == {
        "text": "note: a\ufffdb",
        "user_id": "U1",
    }
