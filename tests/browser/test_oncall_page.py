"""The on-call page in a real browser, on a service whose rules have a rotation: reached from
the nav, checked by axe at both widths; an override made through its form (a refusal shown on
the form, naming the field, with what was typed), the table following at once, the override
ended with its button; a reader sees no form."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import DESKTOP, PHONE, USERS, assert_accessible, screenshot
from tests.integration.procs import Bridge, running_bridge

RULES = """
targets:
  room: {type: console}
rotations:
  ops:
    members: [alice, bob]
    period: daily
route:
  tiers: {incident: room}
"""


@pytest.fixture(scope="module")
def oncall_bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    workdir = tmp_path_factory.mktemp("oncall-page")
    rules = workdir / "rules.yaml"
    rules.write_text(RULES)
    tokens = workdir / "api-tokens"
    tokens.write_text("".join(f"{n} {scope} {tok}\n" for n, (scope, tok) in USERS.items()))
    tokens.chmod(0o600)
    with running_bridge(
        workdir / "bridge",
        args=["--api-tokens-file", str(tokens), "--rules", str(rules)],
        api_token=USERS["carol"][1],
    ) as bridge:
        yield bridge


@pytest.fixture(scope="module")
def base_url(oncall_bridge: Bridge) -> str:
    """This module's pages are those of its own service (rules with a rotation)."""
    return oncall_bridge.url


@pytest.fixture(scope="module")
def browser_context_args(base_url: str) -> dict[str, Any]:
    return {"base_url": base_url, "viewport": DESKTOP}


def local(delta: timedelta) -> str:
    """A datetime-local value in the rotation's zone (UTC)."""
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M")


def test_the_on_call_page_and_an_override_through_its_form(
    oncall_bridge: Bridge, signed_in: Callable[..., Page]
) -> None:
    page = signed_in("alice")
    page.get_by_role("link", name="On call").click()
    page.wait_for_url(re.compile(r"/oncall$"))
    row = page.locator("#oncall tbody tr")
    expect(row).to_have_count(1)
    holder = row.locator("td").first.inner_text()
    other = "bob" if holder == "alice" else "alice"
    for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        screenshot(page, "oncall", width)
        assert_accessible(page, f"oncall ({width})")
    page.set_viewport_size(DESKTOP)

    form = page.locator("form#override")
    form.get_by_label("Person").select_option(other)
    form.get_by_label("Until").fill(local(timedelta(hours=-1)))
    form.get_by_label("Why").fill("covering the release")
    form.get_by_role("button", name="Make override").click()
    expect(page.locator("#error")).to_contain_text("end: ")
    expect(form.get_by_label("Why")).to_have_value("covering the release")
    assert_accessible(page, "oncall (refused)")

    form.get_by_label("Until").fill(local(timedelta(hours=2)))
    form.get_by_role("button", name="Make override").click()
    page.wait_for_url(re.compile(r"/oncall$"))
    expect(page.locator("#oncall tbody tr td").first).to_have_text(other)
    listed = page.locator("#overrides tbody tr")
    expect(listed).to_have_count(1)
    expect(listed).to_contain_text("covering the release")
    expect(listed).to_contain_text("alice")  # who made it
    assert_accessible(page, "oncall (an override)")

    listed.get_by_role("button", name=re.compile("^End now: override")).click()
    page.wait_for_url(re.compile(r"/oncall$"))
    expect(page.locator("#no-overrides")).to_be_visible()
    expect(page.locator("#oncall tbody tr td").first).to_have_text(holder)


def test_a_reader_sees_who_is_on_call_and_no_form(
    oncall_bridge: Bridge, signed_in: Callable[..., Page]
) -> None:
    page = signed_in("carol")
    page.goto("/oncall")
    expect(page.locator("#oncall tbody tr")).to_have_count(1)
    expect(page.locator("form#override")).to_have_count(0)
