"""The public status page through the running service, on each backend: a public update on
the page and in the Atom feed (parsed by feedparser), nothing private ever on either (one
entry of every timeline kind, internal status updates, the incident's title, labels and
people, each with a marker), the components' states, links by hand, and the listener of
``--status-listen`` that serves nothing else."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import feedparser
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.config import ConfigError
from bridge.core.events import TIMELINE_KINDS
from bridge.core.secrets import Secret
from bridge.http.status import create_status_app
from tests.conftest import WRITE, Clock, MakeClient, RulesService, execute
from tests.http.test_pages import ALICE, NAMED, TOKEN, csrf_of, opened, sign_in
from tests.test_config import settings

RULES = """
targets:
  room: {type: console}
route:
  name: root
  tiers: {incident: room}
  routes:
    - name: payments
      matchers: ['team="payments"']
components:
  checkout: {name: Checkout, description: Cart and payment, routes: [payments]}
  search: {name: Search, labels: {service: search}}
  mail: {name: Mail}
"""
SECRET_TITLE = "db-primary-7.internal.example OOM for customer ACME-SECRET"


@pytest.fixture
async def service(
    tmp_path: Path,
    clock: Clock,
    aiohttp_client: Callable[..., Awaitable[Any]],
    db_settings: dict[str, Any],
) -> AsyncIterator[RulesService]:
    svc = RulesService(tmp_path, clock, aiohttp_client, RULES, db_settings)
    await svc.serve()
    yield svc
    await svc.close()


def _webhook(labels: dict[str, str], severity: str = "critical") -> dict[str, Any]:
    labels = {"alertname": "HighErrorRate", "severity": severity, **labels}
    return {
        "version": "4",
        "groupKey": "{}:" + json.dumps(labels, sort_keys=True),
        "status": "firing",
        "receiver": "bridge",
        "commonAnnotations": {"summary": SECRET_TITLE},
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": SECRET_TITLE, "runbook_url": "https://wiki.x/rb"},
                "startsAt": "2026-11-27T04:00:00Z",
                "generatorURL": "http://prometheus.internal:9090/graph?g0.expr=up",
            }
        ],
    }


async def _open(svc: RulesService, labels: dict[str, str], severity: str = "critical") -> int:
    assert svc.client is not None
    resp = await svc.client.post("/api/v1/alerts", json=_webhook(labels, severity))
    assert resp.status == 200, await resp.text()
    (incident,) = [r[0] for r in svc.rows("SELECT id FROM incidents ORDER BY id DESC LIMIT 1")]
    return int(incident)


async def _post(
    svc: RulesService, incident: int, action: str, body: dict[str, Any], **headers: str
) -> Any:
    assert svc.client is not None
    return await svc.client.post(
        f"/api/v1/incidents/{incident}/{action}", json=body, headers={**WRITE, **headers}
    )


async def _page_and_feed(client: TestClient[Any, Any]) -> tuple[str, str, Any]:
    page = await client.get("/status")
    assert page.status == 200
    assert "Set-Cookie" not in page.headers
    assert page.headers["Cache-Control"] == "public, max-age=30"
    feed = await client.get("/status/feed.atom")
    assert feed.status == 200
    assert feed.headers["Content-Type"].startswith("application/atom+xml")
    assert "Set-Cookie" not in feed.headers
    text = await feed.text()
    return await page.text(), text, feedparser.parse(text)


def _states(page: str) -> dict[str, str]:
    found = re.findall(r'<li class="component state-(\w+)"><span class="name">([^<]+)</span>', page)
    return {name: state for state, name in found}


async def test_a_public_update_is_on_the_page_and_in_the_feed(service: RulesService) -> None:
    client = service.client
    assert client is not None
    page, _, parsed = await _page_and_feed(client)
    assert _states(page) == {
        "Checkout": "operational",
        "Search": "operational",
        "Mail": "operational",
    }
    assert "All systems operational" in page and parsed.entries == []

    incident = await _open(service, {"team": "payments"})
    resp = await _post(
        service,
        incident,
        "updates",
        {
            "text": "bob: rolled back db-primary-7, ACME still failing",
            "public": True,
            "public_title": "Payments failing",
            "public_text": "Some card payments fail. We are rolling back a change.",
        },
    )
    assert resp.status == 200, await resp.text()
    resp = await _post(
        service,
        incident,
        "updates",
        {"text": "Recovery is under way; next update in 30 minutes.", "public": True},
    )
    assert resp.status == 200, await resp.text()

    page, raw, parsed = await _page_and_feed(client)
    # critical maps to sev1 in the built-in severity labels: the linked component is down
    assert _states(page) == {"Checkout": "outage", "Search": "operational", "Mail": "operational"}
    assert "Some systems are down" in page
    first = page.index("Recovery is under way")
    assert first < page.index("Some card payments fail"), "newest first"
    assert page.count("Payments failing") == 2  # the second update inherits the public title

    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    # RFC 4287's required elements: the feed's id, title, updated and author; an entry's id,
    # title and updated (each entry's newest first, the feed's the newest entry's)
    assert parsed.feed.author == "Service status"
    assert parsed.feed.updated_parsed == parsed.entries[0].updated_parsed
    assert parsed.entries[0].updated_parsed >= parsed.entries[1].updated_parsed
    assert parsed.feed.title == "Service status"
    assert parsed.feed.id.startswith("urn:uuid:")
    assert [e.title for e in parsed.entries] == ["Payments failing", "Payments failing"]
    assert parsed.entries[0].content[0].value.startswith("Recovery is under way")
    assert parsed.entries[1].summary == "Some card payments fail. We are rolling back a change."
    assert [t.term for t in parsed.entries[0].tags] == ["Checkout"]
    assert all(e.updated_parsed is not None for e in parsed.entries)
    ids = [e.id for e in parsed.entries]
    assert len(set(ids)) == 2
    # stable: the same ids and feed id on the next read
    _, _, again = await _page_and_feed(client)
    assert [e.id for e in again.entries] == ids and again.feed.id == parsed.feed.id
    assert "bob" not in page + raw and "db-primary-7" not in page + raw

    # mitigated: the impact stopped, the component is operational again
    resp = await _post(service, incident, "mitigate", {})
    assert resp.status == 200
    page, _, _ = await _page_and_feed(client)
    assert _states(page)["Checkout"] == "operational"


async def test_nothing_private_reaches_the_page_or_the_feed(service: RulesService) -> None:
    """One timeline entry of every kind of the vocabulary, each with its own marker in its
    text, data and actor; an internal status update; the incident's title, labels and people:
    none of it on the page or in the feed, while a public update of the same incident is."""
    client, store = service.client, service.store
    assert client is not None and store is not None
    incident = await _open(
        service, {"team": "payments", "service": "search", "pod": "pod-LABELMARK-1"}, "warning"
    )
    markers = []
    for i, kind in enumerate(TIMELINE_KINDS):
        marker = f"MARK{i:02d}X{kind.upper()}"
        markers.append(marker)
        data = {"text": marker, "public_marker": marker}
        if kind == "status_update":
            data = {"text": marker}  # an internal one: not marked public
        execute(
            store,
            "INSERT INTO timeline (id, incident_id, time, kind, actor, text, data) "
            "VALUES ((SELECT max(id) + 1 FROM timeline), ?, ?, ?, ?, ?, ?)",
            (incident, 1, kind, f"actor-{marker}", f"{kind}: {marker}", json.dumps(data)),
        )
    resp = await _post(
        service,
        incident,
        "updates",
        {"text": "Internal: carol says INTERNALMARK", "next_update_in": 600},
    )
    assert resp.status == 200
    for role, person in (("commander", "alice-PERSONMARK"), ("liaison", "dave-PERSONMARK")):
        resp = await _post(service, incident, "roles", {"role": role, "person": person})
        assert resp.status == 200, await resp.text()
    resp = await _post(service, incident, "notes", {"text": "NOTEMARK see https://grafana.x/d/1"})
    assert resp.status == 200
    resp = await _post(
        service,
        incident,
        "updates",
        {"text": "carol: INTERNALMARK2", "public": True, "public_text": "Search is slow."},
    )
    assert resp.status == 200

    page, raw, parsed = await _page_and_feed(client)
    assert not parsed.bozo
    assert [e.content[0].value for e in parsed.entries] == ["Search is slow."]
    # warning is sev3 by the built-in severity mapping: degraded, by the route and the labels
    assert _states(page) == {"Checkout": "degraded", "Search": "degraded", "Mail": "operational"}
    both = page + raw
    leaks = [m for m in markers if m in both]
    assert leaks == []
    for private in (
        "INTERNALMARK",
        "PERSONMARK",
        "NOTEMARK",
        "LABELMARK",
        "ACME",
        "db-primary",
        "HighErrorRate",
        "payments",  # the team label and the route's name
        "carol",
        "actor-",
        "grafana",
        "prometheus",
        "wiki",
        f"/incidents/{incident}",
    ):
        assert private not in both, private
    # the only links: the page itself, its feed and stylesheet (relative on the page)
    assert set(re.findall(r'href="([^"]+)"', page)) == {"/status/status.css", "/status/feed.atom"}
    links = set(re.findall(r'href="([^"]+)"', raw))
    assert {re.sub(r"^http://[^/]+", "", u) for u in links} == {"/status", "/status/feed.atom"}


async def test_components_linked_and_unlinked_by_hand(service: RulesService) -> None:
    client = service.client
    assert client is not None
    incident = await _open(service, {"team": "payments"}, "warning")
    key = {"Idempotency-Key": "link-1"}
    resp = await _post(
        service, incident, "components", {"add": ["mail"], "remove": ["checkout"]}, **key
    )
    assert resp.status == 200, await resp.text()
    again = await _post(
        service, incident, "components", {"add": ["mail"], "remove": ["checkout"]}, **key
    )
    assert again.status == 200 and again.headers.get("Idempotent-Replayed") == "true"
    entries = service.rows(
        "SELECT text, data FROM timeline WHERE incident_id = ? AND kind = 'components_changed'",
        incident,
    )
    assert len(entries) == 1
    assert entries[0][0] == "Components: linked to mail; unlinked from checkout"
    page, _, _ = await _page_and_feed(client)
    assert _states(page) == {"Checkout": "operational", "Search": "operational", "Mail": "degraded"}

    resp = await _post(service, incident, "components", {"add": ["billing"]})
    assert resp.status == 400
    error = await resp.json()
    assert error["field"] == "add.0" and "billing" in error["error"]
    resp = await _post(service, incident, "components", {})
    assert resp.status == 400 and (await resp.json())["field"] == "add"
    resp = await _post(service, incident, "components", {"add": ["mail"], "remove": ["mail"]})
    assert resp.status == 400 and (await resp.json())["field"] == "remove"
    assert len(service.rows("SELECT 1 FROM timeline WHERE kind = 'components_changed'")) == 1


async def test_a_public_text_needs_public(service: RulesService) -> None:
    incident = await _open(service, {"team": "payments"})
    for body, field in (
        ({"text": "x", "public_text": "y"}, "public"),
        ({"text": "x", "public_title": "y"}, "public"),
        ({"text": "x", "public": True, "public_text": ""}, "public_text"),
        ({"text": "x", "public": True, "public_title": "t" * 201}, "public_title"),
    ):
        resp = await _post(service, incident, "updates", body)
        assert resp.status == 400, body
        assert (await resp.json())["field"] == field, body
    assert service.rows("SELECT count(*) FROM timeline WHERE kind = 'status_update'") == [(0,)]


async def test_the_status_listener_serves_only_the_status_routes(
    service: RulesService, aiohttp_client: Callable[..., Awaitable[Any]]
) -> None:
    assert service.state is not None
    public: TestClient[Any, Any] = await aiohttp_client(
        TestServer(create_status_app(service.state))
    )
    for path in ("/status", "/status/feed.atom", "/status/status.css"):
        resp = await public.get(path)
        assert resp.status == 200, path
        assert "Set-Cookie" not in resp.headers
    for path in (
        "/",
        "/api/v1/incidents",
        "/api/v1/alerts",
        "/metrics",
        "/-/healthy",
        "/login",
        "/oncall",
        "/static/app.css",
        "/api/v1/openapi.json",
    ):
        resp = await public.get(path)
        assert resp.status == 404, path
    resp = await public.post("/api/v1/alerts", json=_webhook({"team": "payments"}))
    assert resp.status in (404, 405)
    assert service.rows("SELECT count(*) FROM incidents") == [(0,)]


async def test_the_incident_pages_update_form_marks_an_update_public(
    make_client: MakeClient,
) -> None:
    """The liaison on the incident's page: the form's checkbox, public title and text; an
    update without the checkbox stays internal; empty public fields are left out."""
    client: Any = await make_client(webhook_token=Secret(TOKEN), api_tokens=NAMED)
    incident = await opened(client)
    await sign_in(client, ALICE)
    page = await (await client.get(f"/incidents/{incident}")).text()
    assert 'id="update-public"' in page and 'name="public_title"' in page
    do = f"/incidents/{incident}/do/updates"
    base = {"csrf": csrf_of(page)}
    internal = {**base, "form_key": "u1", "text": "internal words", "public_title": ""}
    assert (await client.post(do, data=internal, allow_redirects=False)).status == 303
    public = {
        **base,
        "form_key": "u2",
        "text": "private words",
        "public": "true",
        "public_title": "Checkout slow",
        "public_text": "",
    }
    assert (await client.post(do, data=public, allow_redirects=False)).status == 303
    status = await (await client.get("/status")).text()
    assert "Checkout slow" in status and "private words" in status
    assert "internal words" not in status


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--status-listen", "nowhere"], "--status-listen: 'nowhere' is not HOST:PORT"),
        (["--status-title", " "], "--status-title: 1 to 200 printable characters"),
        (["--status-title", "a\nb"], "--status-title: 1 to 200 printable characters"),
    ],
)
def test_bad_status_settings_name_the_flag(argv: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings(argv, {})
    assert needle in str(err.value)


def test_status_settings() -> None:
    got = settings(["--status-listen", "127.0.0.2:9097", "--status-title", "Acme status"], {})
    assert (got.status_listen, got.status_title) == (("127.0.0.2", 9097), "Acme status")
    env = {"INCIDENT_BRIDGE_STATUS_LISTEN": "[::1]:9097"}
    assert settings([], env).status_listen == ("::1", 9097)


async def test_public_text_is_escaped_on_the_page_and_in_the_feed(service: RulesService) -> None:
    client = service.client
    assert client is not None
    incident = await _open(service, {"team": "payments"})
    hostile = '<script>alert(1)</script><a href="https://evil.example/">x</a> & ]]>'
    resp = await _post(
        service,
        incident,
        "updates",
        {"text": "x", "public": True, "public_text": hostile, "public_title": "<b>T</b>"},
    )
    assert resp.status == 200
    page, raw, parsed = await _page_and_feed(client)
    assert "<script>" not in page and 'evil.example/">' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;T&lt;/b&gt;" in page
    assert "<script>" not in raw and not parsed.bozo
    assert parsed.entries[0].content[0].value == hostile
    assert parsed.entries[0].title == "<b>T</b>"
