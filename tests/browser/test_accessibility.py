"""Each page checked by axe-core (no serious or critical violation), photographed at a desktop
and a phone width, and used with the keyboard alone.

The screenshots go to test-artifacts/screenshots/ (CI's artifacts); ``UPDATE_DOC_SCREENSHOTS=1``
also writes docs/img/page-<name>-<desktop|phone>.png. This module runs first in the directory
(so the list in the pictures holds these incidents, not the security tests' hostile ones).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import DESKTOP, PHONE, USERS, Stack, assert_accessible, screenshot

WIDTHS = {"desktop": DESKTOP, "phone": PHONE}


@pytest.fixture(scope="module")
def showcase(stack: Stack) -> dict[str, Any]:
    """Incidents as a team would have them mid-incident: the pictures show these."""
    stack.fire(
        "Ingress 5xx ratio above 1%",
        alertname="IngressHigh5xxRatio",
        labels={"team": "platform", "severity": "warning", "service": "ingress"},
    )
    stack.fire(
        "Ledger writes failing",
        alertname="LedgerWritesFailing",
        labels={"team": "payments", "service": "ledger"},
        annotations={"runbook_url": "https://runbooks.example/ledger-writes"},
    )
    main = stack.fire(
        "Checkout error rate above 5%",
        alertname="CheckoutHighErrorRate",
        alerts=3,
        labels={"team": "payments"},
        annotations={
            "runbook_url": "https://runbooks.example/checkout-errors",
            "description": "5xx ratio of checkout over 5 minutes is 7.2%",
        },
    )
    iid = main["id"]
    stack.act(iid, "acknowledge", "alice")
    stack.act(iid, "roles", "alice", role="commander", person="alice")
    stack.act(iid, "roles", "alice", role="scribe", person="bob")
    stack.act(iid, "notes", "bob", text="Errors started with the 14:02 deploy of checkout v42")
    stack.act(iid, "decisions", "alice", text="Roll checkout back to v41")
    stack.act(iid, "actions", "alice", text="Add a canary stage to the checkout deploy")
    stack.act(iid, "updates", "alice", text="Checkout fails for 7% of customers; rolling back.")
    return stack.incident(iid)


def pages(showcase: dict[str, Any]) -> dict[str, str]:
    return {"incidents": "/", "incident": f"/incidents/{showcase['id']}"}


def test_sign_in_page(stack: Stack, new_context: Any) -> None:
    page: Page = new_context().new_page()
    for width, viewport in WIDTHS.items():
        page.set_viewport_size(viewport)
        page.goto("/login")
        expect(page.locator("form#login")).to_be_visible()
        assert_accessible(page, f"login ({width})")
        screenshot(page, "login", width)


def test_pages_of_a_responder(showcase: dict[str, Any], signed_in: Callable[..., Page]) -> None:
    """Every page at both widths is photographed before any finding fails the test."""
    page = signed_in("alice")
    problems: list[str] = []
    for name, path in pages(showcase).items():
        for width, viewport in WIDTHS.items():
            page.set_viewport_size(viewport)
            page.goto(path)
            if name == "incident":
                expect(page.locator("#live")).to_have_text("Live")
                expect(page.locator("#timeline li[data-id]").first).to_be_visible()
            screenshot(page, name, width)
            try:
                assert_accessible(page, f"{name} ({width})")
            except AssertionError as failed:
                problems.append(str(failed))
            if width == "phone":
                overflow = page.evaluate(
                    "() => document.documentElement.scrollWidth - window.innerWidth"
                )
                if overflow > 0:
                    problems.append(f"{name}: {overflow}px wider than a phone's screen")
    assert not problems, "\n\n".join(problems)


def test_pages_of_a_reader(showcase: dict[str, Any], signed_in: Callable[..., Page]) -> None:
    page = signed_in("carol")
    for name, path in pages(showcase).items():
        page.goto(path)
        assert_accessible(page, f"{name} (read-only)")


# --- the keyboard alone ----------------------------------------------------------------------


def tab_to(page: Page, selector: str, text: str | None = None, limit: int = 80) -> None:
    """Press Tab until the focused element matches ``selector`` (and has the text ``text``);
    fail with the path the focus took."""
    seen: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(
            """([s, t]) => { const e = document.activeElement;
                return !!e && e.matches(s) && (t === null || e.textContent.trim() === t); }""",
            [selector, text],
        ):
            assert_focus_visible(page)
            return
        seen.append(
            page.evaluate(
                """() => { const e = document.activeElement; if (!e) return '?';
                    return e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + ' '
                        + (e.getAttribute('name') || e.textContent.trim().slice(0, 30)); }"""
            )
        )
    raise AssertionError(f"Tab never reached {selector}; focus went: {seen}")


def assert_focus_visible(page: Page) -> None:
    """The focused element shows that it is (an outline or a shadow: not removed by CSS)."""
    style = page.evaluate(
        """() => { const s = getComputedStyle(document.activeElement);
            return {outline: s.outlineStyle, width: s.outlineWidth, shadow: s.boxShadow}; }"""
    )
    visible = (style["outline"] != "none" and style["width"] != "0px") or style["shadow"] != "none"
    assert visible, (
        f"no visible focus on {page.evaluate('() => document.activeElement.outerHTML')[:200]}: {style}"
    )


def test_keyboard_only(stack: Stack, new_context: Any) -> None:
    incident = stack.fire("Keyboard-only responder")
    iid = incident["id"]
    page: Page = new_context().new_page()

    page.goto("/login")
    tab_to(page, "#token")
    page.keyboard.type(USERS["alice"][1])
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: urlsplit(url).path == "/")
    expect(page.locator("#incidents")).to_be_visible()

    tab_to(page, f'#incidents tr[data-id="{iid}"] a')
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/incidents/{iid}")

    tab_to(page, "button", "Acknowledge")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_attribute("data-status", "acknowledged")

    tab_to(page, "#add-entry textarea")
    page.keyboard.type("Typed with the keyboard alone")
    tab_to(page, "#add-entry button", "Add to timeline")
    page.keyboard.press("Enter")
    expect(page.locator("#timeline li", has_text="Typed with the keyboard alone")).to_have_count(1)
