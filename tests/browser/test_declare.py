"""Declaring an incident from the pages, in a real browser: the list's "Declare incident" button,
the form (checked by axe at both widths), a refusal shown on the form with what was typed, then
the new incident's page saying who declared it; a reader gets no button."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.browser.conftest import DESKTOP, PHONE, Stack, assert_accessible, screenshot


def test_declare_an_incident_from_the_list(stack: Stack, signed_in: Callable[..., Page]) -> None:
    page = signed_in("alice")
    page.get_by_role("link", name="Declare incident").click()
    page.wait_for_url(re.compile(r"/declare$"))
    form = page.locator("form#declare")
    for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        screenshot(page, "declare", width)
        assert_accessible(page, f"declare ({width})")
    page.set_viewport_size(DESKTOP)

    title = f"Checkout is slow {uuid.uuid4().hex[:6]}"
    form.get_by_label("Title").fill(title)
    form.get_by_label("Severity").select_option("sev2")
    form.get_by_label("Team").fill("payments")
    form.get_by_label("What is known").fill("p99 at 4 s since the deploy")
    form.get_by_label("Labels").fill("service=checkout\nnot a label")
    form.get_by_role("button", name="Declare incident").click()
    # refused: the form again, the message naming the line, what was typed kept
    expect(page.locator("#error")).to_contain_text("labels: line 2 is not name=value")
    expect(form.get_by_label("Title")).to_have_value(title)
    assert_accessible(page, "declare (refused)")
    assert not [i for i in stack.bridge.incidents() if i["title"] == title]

    form.get_by_label("Labels").fill("service=checkout")
    form.get_by_role("button", name="Declare incident").click()
    page.wait_for_url(re.compile(r"/incidents/\d+$"))
    iid = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("h1#title")).to_have_text(f"#{iid} {title}")
    expect(page.locator("#source")).to_have_text("Declared by alice: p99 at 4 s since the deploy")
    incident = stack.incident(iid)
    assert (incident["severity"], incident["team"], incident["service"]) == (
        "sev2",
        "payments",
        "checkout",
    )
    assert incident["source"]["declared_by"] == "alice"


def test_a_reader_gets_no_declare_button(stack: Stack, signed_in: Callable[..., Page]) -> None:
    page = signed_in("carol")
    expect(page.get_by_role("link", name="Declare incident")).to_have_count(0)
    page.goto("/declare")
    expect(page.locator("form#declare")).to_have_count(0)
