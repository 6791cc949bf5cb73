"""The insights page in a real browser: reached by URL with incidents of the stack, its SVG
charts named for assistive technology, no horizontal scrolling of the page at a phone's width,
axe at both widths, a CSV link that downloads the table, a bad period shown as an error."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.browser.conftest import DESKTOP, PHONE, Stack, assert_accessible, screenshot


def test_the_insights_page_charts_and_tables(stack: Stack, signed_in: Callable[..., Page]) -> None:
    incident = stack.fire("Insights page latency", labels={"service": "insights-shop"})
    stack.act(incident["id"], "acknowledge")
    page = signed_in("alice")
    page.goto("/insights?since=1d")
    expect(page.get_by_role("heading", name="Insights", exact=True)).to_be_visible()
    charts = page.locator("svg[role=img]")
    expect(charts).to_have_count(5)
    expect(page.get_by_role("img", name="MTTR by week (hours)")).to_be_visible()
    expect(page.locator("#table-noisiest")).to_contain_text("insights-shop")
    for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        screenshot(page, "insights", width)
        assert_accessible(page, f"insights ({width})")
        # Readable on a phone: the page itself never scrolls sideways (wide tables scroll in
        # their own region), and every chart fits the width.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        widths = page.evaluate(
            "[...document.querySelectorAll('svg.chart')].map(s => s.getBoundingClientRect().right)"
        )
        assert max(widths) <= viewport["width"] + 1
    page.set_viewport_size(DESKTOP)

    with page.expect_download() as download:
        page.get_by_role("link", name="Download noisiest alerts as CSV").click()
    path = download.value.path()
    text = path.read_text()
    assert text.startswith("alertname,service,incidents,pages,reopenings,flapping")
    assert "insights-shop" in text

    page.goto("/insights?since=forever")
    expect(page.locator("body")).to_contain_text("since")
    assert_accessible(page, "insights (a bad period)")
