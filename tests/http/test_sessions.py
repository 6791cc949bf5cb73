"""Sign-in, sign-out and who a request is, over real HTTP against the app: the redirect after
sign-in stays on this site, a signed-out session is over on the server (a copied cookie no
longer reads or writes, across a restart too), a reload that removes a token ends its sessions
and its Bearer access at once, and the trusted header is taken only from the trusted proxy."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest

from bridge.core.secrets import Secret
from tests.conftest import MakeClient
from tests.http.test_pages import ALICE, NAMED, TOKEN, sign_in

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
