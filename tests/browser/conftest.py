"""Fixtures for the browser tests: a real bridge behind a real Alertmanager, and Chromium.

Playwright (``pytest-playwright``) drives Debian's ``chromium`` package through its executable
path: no browser is downloaded (``playwright install`` is never run). One Chromium for the
session (pytest-playwright's ``browser``), a new context per test (``new_context``). One bridge
(``incident-bridge serve`` with named tokens) and one Alertmanager posting to it serve the whole
session: every test fires alerts of its own ``alertname``, so each gets its own incident.

Without ``/usr/bin/chromium`` the tests skip; under ``CI=true`` they fail instead (CI must run
them), like ``tests/integration/procs.py:require_binary``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    BrowserType,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from tests.integration.procs import (
    ALERTMANAGER,
    Alertmanager,
    Bridge,
    alertmanager_config,
    http,
    in_ci,
    require_binary,
    running_alertmanagers,
    running_bridge,
    wait_for,
)
from tests.pgcluster import Cluster

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
DOC_IMAGES = REPO / "docs" / "img"
# Set to 1 to rewrite docs/img/page-*.png (deliberately; never on every run).
UPDATE_DOC_SCREENSHOTS = os.environ.get("UPDATE_DOC_SCREENSHOTS", "") == "1"
ALERT_TIMEOUT = 30.0  # seconds for Alertmanager to deliver (group_wait 1s; usually 1-3 s)

# Named tokens (docs/configuration.md "Named tokens"): two people who may write, one reader.
USERS: dict[str, tuple[str, str]] = {
    "alice": ("write", "browser-test-alice-token-0001"),
    "bob": ("write", "browser-test-bob-token-000002"),
    "carol": ("read", "browser-test-carol-token-0003"),
}

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def require_chromium() -> str:
    """Debian's Chromium; skip without it, but fail under CI=true (CI must run these tests)."""
    found = shutil.which(CHROMIUM)
    if found:
        return found
    message = f"{CHROMIUM} is not installed (Debian: apt-get install chromium)"
    if in_ci():
        pytest.fail(f"{message}; CI=true, so the browser tests must run", pytrace=False)
    pytest.skip(message)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.slow)


# --- pytest-playwright's fixtures, pointed at Debian's Chromium ---------------------------
#
# Its Playwright, browser type and browser are session fixtures; here they are this package's,
# so that Playwright's sync API (whose event loop counts as running while it lives) has
# stopped before the asyncio tests of the other directories run: pytest-asyncio refuses to
# start a loop inside a running one.


@pytest.fixture(scope="package")
def playwright(_pw_api_request_contexts: Any) -> Iterator[Playwright]:
    require_chromium()
    pw = sync_playwright().start()
    if _pw_api_request_contexts:
        _pw_api_request_contexts.instrument(pw)
    yield pw
    pw.stop()


@pytest.fixture(scope="package")
def browser_type(playwright: Playwright) -> BrowserType:
    return playwright.chromium


@pytest.fixture(scope="package")
def browser_type_launch_args(pytestconfig: pytest.Config) -> dict[str, Any]:
    args: dict[str, Any] = {"executable_path": require_chromium(), "args": []}
    if os.geteuid() == 0:
        args["args"].append("--no-sandbox")  # Chromium refuses its sandbox as root (CI is)
    if pytestconfig.getoption("--headed", False):
        args["headless"] = False
    slowmo = pytestconfig.getoption("--slowmo", 0)
    if slowmo:
        args["slow_mo"] = slowmo
    return args


@pytest.fixture(scope="package")
def launch_browser(
    browser_type_launch_args: dict[str, Any], browser_type: BrowserType
) -> Callable[..., Browser]:
    def launch(**kwargs: Any) -> Browser:
        return browser_type.launch(**{**browser_type_launch_args, **kwargs})

    return launch


@pytest.fixture(scope="package")
def browser(launch_browser: Callable[..., Browser]) -> Iterator[Browser]:
    launched = launch_browser()
    yield launched
    launched.close()


@pytest.fixture(scope="package")
def base_url(stack: Stack) -> str:
    # Also replaces pytest-playwright's own (a session fixture on a class instance, which
    # pytest 9 warns about): the pages' relative URLs go to the bridge.
    return stack.bridge.url


