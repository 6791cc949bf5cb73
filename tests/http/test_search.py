"""GET /api/v1/search: read like the other reads (auth, unknown parameters), a 400 naming ``q``
for what cannot be searched, never a 500 for what a person types, and hits as documented."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.core.secrets import Secret
from bridge.http.search import SearchAnswer
from bridge.indexer import Indexer
from bridge.service import AppState
from tests.conftest import BOTH_BACKENDS, WRITE, MakeClient, fixture_bytes

# Each test's service runs on SQLite and on PostgreSQL (tests/conftest.py: service_db).
pytestmark = BOTH_BACKENDS


async def indexed(client: Any) -> None:
    """What the indexer loop does after a write, once."""
    state: AppState = client.server.app[AppState.KEY]
    while (await Indexer(state).tick()).more:
        pass


async def opened(client: Any) -> int:
    hook = await client.post("/api/v1/alerts", data=fixture_bytes("firing-group-bearer.json"))
    assert hook.status == 200
    incident_id: int = (await hook.json())["incidents"][0]["id"]
    return incident_id


async def test_a_note_is_found_with_its_incident_and_a_snippet(make_client: MakeClient) -> None:
    client: Any = await make_client()
    incident_id = await opened(client)
    note = await client.post(
        f"/api/v1/incidents/{incident_id}/notes",
        json={"text": "the canary showed a zwieback regression in the payment path"},
        headers=WRITE,
    )
    assert note.status == 200
    await indexed(client)
    resp = await client.get("/api/v1/search", params={"q": "zwieback"})
    assert resp.status == 200 and resp.content_type == "application/json"
    answer = SearchAnswer.model_validate(await resp.json())
    assert answer.query == "zwieback"
    (hit,) = answer.results
    assert (hit.incident_id, hit.kind, hit.status, hit.severity) == (
        incident_id,
        "note",
        "triggered",
        "sev1",
    )
    assert hit.title == "5xx ratio above 5%" and "«zwieback»" in hit.snippet
    # A label of its alerts finds the incident's own document.
    labels = await (await client.get("/api/v1/search?q=severity critical")).json()
    assert [(h["incident_id"], h["kind"]) for h in labels["results"]] == [(incident_id, "incident")]
    none = await client.get("/api/v1/search?q=nothinglikethis&limit=3")
    assert (await none.json()) == {"query": "nothinglikethis", "results": []}


async def test_reads_need_a_token_where_reads_are_closed(make_client: MakeClient) -> None:
    client: Any = await make_client(host="0.0.0.0", webhook_token=Secret("hook"))
    denied = await client.get("/api/v1/search?q=x")
    assert denied.status == 401 and "WWW-Authenticate" in denied.headers
    assert (await client.get("/api/v1/search?q=x", headers=WRITE)).status == 200


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "q"),
        ("?q=", "q"),
        ("?q=%20%20", "q"),
        ("?q=a&q=b", "q"),
        ("?q=-x", "q"),
        ("?q=*", "q"),
        ("?q=%22%22", "q"),
        ("?q=" + "x" * 501, "q"),
        ("?q=x&limit=0", "limit"),
        ("?q=x&limit=101", "limit"),
        ("?q=x&limit=ten", "limit"),
        ("?q=x&query=y", "query"),
        ("?q=x&status=triggered", "status"),
    ],
)
async def test_what_cannot_be_searched_is_a_400_naming_the_parameter(
    make_client: MakeClient, query: str, field: str
) -> None:
    client: Any = await make_client()
    resp = await client.get("/api/v1/search" + query)
    assert resp.status == 400
    body = await resp.json()
    assert body["field"] == field and body["error"]


@pytest.mark.parametrize(
    "q",
    ['"', 'a"b', "-x y", "a:b", "x*", "col:(a OR b)", "NEAR(a b)", "a AND", "^x", "{a}: b",
     "'; --", "%", "\\", "ünï", "日本語", "OR OR y"],
)  # fmt: skip
async def test_nothing_a_person_types_is_a_500(make_client: MakeClient, q: str) -> None:
    client: Any = await make_client()
    await opened(client)
    await indexed(client)
    resp = await client.get("/api/v1/search", params={"q": q})
    assert resp.status in (200, 400), await resp.text()
    if resp.status == 200:
        SearchAnswer.model_validate(await resp.json())
    else:
        assert (await resp.json())["field"] == "q"
