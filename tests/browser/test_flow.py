"""A responder's work in a real browser, on incidents a real Alertmanager opened.

Sign in with a named token, find the incident in the list, acknowledge it, take the commander
role, add a note, see a second responder's note appear without a reload (Server-Sent Events),
resolve it; the read-only user sees no form; the pages work without JavaScript.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import USERS, Stack, now_rfc3339, sign_in

LIVE_TIMEOUT = 10_000  # ms for an entry to arrive over the live connection


def timeline_ids(page: Page) -> list[str]:
    ids: list[str] = page.locator("#timeline li[data-id]").evaluate_all(
        "lis => lis.map(li => li.dataset.id)"
    )
    return ids


def add_entry(page: Page, text: str, kind: str = "note") -> None:
    form = page.locator("#add-entry")
    form.locator("select[name=kind]").select_option(kind)
    form.get_by_label("Entry", exact=True).fill(text)
    form.get_by_role("button", name="Add to timeline").click()


@pytest.fixture
def browser_context_args(
    browser_context_args: dict[str, Any], request: pytest.FixtureRequest
) -> dict[str, Any]:
    """The package's, its pages' relative URLs going to the PostgreSQL stack's bridge when the
    test runs on that backend."""
    if "backend" in request.fixturenames and request.getfixturevalue("backend") == "postgresql":
        stack: Stack = request.getfixturevalue("pg_stack")
        return {**browser_context_args, "base_url": stack.bridge.url}
    return browser_context_args


def test_responder_flow(
    backend: str, request: pytest.FixtureRequest, signed_in: Callable[..., Page]
) -> None:
    """The main story, on each backend (the one browser test that runs on PostgreSQL too)."""
    stack: Stack = request.getfixturevalue("stack" if backend == "sqlite" else "pg_stack")
    incident = stack.fire("Checkout answers slowly", alerts=2)
    iid = incident["id"]
    alice = signed_in("alice")

    # The list: a row for the incident, its title a link to the page.
    row = alice.locator(f'#incidents tr[data-id="{iid}"]')
    expect(row).to_be_visible()
    row.get_by_role("link", name=incident["title"]).click()
    alice.wait_for_url(f"**/incidents/{iid}")
    expect(alice.locator("#title")).to_contain_text(incident["title"])
    expect(alice.locator("#status")).to_have_attribute("data-status", "triggered")
    expect(alice.locator("#alerts li")).to_have_count(2)
    expect(alice.locator("#live")).to_have_text("Live")

    alice.get_by_role("button", name="Acknowledge").click()
    expect(alice.locator("#status")).to_have_attribute("data-status", "acknowledged")
    expect(alice.get_by_role("button", name="Acknowledge")).to_have_count(0)

    alice.locator("#roles").get_by_role("button", name="Take commander").click()
    expect(alice.locator("#roles")).to_contain_text("alice")

    add_entry(alice, "Rolled checkout back to v41")
    mine = alice.locator('#timeline li[data-kind="note"]', has_text="Rolled checkout back to v41")
    expect(mine).to_have_count(1)
    expect(mine.locator("b.actor")).to_have_text("alice")

    # A second browser (bob's own context, his own session) adds a note; alice's page shows it
    # without a reload: the marker set in her window survives.
    bob = signed_in("bob")
    bob.goto(f"/incidents/{iid}")
    expect(bob.locator("#live")).to_have_text("Live")
    expect(alice.locator("#live")).to_have_text("Live")
    alice.evaluate("() => { window.__noReload = 'still here'; }")
    before = timeline_ids(alice)
    add_entry(bob, "Error rate is back to its baseline")
    theirs = alice.locator("#timeline li", has_text="Error rate is back to its baseline")
    expect(theirs).to_have_count(1, timeout=LIVE_TIMEOUT)
    expect(theirs).to_have_attribute("data-kind", "note")
    expect(theirs.locator("b.actor")).to_have_text("bob")
    assert alice.evaluate("() => window.__noReload") == "still here", "alice's page reloaded"
    after = timeline_ids(alice)
    assert after[: len(before)] == before, "the live entry must be appended, not reorder"
    assert len(after) == len(set(after)), f"an entry shown twice: {after}"

    # Resolve, with a reason.
    resolve = alice.locator("form", has=alice.get_by_role("button", name="Resolve"))
    resolve.get_by_label("Reason").fill("rolled back; error rate at baseline")
    resolve.get_by_role("button", name="Resolve").click()
    expect(alice.locator("#status")).to_have_attribute("data-status", "resolved")
    expect(alice.get_by_role("button", name="Resolve")).to_have_count(0)
    # bob's page follows live too
    expect(bob.locator("#status")).to_have_attribute(
        "data-status", "resolved", timeout=LIVE_TIMEOUT
    )

    # What the browser did is what the service recorded.
    found = stack.incident(iid)
    assert found["status"] == "resolved"
    assert found["roles"].get("commander") in (["alice"], "alice"), found["roles"]
    notes = [(e["actor"], e["text"]) for e in found["timeline"] if e["kind"] == "note"]
    assert any(a == "alice" and "Rolled checkout back to v41" in t for a, t in notes), notes
    assert any(a == "bob" and "Error rate is back to its baseline" in t for a, t in notes), notes
    assert any("rolled back; error rate at baseline" in e["text"] for e in found["timeline"])


def test_sign_in_cookie_next_and_sign_out(stack: Stack, new_context: Any) -> None:
    incident = stack.fire("Sign-in lands where it was asked")
    context: BrowserContext = new_context()
    page = context.new_page()

    # A wrong token: still the sign-in page, no session.
    page.goto("/login")
    page.get_by_label("API token").fill("not-a-token-of-anyone-0000")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("form#login")).to_be_visible()
    assert not [c for c in context.cookies() if c["name"] == "ib_session"]

    # A page asked for while signed out leads to the sign-in, and back to it after.
    page.goto(f"/incidents/{incident['id']}")
    assert "/login" in page.url, page.url
    sign_in(page, "alice", next_path=f"/incidents/{incident['id']}")
    expect(page.locator("#title")).to_contain_text(incident["title"])
    (cookie,) = [c for c in context.cookies() if c["name"] == "ib_session"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert USERS["alice"][1] not in cookie["value"]

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/login"))
    page.goto("/")
    assert "/login" in page.url, page.url


def test_next_never_leaves_the_site(stack: Stack, new_context: Any) -> None:
    page = new_context().new_page()
    page.goto("/login?next=//evil.example/")
    page.get_by_label("API token").fill(USERS["alice"][1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert page.url.startswith(stack.bridge.url + "/"), page.url


def test_read_only_user_sees_no_forms(stack: Stack, signed_in: Callable[..., Page]) -> None:
    incident = stack.fire("A reader only reads")
    iid = incident["id"]
    alice = signed_in("alice")
    alice.goto(f"/incidents/{iid}")
    ack_form = alice.locator("form", has=alice.get_by_role("button", name="Acknowledge"))
    ack_action = ack_form.get_attribute("action")
    assert ack_action

    carol = signed_in("carol")
    for path in ("/", f"/incidents/{iid}"):
        carol.goto(path)
        # The list's search and filters are GET forms (they change nothing): those stay.
        posts = carol.locator("form[method=post i]")
        expect(posts).to_have_count(1)
        expect(posts.get_by_role("button", name="Sign out")).to_be_visible()
        expect(carol.locator("textarea")).to_have_count(0)
        expect(carol.locator("input[name=csrf]")).to_have_count(1)  # the sign-out's
    for name in ("Acknowledge", "Take commander", "Add to timeline", "Post update", "Assign"):
        expect(carol.get_by_role("button", name=name)).to_have_count(0)
    expect(carol.locator("#timeline")).to_be_visible()
    expect(carol.locator("#alerts li")).to_have_count(1)

    # Her session cannot post what the form would have (no CSRF token of hers, no right).
    resp = carol.request.post(stack.bridge.url + ack_action, form={"csrf": "x"}, max_redirects=0)
    assert resp.status in (400, 403), resp.status
    assert stack.incident(iid)["status"] == "triggered"


def test_pages_work_without_javascript(stack: Stack, new_context: Any) -> None:
    incident = stack.fire("Works without JavaScript", alerts=2)
    iid = incident["id"]
    page = new_context(java_script_enabled=False).new_page()
    sign_in(page, "alice", next_path=f"/incidents/{iid}")

    expect(page.locator("#title")).to_contain_text(incident["title"])
    expect(page.locator("#alerts li")).to_have_count(2)
    for section in ("#roles", "#timeline", "#followup", "#postmortem", "#notifications"):
        expect(page.locator(section)).to_be_attached()
    expect(page.locator("#live")).not_to_have_text("Live")

    # Each form is a plain POST answered by a 303 back to the page.
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Acknowledge").click()
    assert posted.value.status == 303, posted.value.status
    page.wait_for_load_state()
    assert page.url.split("#")[0].endswith(f"/incidents/{iid}"), page.url
    expect(page.locator("#status")).to_have_attribute("data-status", "acknowledged")

    add_entry(page, "Decided to fail over to the second region", kind="decision")
    entry = page.locator('#timeline li[data-kind="decision"]', has_text="fail over")
    expect(entry).to_have_count(1)
    expect(entry.locator("b.actor")).to_have_text("alice")

    page.locator("#roles").get_by_role("button", name="Take commander").click()
    expect(page.locator("#roles")).to_contain_text("alice")


def test_list_filters_and_search(stack: Stack, signed_in: Callable[..., Page]) -> None:
    payments = stack.fire("Payments queue backs up", labels={"team": "payments"})
    platform = stack.fire("Disk fills on the platform nodes", labels={"team": "platform"})
    page = signed_in("alice")
    for found in (payments, platform):
        expect(page.locator(f'#incidents tr[data-id="{found["id"]}"]')).to_be_visible()

    filters = page.locator("#filters")
    team = payments["team"]
    assert team, payments
    filters.locator("select[name=team]").select_option(team)
    filters.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"team="))
    expect(page.locator(f'#incidents tr[data-id="{payments["id"]}"]')).to_be_visible()
    expect(page.locator(f'#incidents tr[data-id="{platform["id"]}"]')).to_have_count(0)
    for row_team in page.locator("#incidents tbody tr").all_inner_texts():
        assert team in row_team, row_team

    page.goto("/")
    search = page.locator("#search")
    search.get_by_label("Search").fill("backs up")
    search.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"q="))
    # The results are a list of links (with the matching words marked), not the table.
    main = page.get_by_role("main")
    expect(main.locator(f'a[href="/incidents/{payments["id"]}"]')).to_be_visible()
    expect(main.locator(f'a[href="/incidents/{platform["id"]}"]')).to_have_count(0)


def test_list_pages_with_older(stack: Stack, signed_in: Callable[..., Page]) -> None:
    # 51 incidents more than any page holds: posted to the webhook directly (fast), as
    # Alertmanager would have sent them.
    run = uuid.uuid4().hex[:8]
    for n in range(51):
        name = f"Paging{run}n{n}"
        alert = {
            "status": "firing",
            "labels": {"alertname": name, "service": "paging", "severity": "warning"},
            "annotations": {"summary": f"Paging test {n}"},
            "startsAt": now_rfc3339(),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example/graph",
            "fingerprint": f"{run}{n:08x}",
        }
        resp = stack.bridge.post_webhook(
            {
                "receiver": "bridge",
                "status": "firing",
                "alerts": [alert],
                "groupLabels": {"alertname": name},
                "commonLabels": alert["labels"],
                "commonAnnotations": alert["annotations"],
                "externalURL": stack.alertmanager.url,
                "version": "4",
                "groupKey": f'{{}}:{{alertname="{name}"}}',
                "truncatedAlerts": 0,
            }
        )
        assert resp.status == 200, resp.body[:300]

    page = signed_in("alice")
    first = [int(i) for i in row_ids(page)]
    assert len(first) >= 10, first
    page.get_by_role("link", name="Older").click()
    page.wait_for_load_state()
    second = [int(i) for i in row_ids(page)]
    assert second, "the older page is empty"
    assert not set(first) & set(second), (first, second)
    assert max(second) < min(first), "older means older: newest first, page after page"


def row_ids(page: Page) -> list[str]:
    expect(page.locator("#incidents")).to_be_visible()
    ids: list[str] = page.locator("#incidents tr[data-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.id)"
    )
    return ids
