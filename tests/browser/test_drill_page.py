"""A drill's report page in a real browser: reached from its URL after a drill fired through
the API, its tables and what was skipped (nothing was worked yet) shown, axe-clean at both widths, and the page itself
never scrolling sideways on a phone."""

from __future__ import annotations

import json
from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.browser.conftest import DESKTOP, PHONE, USERS, Stack, assert_accessible, screenshot
from tests.integration.procs import http


def test_the_drill_report_page(stack: Stack, signed_in: Callable[..., Page]) -> None:
    resp = http(
        "POST",
        f"{stack.bridge.url}/api/v1/drills",
        json.dumps({"severity": "sev3"}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {USERS['alice'][1]}"},
    )
    assert resp.status == 201, resp.body[:500]
    (incident_id,) = json.loads(resp.body)["incidents"]
    page = signed_in("alice")
    page.goto(f"/drills/{incident_id}")
    expect(page.get_by_role("heading", name=f"Drill report #{incident_id}")).to_be_visible()
    expect(page.locator("#table-stages")).to_contain_text("acknowledge")
    expect(page.locator("#skipped")).to_contain_text("no postmortem draft saved")
    for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        screenshot(page, "drill", width)
        assert_accessible(page, f"drill report ({width})")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