@pytest.fixture(scope="package")
def browser_context_args(base_url: str) -> dict[str, Any]:
    return {"base_url": base_url, "viewport": DESKTOP}


# --- the service ---------------------------------------------------------------------------


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Stack:
    """The bridge and the Alertmanager that posts to it."""

    bridge: Bridge
    alertmanager: Alertmanager

    def fire(
        self,
        summary: str,
        *,
        alerts: int = 1,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        generator_url: str = "http://prometheus.example/graph?g0.expr=up",
        alertname: str | None = None,
    ) -> dict[str, Any]:
        """Fire ``alerts`` alerts of a new group through Alertmanager; the incident they open
        (as the read API shows it) once the bridge has it."""
        # A new group each time; a given name must be used once a session.
        alertname = alertname or f"Browser{uuid.uuid4().hex[:10]}"
        base = {"alertname": alertname, "service": "checkout", "severity": "critical"}
        base.update(labels or {})
        body = [
            {
                "labels": {**base, "instance": f"web-{n + 1}"},
                "annotations": {"summary": summary, **(annotations or {})},
                "startsAt": now_rfc3339(),
                "generatorURL": generator_url,
            }
            for n in range(alerts)
        ]
        self.alertmanager.post_alerts(body)

        def probe() -> dict[str, Any] | None:
            listed_all = self.bridge.incidents()
            # The key holds Alertmanager's groupKey (grouped by alertname): look there first.
            mine = [i for i in listed_all if alertname in i["key"]] or listed_all
            for listed in mine:
                found = self.bridge.incident(listed["id"])
                names = {a["labels"].get("alertname") for a in found["alerts"]}
                if alertname in names and len(found["alerts"]) == alerts:
                    return found
            return None

        found: dict[str, Any] = wait_for(
            f"the incident of {alertname}", probe, ALERT_TIMEOUT, interval=0.2
        )
        return found

    def incident(self, incident_id: int) -> dict[str, Any]:
        return self.bridge.incident(incident_id)

    def act(self, incident_id: int, action: str, user: str = "alice", **body: Any) -> None:
        """The write API as ``user`` (setting up a page's content faster than its forms)."""
        resp = http(
            "POST",
            f"{self.bridge.url}/api/v1/incidents/{incident_id}/{action}",
            json.dumps(body).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {USERS[user][1]}"},
        )
        assert resp.status in (200, 201), (action, resp.status, resp.body[:500])


@contextlib.contextmanager
def running_stack(workdir: Path, database_url: str | None = None) -> Iterator[Stack]:
    """The bridge with the named tokens (on ``database_url``; None: SQLite) behind one
    Alertmanager."""
    require_chromium()  # no processes for tests that will skip
    alertmanager_binary = require_binary(ALERTMANAGER)
    tokens = workdir / "api-tokens"
    tokens.write_text(
        "# name scope token\n"
        + "".join(f"{name} {scope} {token}\n" for name, (scope, token) in USERS.items())
    )
    tokens.chmod(0o600)
    with running_bridge(
        workdir / "bridge",
        args=["--api-tokens-file", str(tokens)],
        api_token=USERS["carol"][1],
        database_url=database_url,
    ) as bridge:
        config = alertmanager_config(bridge.url, bridge.token)
        with running_alertmanagers(workdir, config, binary=alertmanager_binary) as (am,):
            yield Stack(bridge, am)


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("browser")) as running:
        yield running


@pytest.fixture(scope="package")
def pg_stack(tmp_path_factory: pytest.TempPathFactory, pg_cluster: Cluster) -> Iterator[Stack]:
    """The same on PostgreSQL, started only for the one story that runs on both backends (the
    browser tests are slow; the store's behaviour is the other tests' business)."""
    url = pg_cluster.new_database(template=pg_cluster.template)
    with running_stack(tmp_path_factory.mktemp("browser-pg"), url) as running:
        yield running


# --- the browser ---------------------------------------------------------------------------

