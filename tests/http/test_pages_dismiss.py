"""The incident page's Dismiss form: a false alarm closed from the page, with its reason."""

from __future__ import annotations

import re
from typing import Any

from bridge.core.secrets import Secret
from tests.conftest import BOTH_BACKENDS, MakeClient
from tests.http.test_pages import ALICE, NAMED, TOKEN, csrf_of, opened, sign_in, timeline

# Each test's service runs on SQLite and on PostgreSQL (tests/conftest.py: service_db).
pytestmark = BOTH_BACKENDS


async def test_the_page_dismisses_an_open_incident(make_client: MakeClient) -> None:
    client: Any = await make_client(host="0.0.0.0", webhook_token=Secret(TOKEN), api_tokens=NAMED)
    incident = await opened(client)
    assert (await sign_in(client, ALICE, f"/incidents/{incident}")).status == 303
    page = await (await client.get(f"/incidents/{incident}")).text()
    assert f'action="/incidents/{incident}/do/dismiss"' in page and ">Dismiss</button>" in page
    key = re.search(r'name="form_key" value="([^"]+)"', page)
    assert key is not None
    form = {"csrf": csrf_of(page), "form_key": key.group(1) + "-dismiss"}
    # The reason is required, as in the API.
    refused = await client.post(f"/incidents/{incident}/do/dismiss", data=form)
    assert "reason" in await refused.text()
    done = await client.post(
        f"/incidents/{incident}/do/dismiss",
        data={**form, "reason": "a test webhook"},
        allow_redirects=False,
    )
    assert done.status == 303, await done.text()
    last = (await timeline(client, incident))[-1]
    assert (last["kind"], last["actor"], last["text"]) == (
        "dismissed",
        "alice",
        "Dismissed by alice: a test webhook",
    )
    page = await (await client.get(f"/incidents/{incident}")).text()
    assert ">Dismiss</button>" not in page  # closed: nothing to dismiss
