"""Who a change is recorded as: a token's own name, unless the token may act for others (the
API token the CLI uses for people, and named tokens of scope ``act-as``). A named ``write``
token that names another actor is a 403 naming ``actor``, and nothing is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.config import ApiToken, ConfigError, read_api_tokens
from bridge.core.secrets import Secret
from tests.conftest import BOTH_BACKENDS, WRITE, MakeClient
from tests.http.test_actions import opened, timeline

# Each test's service runs on SQLite and on PostgreSQL (tests/conftest.py: service_db).
pytestmark = BOTH_BACKENDS

ALICE = "alice-token-0123456789"
BOT = "chatops-token-0123456789"
TOKENS = (
    ApiToken("alice", "write", Secret(ALICE)),
    ApiToken("chatops", "write", Secret(BOT), act_as=True),
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client(make_client: MakeClient) -> Any:
    return await make_client(api_tokens=TOKENS)


async def test_a_write_token_cannot_write_as_someone_else(client: Any) -> None:
    i = await opened(client)
    before = await timeline(client, i)
    for suffix, body in [
        ("notes", {"text": "I did it", "actor": "bob"}),
        ("acknowledge", {"actor": "bob"}),
        ("roles", {"role": "commander", "person": "alice", "actor": "bob"}),
    ]:
        resp = await client.post(
            f"/api/v1/incidents/{i}/{suffix}", json=body, headers=bearer(ALICE)
        )
        assert resp.status == 403, (suffix, await resp.text())
        answer = await resp.json()
        assert answer["field"] == "actor" and "'alice'" in answer["error"], answer
        assert "act-as" in answer["error"]
    assert await timeline(client, i) == before
    # its own name, given or not, is fine
    for body in ({"text": "mine", "actor": "alice"}, {"text": "mine too"}):
        resp = await client.post(f"/api/v1/incidents/{i}/notes", json=body, headers=bearer(ALICE))
        assert resp.status == 200 and (await resp.json())["events"][0]["actor"] == "alice"


async def test_the_postmortem_author_and_publisher_are_the_token_unless_it_may_act_as(
    client: Any,
) -> None:
    i = await opened(client)
    base = f"/api/v1/incidents/{i}/postmortem"
    resp = await client.post(
        base, json={"sections": {"summary": "x"}, "actor": "bob"}, headers=bearer(ALICE)
    )
    assert resp.status == 403 and (await resp.json())["field"] == "actor"
    versions = await (await client.get(f"{base}/versions", headers=WRITE)).json()
    assert versions["versions"] == []
    resp = await client.post(base, json={"sections": {"summary": "x"}}, headers=bearer(ALICE))
    assert resp.status == 200 and (await resp.json())["version"]["author"] == "alice"
    await client.post(f"/api/v1/incidents/{i}/resolve", json={}, headers=WRITE)
    resp = await client.post(f"{base}/publish", json={"actor": "bob"}, headers=bearer(ALICE))
    assert resp.status == 403 and (await resp.json())["field"] == "actor"
    versions = await (await client.get(f"{base}/versions", headers=WRITE)).json()
    assert versions["publications"] == []
    resp = await client.post(f"{base}/publish", json={"actor": "dana"}, headers=bearer(BOT))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["publication"]["published_by"] == "dana"


async def test_act_as_tokens_and_the_api_token_may_name_the_actor(client: Any) -> None:
    i = await opened(client)
    for token, actor in [(BOT, "bob"), (WRITE["Authorization"].split()[1], "carol")]:
        resp = await client.post(
            f"/api/v1/incidents/{i}/notes",
            json={"text": f"for {actor}", "actor": actor},
            headers=bearer(token),
        )
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["events"][0]["actor"] == actor
    resp = await client.post(
        f"/api/v1/incidents/{i}/notes", json={"text": "me"}, headers=bearer(BOT)
    )
    assert (await resp.json())["events"][0]["actor"] == "chatops"


def test_the_tokens_file_takes_the_act_as_scope(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"alice write {ALICE}\nchatops act-as {BOT}\ngrafana read {'r' * 16}\n")
    tokens = read_api_tokens(str(path))
    assert [(t.name, t.scope, t.act_as) for t in tokens] == [
        ("alice", "write", False),
        ("chatops", "write", True),
        ("grafana", "read", False),
    ]
    path.write_text(f"x admin {BOT}\n")
    with pytest.raises(ConfigError, match=r"tokens:1: scope 'admin' is not read, write or act-as"):
        read_api_tokens(str(path))
