"""The incident page messages link to: readable, escaped, authorized like the read API."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from bridge.app import incident_links
from bridge.config import Settings
from bridge.core.secrets import Secret
from tests.conftest import WRITE, MakeClient, fixture_body

TOKEN = "pages-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_the_incident_page_is_escaped_html(make_client: MakeClient) -> None:
    client: Any = await make_client(webhook_token=Secret(TOKEN))
    body = fixture_body("firing-group-bearer.json")
    body["alerts"][0]["labels"]["instance"] = "<script>alert(1)</script>"
    body["alerts"][0]["generatorURL"] = "javascript:alert(2)"
    assert (await client.post("/api/v1/alerts", data=json.dumps(body), headers=AUTH)).status == 200
    resp = await client.get("/incidents/1")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    page = await resp.text()
    assert "HighErrorRate" in page and "Timeline" in page and "unassigned" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "javascript:" not in page
    assert 'href="https://runbooks.example.com/high-error-rate"' in page
    assert (await client.get("/incidents/2")).status == 404
    assert (await client.get("/incidents/x")).status == 404


async def test_the_page_needs_a_token_where_the_read_api_does(make_client: MakeClient) -> None:
    client: Any = await make_client(host="0.0.0.0", webhook_token=Secret(TOKEN))
    assert (await client.get("/incidents/1")).status == 401
    assert (await client.get("/incidents/1", headers=WRITE)).status == 404


def test_links_point_at_the_page_and_never_at_a_wildcard_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    link = incident_links(Settings(external_url="https://bridge.example/"))
    assert link is not None and link(7) == "https://bridge.example/incidents/7"
    local = incident_links(Settings(host="127.0.0.1", port=9096))
    assert local is not None and local(7) == "http://127.0.0.1:9096/incidents/7"
    with caplog.at_level(logging.WARNING):
        assert incident_links(Settings(host="0.0.0.0", port=9096)) is None
    assert "--external-url" in caplog.text
