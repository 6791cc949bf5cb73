"""The postmortem on the incident's page, in Chromium: its Markdown tables are tables (each in
a region that scrolls sideways on a phone and is reached with Tab), axe-core finds nothing
serious in the section, and the published postmortem's link ("seen this before" points to it)
sends a person who is not signed in to the sign-in and back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import DESKTOP, PHONE, USERS, Stack, assert_accessible, screenshot


@pytest.fixture(scope="module")
def written(stack: Stack) -> dict[str, Any]:
    """A resolved incident with roles, a hand-over, notes and a postmortem written."""
    incident = stack.fire(
        "Checkout latency above 2 s",
        alertname="PostmortemPageLatency",
        labels={"team": "payments"},
        annotations={"runbook_url": "https://runbooks.example/checkout-latency"},
    )
    iid = incident["id"]
    stack.act(iid, "acknowledge", "alice")
    stack.act(iid, "roles", "alice", role="commander", person="alice")
    stack.act(iid, "roles", "alice", role="commander", person="bob")
    stack.act(iid, "notes", "bob", text="p99 at 6 s | pool at 100%\nsee the pool dashboard")
    stack.act(iid, "decisions", "bob", text="Roll checkout back to v41")
    stack.act(iid, "resolve", "bob")
    stack.act(
        iid,
        "postmortem",
        "bob",
        sections={
            "summary": "Checkout answered slowly for 20 minutes after the v42 deploy.",
            "root_cause": "| Cause | Why |\n|---|---|\n| pool | retries held connections |",
        },
    )
    return stack.incident(iid)


def test_the_postmortem_s_tables_are_tables(
    written: dict[str, Any], signed_in: Callable[..., Page]
) -> None:
    page = signed_in("alice")
    section = page.locator("#postmortem")
    problems: list[str] = []
    for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        page.goto(f"/incidents/{written['id']}#postmortem")
        expect(section.locator(".markdown table").first).to_be_visible()
        screenshot(page, "postmortem", width)
        text = section.inner_text()
        assert "|---|" not in text and "| Milestone |" not in text, text[:500]
        # The template's tables (milestones, durations, roles, hand-overs, timeline, action
        # items, the header) and the one the team wrote in its root cause.
        tables = section.locator(".markdown table")
        assert tables.count() >= 8, tables.count()
        for name in ("Milestones and durations", "Roles and hand-overs (2)", "Timeline (UTC)"):
            region = section.get_by_role("region", name=f"{name}, scrollable", exact=True)
            expect(region.locator("table")).to_have_count(1)
        expect(
            section.get_by_role("cell", name="retries held connections", exact=True)
        ).to_be_visible()
        # A note's line break is a line break in its cell, not "<br>" as text.
        note = section.get_by_role("cell", name="p99 at 6 s | pool at 100%", exact=False)
        expect(note).to_have_count(1)
        assert "<br>" not in note.inner_text() and note.locator("br").count() == 1
        try:
            assert_accessible(page, f"postmortem ({width})", within="#postmortem")
        except AssertionError as failed:
            problems.append(str(failed))
        if width == "phone":
            wider = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            if wider > 0:
                problems.append(f"the page is {wider}px wider than a phone's screen")
            # The timeline's table is wider than the phone: its region scrolls, with the keys.
            region = section.get_by_role("region", name="Timeline (UTC), scrollable", exact=True)
            sizes = region.evaluate("e => [e.scrollWidth, e.clientWidth]")
            assert sizes[0] > sizes[1], sizes
            region.focus()
            page.keyboard.press("ArrowRight")
            page.wait_for_function(
                "e => e.scrollLeft > 0", arg=region.element_handle(), timeout=5000
            )
    assert not problems, "\n\n".join(problems)


def test_the_published_postmortem_link_signs_in_and_comes_back(
    written: dict[str, Any], stack: Stack, new_context: Callable[..., BrowserContext]
) -> None:
    iid = written["id"]
    stack.act(iid, "postmortem/publish", "bob")
    path = f"/incidents/{iid}/postmortem"
    page = new_context().new_page()
    page.goto(path)
    page.wait_for_url(lambda url: urlsplit(url).path == "/login")
    assert parse_qs(urlsplit(page.url).query)["next"] == [path]
    page.get_by_label("API token").fill(USERS["carol"][1])  # a reader
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: urlsplit(url).path == path)
    assert page.locator("body").inner_text().startswith(f"# Postmortem: #{iid} ")
    # With the session, the incident's page links it, and the link opens at once.
    page.goto(f"/incidents/{iid}")
    page.locator("#postmortem").get_by_role("link", name="Published as").click()
    page.wait_for_url(lambda url: urlsplit(url).path == path)
    assert page.locator("body").inner_text().startswith(f"# Postmortem: #{iid} ")
