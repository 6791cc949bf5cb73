"""What the alerts carry is data, never markup, script or template: checked in the DOM a real
browser built, and the page's Content-Security-Policy checked to block inline script.

Alertmanager delivers alerts whose labels and annotations hold ``<script>``, ``javascript:``
URLs (as ``generatorURL`` and ``runbook_url``) and Jinja2 syntax; the pages must show them as
text, link nothing but http(s), and evaluate no template.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.conftest import Stack

SCRIPT = "<script>alert(1)</script>"
TEMPLATE = "{{ 7*7 }}"
RAW = "{% raw %}"
JS_URL = "javascript:alert(1)"


def test_hostile_alert_is_shown_as_text(stack: Stack, signed_in: Callable[..., Page]) -> None:
    incident = stack.fire(
        f"Pwned {SCRIPT} {TEMPLATE} {RAW}",
        alerts=2,
        labels={"instance_note": SCRIPT, "template": TEMPLATE, "raw": RAW},
        annotations={
            "description": f"{SCRIPT} and {TEMPLATE} and {RAW}",
            "runbook_url": JS_URL,
        },
        generator_url="JavaScript:alert(1)",  # the scheme in any case
    )
    iid = incident["id"]
    page = signed_in("alice")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    for path in ("/", f"/incidents/{iid}"):
        page.goto(path)
        # The list shows the title literally too.
        assert_no_injection(page)
        text = page.locator("body").inner_text()
        assert SCRIPT in text, f"{path}: the <script> text is not shown literally"
        assert TEMPLATE in text, f"{path}: the template text is not shown literally"
        assert "Pwned <script>alert(1)</script> 49" not in text

    title = page.locator("#title")
    expect(title).to_contain_text(f"Pwned {SCRIPT} {TEMPLATE} {RAW}")
    alerts = page.locator("#alerts")
    expect(alerts).to_contain_text(SCRIPT)
    expect(alerts).to_contain_text(TEMPLATE)
    expect(alerts).to_contain_text(RAW)
    # Where {{ 7*7 }} was, 49 is not (timestamps elsewhere may hold a 49 of their own).
    assert " 49 " not in title.inner_text()
    assert "=49" not in alerts.inner_text().replace(" ", "")
    assert "and 49 and" not in page.locator("body").inner_text()
    # No "source" or "runbook" link for a javascript: URL.
    expect(alerts.get_by_role("link", name="source")).to_have_count(0)
    expect(alerts.get_by_role("link", name="runbook")).to_have_count(0)
    assert dialogs == [], dialogs


def assert_no_injection(page: Page) -> None:
    found: dict[str, Any] = page.evaluate(
        """() => ({
            inline: document.querySelectorAll('script:not([src])').length,
            scripts: [...document.scripts].map(s => s.src),
            jsHrefs: [...document.querySelectorAll('[href],[src],[action],[formaction]')]
                .map(e => e.getAttribute('href') || e.getAttribute('src')
                          || e.getAttribute('action') || e.getAttribute('formaction') || '')
                .filter(u => /^\\s*javascript:/i.test(u)),
            handlers: [...document.querySelectorAll('*')].flatMap(e =>
                [...e.attributes].filter(a => /^on/i.test(a.name)).map(a => e.tagName + ' ' + a.name)),
            origin: location.origin,
        })"""
    )
    assert found["inline"] == 0, f"{page.url}: an inline script element"
    for src in found["scripts"]:
        assert src.startswith(found["origin"] + "/"), f"{page.url}: a script from {src}"
    assert found["jsHrefs"] == [], f"{page.url}: javascript: URLs {found['jsHrefs']}"
    assert found["handlers"] == [], f"{page.url}: inline event handlers {found['handlers']}"


def test_content_security_policy_blocks_inline_script(
    stack: Stack, signed_in: Callable[..., Page]
) -> None:
    incident = stack.fire("The policy holds")
    iid = incident["id"]
    page = signed_in("alice")
    console: list[tuple[str, str]] = []
    page.on("console", lambda m: console.append((m.type, m.text)))
    page.on("pageerror", lambda e: console.append(("pageerror", str(e))))

    for path in ("/login", "/", f"/incidents/{iid}"):
        response = page.goto(path)
        assert response is not None
        policy = response.headers.get("content-security-policy", "")
        assert "script-src" in policy or "default-src" in policy, (path, policy)
        assert "'unsafe-inline'" not in policy, (path, policy)
        assert page.evaluate("() => document.querySelectorAll('script:not([src])').length") == 0
    expect(page.locator("#live")).to_have_text("Live")  # our own script runs under the policy

    # Our own pages caused no CSP violation (nor any other error) in the console.
    csp = [t for _, t in console if "Content Security Policy" in t or "Content-Security" in t]
    assert csp == [], csp
    errors = [(kind, t) for kind, t in console if kind in ("error", "pageerror")]
    assert errors == [], errors

    # An inline script put into the page is refused, and the refusal is reported.
    page.evaluate(
        """() => { window.__violations = [];
                   document.addEventListener('securitypolicyviolation',
                       e => window.__violations.push(e.violatedDirective)); }"""
    )
    page.evaluate(
        """() => { const s = document.createElement('script');
                   s.textContent = 'window.__ran = true;';
                   document.body.appendChild(s); }"""
    )
    page.wait_for_function("() => window.__violations.length > 0")
    assert page.evaluate("() => window.__ran") is None
    violated = page.evaluate("() => window.__violations")
    assert any(v.startswith("script-src") for v in violated), violated
    # A javascript: URL navigated to does not run either.
    page.evaluate(
        """() => { const a = document.createElement('a');
                   a.href = 'javascript:window.__ran2 = true'; document.body.appendChild(a);
                   a.click(); }"""
    )
    page.wait_for_timeout(200)
    assert page.evaluate("() => window.__ran2") is None


def test_every_form_carries_a_csrf_token(stack: Stack, signed_in: Callable[..., Page]) -> None:
    incident = stack.fire("Forms carry their token")
    iid = incident["id"]
    page = signed_in("alice")
    for path in ("/", f"/incidents/{iid}"):
        page.goto(path)
        forms: list[dict[str, Any]] = page.locator("form[method=post i]").evaluate_all(
            """fs => fs.map(f => ({action: f.getAttribute('action'),
                csrf: [...f.querySelectorAll('input[name=csrf]')]
                    .map(i => [i.type, i.value.length])}))"""
        )
        assert forms, path
        for form in forms:
            assert len(form["csrf"]) == 1, form
            kind, length = form["csrf"][0]
            assert kind == "hidden" and length >= 16, form

    # Alice's own session, a POST without her form's token: refused, nothing changes.
    action = page.locator("form", has=page.get_by_role("button", name="Acknowledge")).get_attribute(
        "action"
    )
    assert action
    for csrf in ("", "forged-token-forged-token-forged"):
        resp = page.request.post(stack.bridge.url + action, form={"csrf": csrf}, max_redirects=0)
        assert resp.status in (400, 403), (csrf, resp.status)
    assert stack.incident(iid)["status"] == "triggered"
