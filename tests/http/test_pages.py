"""The web pages over HTTP (the browser tests in tests/browser/ drive them in Chromium): sign-in
and its cookie, CSRF on every form, read-only viewers, escaping, the forms acting through
service.act exactly once, refusals shown on the page, the live stream and its fragments."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import pytest

from bridge.app import incident_links
from bridge.config import ApiToken, Settings
from bridge.core.secrets import Secret
from tests.conftest import BOTH_BACKENDS, WRITE, MakeClient, fixture_body

# Each test's service runs on SQLite and on PostgreSQL (tests/conftest.py: service_db).
pytestmark = BOTH_BACKENDS

TOKEN = "pages-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ALICE = "alice-write-token-0123456789"
CAROL = "carol-read-token-0123456789"
NAMED = (
    ApiToken("alice", "write", Secret(ALICE)),
    ApiToken("carol", "read", Secret(CAROL)),
)


async def opened(client: Any, mutate: Any = None) -> int:
    body = fixture_body("firing-group-bearer.json")
    if mutate is not None:
        mutate(body)
    resp = await client.post("/api/v1/alerts", data=json.dumps(body), headers=AUTH)
    assert resp.status == 200, await resp.text()
    return int((await resp.json())["incidents"][0]["id"])


async def sign_in(client: Any, token: str, next_: str = "/") -> Any:
    return await client.post("/login", data={"token": token, "next": next_}, allow_redirects=False)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no form with a CSRF token on the page"
    return found.group(1)


async def timeline(client: Any, incident: int) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/v1/incidents/{incident}", headers=WRITE)
    return list((await resp.json())["timeline"])


async def test_the_incident_page_is_escaped_html_with_a_strict_policy(
    make_client: MakeClient,
) -> None:
    client: Any = await make_client(webhook_token=Secret(TOKEN))

    def hostile(body: dict[str, Any]) -> None:
        body["alerts"][0]["labels"]["instance"] = "<script>alert(1)</script>"
        body["alerts"][0]["labels"]["note"] = "{{ 7*7 }} {% raw %}"
        body["alerts"][0]["generatorURL"] = "javascript:alert(2)"

    incident = await opened(client, hostile)
    resp = await client.get(f"/incidents/{incident}")
    assert resp.status == 200 and resp.content_type == "text/html"
    policy = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy
    page = await resp.text()
    assert "HighErrorRate" in page and 'id="timeline"' in page and "unassigned" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/app.js" defer>']
    assert "javascript:" not in page
    assert "{{ 7*7 }}" in page and ">49<" not in page
    assert 'href="https://runbooks.example.com/high-error-rate"' in page
    assert (await client.get("/incidents/999")).status == 404
    assert (await client.get("/incidents/x")).status == 404
    assert (await client.get("/static/app.js")).content_type == "text/javascript"
    assert (await client.get("/static/../pages.py")).status == 404


async def test_pages_need_a_sign_in_where_the_read_api_needs_a_token(
    make_client: MakeClient,
) -> None:
    client: Any = await make_client(host="0.0.0.0", webhook_token=Secret(TOKEN))
    resp = await client.get("/incidents/1", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] in ("/login?next=%2Fincidents%2F1", "/login?next=/incidents/1")
    assert (await client.get("/incidents/1", headers=WRITE)).status == 404  # a token reads
    form = await (await client.get("/login")).text()
    assert 'id="login"' in form and 'type="password"' in form


async def test_sign_in_sets_a_strict_cookie_and_the_forms_act_once(
    make_client: MakeClient,
) -> None:
    client: Any = await make_client(host="0.0.0.0", webhook_token=Secret(TOKEN), api_tokens=NAMED)
    incident = await opened(client)
    wrong = await sign_in(client, "not-a-token")
    assert wrong.status == 401 and "not one this service knows" in await wrong.text()
    resp = await sign_in(client, ALICE, f"/incidents/{incident}")
    assert resp.status == 303 and resp.headers["Location"] == f"/incidents/{incident}"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert ALICE not in cookie
    page = await (await client.get(f"/incidents/{incident}")).text()
    assert "Sign out" in page and ">Acknowledge</button>" in page and 'id="add-entry"' in page
    token = csrf_of(page)
    key = re.search(r'name="form_key" value="([^"]+)"', page)
    assert key is not None
    form = {"csrf": token, "form_key": key.group(1)}
    do = f"/incidents/{incident}/do/acknowledge"
    first = await client.post(do, data=form, allow_redirects=False)
    assert first.status == 303, await first.text()
    again = await client.post(do, data=form, allow_redirects=False)  # a double submit
    assert again.status == 303
    acks = [e for e in await timeline(client, incident) if e["kind"] == "status_changed"]
    assert [(e["actor"], e["data"]["to"]) for e in acks] == [("alice", "acknowledged")]
    note = {"csrf": token, "form_key": "n1", "kind": "decision", "text": "roll back <b>now</b>"}
    assert (
        await client.post(f"/incidents/{incident}/do/notes", data=note, allow_redirects=False)
    ).status == 303
    last = (await timeline(client, incident))[-1]
    assert (last["kind"], last["actor"]) == ("decision", "alice")
    assert last["text"].endswith("roll back <b>now</b>")
    page = await (await client.get(f"/incidents/{incident}")).text()
    assert "roll back &lt;b&gt;now&lt;/b&gt;" in page
    assert ">Acknowledge</button>" not in page, "only the legal moves are offered"
    # the header's durations: from the first alert's start to each milestone
    assert re.search(
        r"<dt>acknowledged</dt><dd>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC "
        r'<span class="after">\+1m 26s</span>',
        page,
    ), page[:3000]


async def signed_in_on_a_page(make_client: MakeClient) -> tuple[Any, int, str]:
    """The app with the named tokens, an incident, Alice signed in: the client, the incident,
    and its page as she sees it."""
    client: Any = await make_client(webhook_token=Secret(TOKEN), api_tokens=NAMED)
    incident = await opened(client)
    await sign_in(client, ALICE)
    return client, incident, await (await client.get(f"/incidents/{incident}")).text()


async def test_forms_without_the_csrf_token_or_from_another_site_do_nothing(
    make_client: MakeClient,
) -> None:
    client, incident, page = await signed_in_on_a_page(make_client)
    before = len(await timeline(client, incident))
    do = f"/incidents/{incident}/do/acknowledge"
    assert (await client.post(do, data={}, allow_redirects=False)).status == 403
    assert (await client.post(do, data={"csrf": "x" * 32}, allow_redirects=False)).status == 403
    other = await client.post(
        do,
        data={"csrf": csrf_of(page)},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert other.status == 403
    assert len(await timeline(client, incident)) == before


async def test_a_read_token_sees_the_page_without_forms_and_cannot_post(
    make_client: MakeClient,
) -> None:
    client: Any = await make_client(host="0.0.0.0", webhook_token=Secret(TOKEN), api_tokens=NAMED)
    incident = await opened(client)
    await sign_in(client, CAROL)
    page = await (await client.get(f"/incidents/{incident}")).text()
    assert "carol (read only)" in page and "<button" in page  # Sign out only
    assert page.count("<form") == 1 and 'action="/logout"' in page
    resp = await client.post(
        f"/incidents/{incident}/do/acknowledge", data={"csrf": csrf_of(page)}, allow_redirects=False
    )
    assert resp.status == 403
    assert [e["kind"] for e in await timeline(client, incident)].count("status_changed") == 0


async def test_a_refusal_is_shown_on_the_page_with_its_status(make_client: MakeClient) -> None:
    client, incident, page = await signed_in_on_a_page(make_client)
    resp = await client.post(
        f"/incidents/{incident}/do/close", data={"csrf": csrf_of(page)}, allow_redirects=False
    )
    assert resp.status == 409
    text = await resp.text()
    assert 'role="alert"' in text and "cannot close" in text
    bad = await client.post(
        f"/incidents/{incident}/do/severity",
        data={"csrf": csrf_of(page), "severity": "sev9", "reason": "x"},
        allow_redirects=False,
    )
    assert bad.status == 400 and "severity" in await bad.text()


async def test_a_trusted_header_names_the_person_when_configured(make_client: MakeClient) -> None:
    client: Any = await make_client(
        webhook_token=Secret(TOKEN),
        web_user_header="X-Remote-User",
        web_user_header_scope="write",
    )
    incident = await opened(client)
    headers = {"X-Remote-User": "dana"}
    resp = await client.get(f"/incidents/{incident}", headers=headers)
    assert "ib_csrf" in resp.headers.get("Set-Cookie", "")
    page = await resp.text()
    assert "dana" in page and ">Acknowledge</button>" in page
    done = await client.post(
        f"/incidents/{incident}/do/acknowledge",
        data={"csrf": csrf_of(page)},
        headers=headers,
        allow_redirects=False,
    )
    assert done.status == 303
    acks = [e for e in await timeline(client, incident) if e["kind"] == "status_changed"]
    assert acks[-1]["actor"] == "dana"


async def test_sign_out_ends_the_session_and_next_is_never_another_site(
    make_client: MakeClient,
) -> None:
    client: Any = await make_client(host="0.0.0.0", webhook_token=Secret(TOKEN), api_tokens=NAMED)
    resp = await sign_in(client, ALICE, "//evil.example/x")
    assert resp.headers["Location"] == "/"
    page = await (await client.get("/")).text()
    assert 'id="incidents"' in page or "No incidents here" in page
    out = await client.post("/logout", data={"csrf": csrf_of(page)}, allow_redirects=False)
    assert out.status == 303
    assert (await client.get("/", allow_redirects=False)).status == 303


async def test_the_live_stream_tells_of_a_new_entry_and_the_fragment_renders_it(
    make_client: MakeClient,
) -> None:
    client: Any = await make_client(webhook_token=Secret(TOKEN))
    incident = await opened(client)
    last = (await timeline(client, incident))[-1]["id"]
    resp = await client.get(f"/incidents/{incident}/live?after={last}")
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert await resp.content.readline() == b"retry: 3000\n"
    note = {"text": "db failover started"}
    posted = await client.post(f"/api/v1/incidents/{incident}/notes", json=note, headers=WRITE)
    assert posted.status == 200
    event = b""
    async with asyncio.timeout(5):
        while b"event: change" not in event:
            event += await resp.content.readline()
        data = json.loads((await resp.content.readline()).decode().removeprefix("data: "))
    assert data["last"] > last and data["status"] == "triggered"
    resp.close()
    fragment = await client.get(f"/incidents/{incident}/fragments/timeline?after={last}")
    html = await fragment.text()
    assert f'data-id="{data["last"]}"' in html and "db failover started" in html
    summary = await (await client.get(f"/incidents/{incident}/fragments/summary")).text()
    assert 'id="status"' in summary and 'data-status="triggered"' in summary


async def test_the_list_filters_searches_and_shows_roles(make_client: MakeClient) -> None:
    client: Any = await make_client(webhook_token=Secret(TOKEN))
    incident = await opened(client)
    page = await (await client.get("/")).text()
    assert f'<tr data-id="{incident}">' in page and "commander, scribe, liaison" in page
    resolved = await (await client.get("/?status=resolved")).text()
    assert f'<tr data-id="{incident}">' not in resolved
    found = await (await client.get("/?q=%22(%22")).text()
    assert "Search:" in found  # a query the search cannot take is said, never a 500


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


async def test_the_postmortem_is_rendered_safely_and_saved_from_the_page(
    make_client: MakeClient,
) -> None:
    client, incident, page = await signed_in_on_a_page(make_client)
    assert "drafted from the record once the incident is mitigated" in page
    done = await client.post(
        f"/incidents/{incident}/do/resolve",
        data={"csrf": csrf_of(page), "reason": "rolled back"},
        allow_redirects=False,
    )
    assert done.status == 303
    page = await (await client.get(f"/incidents/{incident}")).text()
    assert 'id="pm-summary"' in page and "Save postmortem" in page
    hostile = "<script>alert(1)</script> [x](javascript:alert(2)) **bold**"
    saved = await client.post(
        f"/incidents/{incident}/do/postmortem",
        data={"csrf": csrf_of(page), "form_key": "pm1", "section_summary": hostile},
        allow_redirects=False,
    )
    assert saved.status == 303, await saved.text()
    page = await (await client.get(f"/incidents/{incident}")).text()
    rendered = page[page.index('class="markdown card"') :]
    assert "<strong>bold</strong>" in rendered
    assert "<script>alert" not in page and 'href="javascript:' not in page
    assert "Version 1 by alice" in page


def test_urls_in_timeline_texts_become_links_and_nothing_else_does() -> None:
    from bridge.http.pages import linked

    assert linked("no link here <b>") == "no link here <b>"
    html = str(linked('see https://x.example/a?b=1&c=2. and javascript:alert(1) "<i>"'))
    assert '<a href="https://x.example/a?b=1&amp;c=2" rel="noopener noreferrer">' in html
    assert "javascript:alert(1)" in html and 'href="javascript' not in html
    assert "&lt;i&gt;" in html and "<i>" not in html
    assert str(linked('https://x.example/"onmouseover=alert(1)')).count("<a ") == 1
    assert 'href="https://x.example/"' in str(linked('https://x.example/"onmouseover=alert(1)'))
