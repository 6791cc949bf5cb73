"""Sign-in, sign-out and who a request is, over real HTTP against the app: the redirect after
sign-in stays on this site, a signed-out session is over on the server (a copied cookie no
longer reads or writes, across a restart too), a reload that removes a token ends its sessions
and its Bearer access at once, and the trusted header is taken only from the trusted proxy."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.app import create_app
from bridge.config import (
    ConfigError,
    Settings,
    add_serve_arguments,
    read_api_tokens,
    settings_from,
)
from bridge.core.secrets import Secret
from bridge.http import session
from bridge.service import AppState
from bridge.store import Store
from tests.conftest import BOTH_BACKENDS, WRITE, MakeClient, app_state
from tests.http.test_pages import ALICE, CAROL, NAMED, TOKEN, csrf_of, opened, sign_in, timeline

# Each test's service runs on SQLite and on PostgreSQL (tests/conftest.py: service_db).
pytestmark = BOTH_BACKENDS

SITE = "https://bridge.example/"


def browser_target(location: str) -> str:
    """Where a browser goes with this Location: it drops tabs and newlines anywhere, trims C0
    controls and spaces, and reads a backslash as a slash (WHATWG URL parsing)."""
    cleaned = re.sub(r"[\t\n\r]", "", location).strip("".join(map(chr, range(0x21))))
    return urljoin(SITE, cleaned.replace("\\", "/"))


HOSTILE = [
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r/evil.example",
    "\t//evil.example",
    "//evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "/%09/evil.example",
    "/%0a/evil.example",
    "/%0d/evil.example",
    "/%2f/evil.example",
    "/%2F%2Fevil.example",
    "/%5cevil.example",
    "/%5C/evil.example",
    "/%252f/evil.example",
    "https://evil.example/",
    "javascript:alert(1)",
    "evil.example",
    " /\t/evil.example",
    "/\x00/evil.example",
]


@pytest.mark.parametrize("target", HOSTILE)
async def test_sign_in_never_sends_the_browser_to_another_site(
    make_client: MakeClient, target: str
) -> None:
    client: Any = await make_client(host="0.0.0.0", webhook_token=Secret(TOKEN), api_tokens=NAMED)
    resp = await sign_in(client, ALICE, target)
    assert resp.status == 303
    location = resp.headers["Location"]
    assert urlsplit(browser_target(location)).netloc == "bridge.example", location
    assert location == "/", f"{target!r} -> {location!r}"
    # the sign-in form carries the same value as its hidden field: it is cleaned there too
    form = await (await client.get("/login", params={"next": target})).text()
    assert 'name="next" value="/"' in form


async def test_a_path_of_this_site_is_kept_after_sign_in(make_client: MakeClient) -> None:
    client: Any = await make_client(host="0.0.0.0", webhook_token=Secret(TOKEN), api_tokens=NAMED)
    resp = await sign_in(client, ALICE, "/incidents/3?status=resolved&q=a%20b")
    assert resp.headers["Location"] == "/incidents/3?status=resolved&q=a%20b"


# --- sessions end on the server ---------------------------------------------------------------

Start = Callable[..., Any]


@pytest.fixture
async def start(aiohttp_client: Any, db_settings: dict[str, Any]) -> AsyncIterator[Start]:
    """The real app on the test's database (``db_settings``, on each backend), which outlives
    it: ``start(**settings)`` serves it; the test stops it as a restart would (its client and
    store closed) and starts it again on the same database."""
    stores: list[Store] = []

    async def run(**overrides: Any) -> TestClient[Any, Any]:
        settings = Settings(**db_settings, host="0.0.0.0", webhook_token=Secret(TOKEN), **overrides)
        state = app_state(settings)
        stores.append(state.store)
        client: TestClient[Any, Any] = await aiohttp_client(TestServer(create_app(state)))
        return client

    yield run
    for s in stores:
        s.close()


def cookie_of(resp: Any) -> str:
    morsel = resp.cookies.get("ib_session")
    assert morsel is not None and morsel.value, resp.headers
    return str(morsel.value)


async def as_copy(client: Any, cookie: str, method: str, path: str, **kw: Any) -> Any:
    """A request with a copy of the cookie, from another browser (its own empty jar)."""
    headers = {"Cookie": f"ib_session={cookie}", **kw.pop("headers", {})}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as other:
        resp = await other.request(
            method, client.make_url(path), headers=headers, allow_redirects=False, **kw
        )
        await resp.read()
        return resp


async def test_a_cookie_copied_before_sign_out_neither_reads_nor_writes_after_it(
    start: Start, tmp_path: Path
) -> None:
    client: Any = await start(api_tokens=NAMED)
    incident = await opened(client)
    cookie = cookie_of(await sign_in(client, ALICE))
    copy_page = await as_copy(client, cookie, "GET", f"/incidents/{incident}")
    assert copy_page.status == 200, "the copy is a session like the original until sign-out"
    page = await (await client.get(f"/incidents/{incident}")).text()
    csrf = csrf_of(page)
    out = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/login"
    entries = len(await timeline(client, incident))

    read = await as_copy(client, cookie, "GET", f"/incidents/{incident}")
    assert read.status == 303 and read.headers["Location"].startswith("/login")
    note = {"csrf": csrf, "form_key": "after-sign-out", "kind": "note", "text": "as alice"}
    wrote = await as_copy(client, cookie, "POST", f"/incidents/{incident}/do/notes", data=note)
    assert wrote.status in (303, 403)
    assert wrote.status == 403 or wrote.headers["Location"].startswith("/login")
    assert len(await timeline(client, incident)) == entries, "nothing was written as alice"
    assert (await client.get("/", allow_redirects=False)).status == 303

    # A restart on the same database (and key) does not bring the session back.
    await client.close()
    client.server.app[AppState.KEY].store.close()
    again: Any = await start(api_tokens=NAMED)
    read = await as_copy(again, cookie, "GET", f"/incidents/{incident}")
    assert read.status == 303 and read.headers["Location"].startswith("/login")
    # while a session made after the restart works, and one from before it too
    fresh = cookie_of(await sign_in(again, ALICE))
    assert (await as_copy(again, fresh, "GET", f"/incidents/{incident}")).status == 200


async def test_signing_in_again_ends_the_browsers_session_before(
    start: Start, tmp_path: Path
) -> None:
    client: Any = await start(api_tokens=NAMED)
    first = cookie_of(await sign_in(client, CAROL))
    second = cookie_of(await sign_in(client, ALICE))  # the same browser: it sends `first`
    assert first != second
    assert (await as_copy(client, first, "GET", "/")).status == 303
    assert (await as_copy(client, second, "GET", "/")).status == 200


async def test_a_session_survives_a_restart_until_it_is_signed_out(
    start: Start, tmp_path: Path
) -> None:
    client: Any = await start(api_tokens=NAMED)
    cookie = cookie_of(await sign_in(client, CAROL))
    await client.close()
    client.server.app[AppState.KEY].store.close()
    again: Any = await start(api_tokens=NAMED)
    assert (await as_copy(again, cookie, "GET", "/")).status == 200


def tokens_file(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    path.chmod(0o600)
    return path


async def test_a_reload_that_removes_or_changes_a_token_ends_its_sessions_and_bearer_access(
    start: Start, tmp_path: Path
) -> None:
    path = tokens_file(
        tmp_path / "api-tokens", f"alice write {ALICE}", f"carol read {CAROL}", "# people"
    )
    client: Any = await start(
        api_tokens=read_api_tokens(str(path)),
        token_files=(("api_tokens", str(path)),),
    )
    incident = await opened(client)
    alice = cookie_of(await sign_in(client, ALICE))
    carol = cookie_of(await as_copy(client, "", "POST", "/login", data={"token": CAROL}))
    bearer = {"Authorization": f"Bearer {ALICE}"}
    assert (await client.get(f"/api/v1/incidents/{incident}", headers=bearer)).status == 200
    assert (await as_copy(client, alice, "GET", f"/incidents/{incident}")).status == 200

    # alice removed, carol's token changed
    tokens_file(path, f"carol read {CAROL}-changed", f"bob write {ALICE[::-1]}")
    reload = await client.post("/-/reload", headers=WRITE)
    assert reload.status == 200, await reload.text()

    assert (await client.get(f"/api/v1/incidents/{incident}", headers=bearer)).status == 401
    assert (
        await client.get(f"/incidents/{incident}", headers=bearer, allow_redirects=False)
    ).status == 303
    for cookie in (alice, carol):
        page = await as_copy(client, cookie, "GET", f"/incidents/{incident}")
        assert page.status == 303 and page.headers["Location"].startswith("/login")
    note = {"kind": "note", "text": "still alice?"}
    wrote = await client.post(f"/api/v1/incidents/{incident}/notes", json=note, headers=bearer)
    assert wrote.status == 401
    # the new token works at once
    new = {"Authorization": f"Bearer {ALICE[::-1]}"}
    assert (await client.get(f"/api/v1/incidents/{incident}", headers=new)).status == 200

    # Ended in the database: a restart with alice's token back does not revive the session.
    tokens_file(path, f"alice write {ALICE}", f"carol read {CAROL}")
    await client.close()
    client.server.app[AppState.KEY].store.close()
    again: Any = await start(api_tokens=read_api_tokens(str(path)))
    page = await as_copy(again, alice, "GET", f"/incidents/{incident}")
    assert page.status == 303


async def test_a_tokens_file_that_cannot_be_read_at_a_reload_keeps_the_tokens(
    start: Start, tmp_path: Path
) -> None:
    path = tokens_file(tmp_path / "api-tokens", f"alice write {ALICE}")
    client: Any = await start(
        api_tokens=read_api_tokens(str(path)),
        token_files=(("api_tokens", str(path)),),
    )
    cookie = cookie_of(await sign_in(client, ALICE))
    path.write_text(f"alice write {ALICE} extra\n")
    reload = await client.post("/-/reload", headers=WRITE)
    assert reload.status == 422
    body = await reload.text()
    assert "api-tokens:1" in body and ALICE not in body
    assert (await as_copy(client, cookie, "GET", "/")).status == 200


# --- the trusted header -------------------------------------------------------------------------


async def from_address(
    client: Any, source: str, method: str, path: str, **kw: Any
) -> aiohttp.ClientResponse:
    """A request whose TCP connection comes from ``source`` (a loopback address of its own)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as other:
        resp = await other.request(method, client.make_url(path), allow_redirects=False, **kw)
        await resp.read()
        return resp


