"""The public status page in a real browser, on its own listener (``--status-listen``): a
component in outage and a public update shown, axe-clean at both widths, no cookie set, and the
rest of the service not reachable through that listener."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import DESKTOP, PHONE, USERS, assert_accessible, screenshot
from tests.integration.procs import LOOPBACK, Bridge, free_port, http, running_bridge

RULES = """
targets:
  room: {type: console}
route:
  tiers: {incident: room}
  routes:
    - name: payments
      matchers: ['team="payments"']
components:
  checkout: {name: Checkout, description: Cart and payment, routes: [payments]}
  search: {name: Search, description: Finding products}
"""


@pytest.fixture(scope="module")
def status_bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bridge, str]]:
    workdir = tmp_path_factory.mktemp("status-page")
    rules = workdir / "rules.yaml"
    rules.write_text(RULES)
    tokens = workdir / "api-tokens"
    tokens.write_text("".join(f"{n} {scope} {tok}\n" for n, (scope, tok) in USERS.items()))
    tokens.chmod(0o600)
    port = free_port()
    with running_bridge(
        workdir / "bridge",
        args=[
            "--api-tokens-file",
            str(tokens),
            "--rules",
            str(rules),
            "--status-listen",
            f"{LOOPBACK}:{port}",
        ],
        api_token=USERS["carol"][1],
    ) as bridge:
        yield bridge, f"http://{LOOPBACK}:{port}"


def _open_with_a_public_update(bridge: Bridge) -> None:
    labels = {"alertname": "CheckoutErrors", "team": "payments", "severity": "critical"}
    resp = bridge.post_webhook(
        {
            "version": "4",
            "groupKey": '{}:{alertname="CheckoutErrors"}',
            "status": "firing",
            "receiver": "bridge",
            "alerts": [{"status": "firing", "labels": labels, "startsAt": "2026-12-08T00:00:00Z"}],
        }
    )
    assert resp.status == 200, resp.body
    (incident,) = bridge.incidents()
    body = b'{"text": "internal", "public": true, "public_title": "Checkout failing", '
    body += b'"public_text": "Some payments fail; we are on it."}'
    resp = http(
        "POST",
        f"{bridge.url}/api/v1/incidents/{incident['id']}/updates",
        body,
        {"Content-Type": "application/json", "Authorization": f"Bearer {USERS['alice'][1]}"},
    )
    assert resp.status == 200, resp.body


def test_the_status_page_on_its_own_listener(
    status_bridge: tuple[Bridge, str], browser: Browser
) -> None:
    bridge, public = status_bridge
    _open_with_a_public_update(bridge)
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        response = page.goto(f"{public}/status")
        assert response is not None and response.status == 200
        expect(page.get_by_role("heading", name="Checkout failing")).to_be_visible()
        expect(page.get_by_text("Some payments fail; we are on it.")).to_be_visible()
        expect(page.locator("li.component", has_text="Checkout")).to_contain_text("Outage")
        expect(page.locator("li.component", has_text="Search")).to_contain_text("Operational")
        for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(viewport)
            screenshot(page, "status", width)
            assert_accessible(page, f"status ({width})")
        assert context.cookies() == []
        # the feed is linked from the page and served by the same listener
        page.get_by_role("link", name="Updates as an Atom feed").click()
        feed: Any = page.request.get(f"{public}/status/feed.atom")
        assert feed.status == 200 and "Checkout failing" in feed.text()
        for path in ("/", "/api/v1/incidents", "/metrics", "/static/app.css"):
            assert page.request.get(f"{public}{path}").status == 404, path
    finally:
        context.close()