TIMEOUT_MS = 10_000  # an action or expectation waits this long (Playwright's default: 30 s)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def new_context(
    new_context: Callable[..., BrowserContext], request: pytest.FixtureRequest
) -> Iterator[Callable[..., BrowserContext]]:
    """pytest-playwright's, with shorter timeouts; when the test fails, every page it opened
    is saved to test-artifacts/screenshots/failed/ (CI's artifacts)."""
    made: list[BrowserContext] = []

    def make(**kwargs: Any) -> BrowserContext:
        context = new_context(**kwargs)
        context.set_default_timeout(TIMEOUT_MS)
        made.append(context)
        return context

    expect.set_options(timeout=TIMEOUT_MS)
    yield make
    if request.node.stash.get(_FAILED, False):
        failed = SCREENSHOTS / "failed"
        failed.mkdir(parents=True, exist_ok=True)
        name = request.node.name.replace("[", "-").replace("]", "")
        for c, context in enumerate(made):
            for p, page in enumerate(context.pages):
                with contextlib.suppress(Exception):
                    page.screenshot(path=failed / f"{name}-{c}-{p}.png", full_page=True)


@pytest.fixture
def signed_in(new_context: Callable[..., BrowserContext]) -> Callable[..., Page]:
    """``signed_in("alice")``: a page in a new context (its own cookies) signed in as alice."""

    def make(user: str, **context_args: Any) -> Page:
        page = new_context(**context_args).new_page()
        sign_in(page, user)
        return page

    return make


def sign_in(page: Page, user: str, next_path: str = "/") -> None:
    """Through the sign-in form, as a person would: type the token, press "Sign in"."""
    page.goto("/login" if next_path == "/" else f"/login?next={quote(next_path)}")
    page.get_by_label("API token").fill(USERS[user][1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: urlsplit(url).path == next_path)
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


# --- axe-core ------------------------------------------------------------------------------

_AXE_SOURCE: str | None = None


def axe_source() -> str:
    global _AXE_SOURCE
    if _AXE_SOURCE is None:
        _AXE_SOURCE = AXE.read_text(encoding="utf-8")
    return _AXE_SOURCE


def run_axe(page: Page, within: str | None = None) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (WCAG 2.x A/AA and best practices), in
    the element ``within`` selects (the whole document by default).

    axe is injected with ``page.evaluate`` (the DevTools protocol's Runtime.evaluate), which
    the page's Content-Security-Policy does not apply to; ``add_script_tag`` would insert an
    inline ``<script>`` that the CSP rightly blocks. Nothing is added to the DOM."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source() + "\n;undefined")
    result: dict[str, Any] = page.evaluate(
        """async (within) => {
            const r = await axe.run(within || document, {resultTypes: ['violations']});
            return r.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                nodes: v.nodes.map(n => ({target: n.target, html: n.html,
                                          summary: n.failureSummary})),
            }));
        }""",
        within,
    )
    return list(result)


def format_violations(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"]:
            lines.append(f"    at {' '.join(map(str, node['target']))}: {node['html'][:200]}")
            for detail in (node["summary"] or "").splitlines():
                lines.append(f"        {detail}")
    return "\n".join(lines)


def assert_accessible(page: Page, name: str, within: str | None = None) -> list[dict[str, Any]]:
    """No ``serious`` or ``critical`` axe violation; the lesser ones are returned (and printed)."""
    violations = run_axe(page, within)
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    minor = [v for v in violations if v not in bad]
    if minor:
        print(f"axe, {name} ({page.url}), minor:\n{format_violations(minor)}")
    if bad:
        raise AssertionError(f"axe on {name} ({page.url}):\n{format_violations(bad)}")
    return minor


# --- screenshots ---------------------------------------------------------------------------


def screenshot(page: Page, name: str, width: str) -> Path:
    """The whole page into test-artifacts/screenshots/ (CI's artifacts); with
    UPDATE_DOC_SCREENSHOTS=1 also into docs/img/page-<name>-<width>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"page-{name}-{width}.png"
    page.screenshot(path=path, full_page=True, animations="disabled", caret="hide")
    if UPDATE_DOC_SCREENSHOTS:
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOC_IMAGES / path.name)
    return path


def dump(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)[:4000]