HEADER = {"web_user_header": "X-Remote-User", "web_user_header_scope": "write"}


async def test_the_header_from_a_peer_that_is_not_the_trusted_proxy_is_refused_and_logged(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client: Any = await make_client(
        webhook_token=Secret(TOKEN), web_user_header_trusted_proxies=("127.0.0.2/32",), **HEADER
    )
    incident = await opened(client)
    forged = {"X-Remote-User": "dana"}
    caplog.set_level(logging.WARNING, "bridge.pages")
    direct = await client.get(f"/incidents/{incident}", headers=forged)  # from 127.0.0.1
    assert direct.status == 403 and "ib_csrf" not in direct.headers.get("Set-Cookie", "")
    assert "trusted proxy" in await direct.text()
    assert any("127.0.0.1" in r.getMessage() for r in caplog.records), caplog.text
    posted = await client.post(f"/incidents/{incident}/do/acknowledge", headers=forged)
    assert posted.status == 403
    assert not [e for e in await timeline(client, incident) if e["actor"] == "dana"]
    # without the header the same peer is an ordinary visitor (reads are open on loopback)
    assert (await client.get(f"/incidents/{incident}")).status == 200
    # the trusted proxy's address is believed
    page = await from_address(client, "127.0.0.2", "GET", f"/incidents/{incident}", headers=forged)
    assert page.status == 200 and "dana" in await page.text()


async def test_without_a_trusted_proxy_setting_only_loopback_may_set_the_header(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "bridge.pages")
    client: Any = await make_client(webhook_token=Secret(TOKEN), **HEADER)
    said = [r.getMessage() for r in caplog.records if "X-Remote-User" in r.getMessage()]
    assert said and "loopback" in said[0], "the start-up log says header mode is on, and from where"
    page = await client.get("/", headers={"X-Remote-User": "dana"})
    assert page.status == 200 and "dana" in await page.text()
    assert session.from_trusted_proxy("::ffff:127.0.0.1", ())
    assert not session.from_trusted_proxy("10.0.0.5", ())
    assert not session.from_trusted_proxy("::ffff:10.0.0.5", ())
    assert session.from_trusted_proxy("10.1.2.3", ("10.0.0.0/8",))
    assert not session.from_trusted_proxy(None, ())


async def test_the_header_given_twice_is_refused(make_client: MakeClient) -> None:
    client: Any = await make_client(webhook_token=Secret(TOKEN), **HEADER)
    incident = await opened(client)
    twice = [("X-Remote-User", "mallory"), ("X-Remote-User", "dana")]
    page = await client.get(f"/incidents/{incident}", headers=twice)
    assert page.status == 400 and "2 times" in await page.text()
    done = await client.post(f"/incidents/{incident}/do/acknowledge", headers=twice)
    assert done.status == 400
    assert not [e for e in await timeline(client, incident) if e["kind"] == "status_changed"]


@pytest.mark.parametrize(
    "name", ["api", "API", "reader", "alertmanager", "alertmanager-api", "slack:U123", "alice"]
)
async def test_the_header_cannot_give_a_system_or_token_name(
    make_client: MakeClient, name: str
) -> None:
    client: Any = await make_client(webhook_token=Secret(TOKEN), api_tokens=NAMED, **HEADER)
    incident = await opened(client)
    page = await client.get(f"/incidents/{incident}", headers={"X-Remote-User": name})
    assert page.status == 403 and "name of the service or of an API token" in await page.text()


def test_the_trusted_proxy_setting_is_addresses_or_networks(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    base = ["--db", str(tmp_path / "bridge.db"), "--web-user-header", "X-Remote-User"]
    given = parser.parse_args(
        [*base, "--web-user-header-trusted-proxy", "10.0.0.5, 10.1.0.0/16,::1"]
    )
    settings = settings_from(given, env={})
    assert settings.web_user_header_trusted_proxies == ("10.0.0.5/32", "10.1.0.0/16", "::1/128")
    env = {"INCIDENT_BRIDGE_WEB_USER_HEADER_TRUSTED_PROXY": "192.168.1.7"}
    assert settings_from(parser.parse_args(base), env=env).web_user_header_trusted_proxies == (
        "192.168.1.7/32",
    )
    with pytest.raises(ConfigError, match=r"--web-user-header-trusted-proxy: 'proxy\.local'"):
        settings_from(
            parser.parse_args([*base, "--web-user-header-trusted-proxy", "10.0.0.5,proxy.local"]),
            env={},
        )


async def test_a_live_stream_ends_when_its_session_is_signed_out(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page's live stream opened with a session stops once that session is ended (here by a
    sign-out in another tab), instead of feeding a signed-out browser until it closes."""
    from bridge.http import live

    monkeypatch.setattr(live, "POLL_S", 0.05)
    monkeypatch.setattr(live, "SESSION_CHECK_S", 0.1)
    client: Any = await start(api_tokens=NAMED)
    incident = await opened(client)
    cookie = cookie_of(await sign_in(client, ALICE))
    headers = {"Cookie": f"ib_session={cookie}"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as other:
        url = client.make_url(f"/incidents/{incident}/live")
        async with other.get(url, headers=headers) as stream:
            assert stream.status == 200 and stream.content_type == "text/event-stream"
            await asyncio.wait_for(stream.content.readline(), 2)  # the retry line
            await asyncio.sleep(0.3)
            assert not stream.content.at_eof(), "a live session keeps its stream"
            page = await (await client.get(f"/incidents/{incident}")).text()
            out = await client.post("/logout", data={"csrf": csrf_of(page)}, allow_redirects=False)
            assert out.status == 303
            rest = await asyncio.wait_for(stream.content.read(), 3)
    assert b"event: signedout" in rest
