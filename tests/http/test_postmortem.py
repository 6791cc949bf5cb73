"""The postmortem through the API, against a real SQLite file, a real Git repository in tmp_path
and a real bare repository as the remote: saving versions, showing, listing and diffing them,
publishing into the knowledge base (a commit by --kb-author naming the publisher, the index
page, a new commit of the same file after an edit, no empty commit, paths that would leave the
folder refused with nothing written, 409 before the incident is resolved), the push through the
outbox (retried while the remote fails), the close it makes, and "seen this before" linking it."""

from __future__ import annotations

import copy
import io
import json
import re
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.app import create_app, runner_options
from bridge.config import ApiToken, Settings
from bridge.core.postmortem import SECTIONS
from bridge.core.secrets import Secret
from bridge.delivery.worker import OutboxWorker
from bridge.indexer import Indexer
from bridge.kb.git import SENDER
from bridge.service import AppState
from tests.conftest import BOTH_BACKENDS, WRITE, Clock, app_state, fixture_body, rows, service_db
from tests.rendered import html_and_links

# Each test's service runs on SQLite and on PostgreSQL (tests/conftest.py: service_db).
pytestmark = BOTH_BACKENDS

HOOK = "/api/v1/alerts"
AUTHOR = "Bridge Bot <bot@bridge.example>"
BASE = "https://bridge.example"
TITLE_SLUG = "5xx-ratio-above-5"  # the fixture's title: "5xx ratio above 5%"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout


def git_repo(path: Path, *, bare: bool = False) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "--bare" if bare else "--quiet", "-b", "main")
    return path


class Service:
    """The app with a store, an outbox worker (run by hand) and the given settings."""

    def __init__(
        self, tmp_path: Path, clock: Clock, make_client: Any, request: pytest.FixtureRequest
    ) -> None:
        self.tmp_path = tmp_path
        self.clock = clock
        self.make_client = make_client
        self.request = request  # the test's backend: service_db
        self.stores: list[Any] = []
        self.state: AppState | None = None
        self.worker: OutboxWorker | None = None

    async def start(self, **overrides: Any) -> TestClient[Any, Any]:
        db = service_db(self.request, self.tmp_path, f"b{len(self.stores)}")
        settings = Settings(**{**db, **overrides})
        self.state = app_state(settings, clock=self.clock, worker=True)
        self.stores.append(self.state.store)
        self.worker = self.state.worker
        server = TestServer(create_app(self.state))
        await server.start_server(**runner_options(settings))
        client: TestClient[Any, Any] = await self.make_client(server)
        return client

    async def deliver(self) -> None:
        """One look of the outbox worker, and the sends it started."""
        assert self.worker is not None
        await self.worker.run_once()
        await self.worker.drain()

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return rows(self.stores[-1], sql, *args)

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture
async def service(
    tmp_path: Path,
    clock: Clock,
    aiohttp_client: Callable[..., Awaitable[Any]],
    request: pytest.FixtureRequest,
) -> AsyncIterator[Service]:
    svc = Service(tmp_path, clock, aiohttp_client, request)
    yield svc
    svc.close()


async def opened(client: Any, body: dict[str, Any] | None = None) -> int:
    resp = await client.post(HOOK, json=body or fixture_body("firing-group-bearer.json"))
    assert resp.status == 200, await resp.text()
    return int((await resp.json())["incidents"][0]["id"])


async def call(client: Any, method: str, path: str, body: Any = None, **headers: str) -> Any:
    resp = await client.request(method, path, json=body, headers={**WRITE, **headers})
    text = await resp.text()
    return resp.status, (json.loads(text) if resp.content_type == "application/json" else text)


async def save(client: Any, i: int, **sections: str) -> Any:
    return await call(client, "POST", f"/api/v1/incidents/{i}/postmortem", {"sections": sections})


async def publish(client: Any, i: int, actor: str = "alice") -> Any:
    return await call(client, "POST", f"/api/v1/incidents/{i}/postmortem/publish", {"actor": actor})


async def resolve(client: Any, i: int) -> None:
    status, body = await call(client, "POST", f"/api/v1/incidents/{i}/resolve", {})
    assert status == 200, body


def tree(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if ".git" not in p.relative_to(root).parts
    )


async def test_versions_are_saved_shown_listed_and_diffed(service: Service) -> None:
    client = await service.start()
    i = await opened(client)
    base = f"/api/v1/incidents/{i}/postmortem"
    status, draft = await call(client, "GET", base)
    assert status == 200 and draft["version"] is None and draft["policy"] == "required"
    assert draft["template"] == "postmortem.md.j2" and draft["published"] is None
    assert draft["markdown"].startswith(f"# Postmortem: #{i} 5xx ratio above 5%\n")
    assert draft["facts"]["incident"]["severity"] == "sev1"
    status, first = await save(client, i, summary="Checkout failed.", impact="5% of payments")
    assert status == 200 and first["changed"] and first["version"]["version"] == 1
    assert first["version"]["author"] == "api" and first["events"][0]["kind"] == "postmortem_saved"
    # The same text again: no version, nothing written.
    status, again = await save(client, i, summary="Checkout failed.\n")
    assert status == 200 and not again["changed"] and again["events"] == []
    status, second = await call(
        client,
        "POST",
        base,
        {"sections": {"root_cause": "A pool leak.", "summary": "Checkout failed for 40 min."},
         "actor": "dave"},
    )  # fmt: skip
    assert second["version"]["version"] == 2 and second["version"]["author"] == "dave"
    status, shown = await call(client, "GET", base)
    assert shown["version"] == 2 and shown["newest_version"] == 2
    assert shown["sections"]["impact"] == "5% of payments"  # kept from v1
    assert "## Root cause and trigger\n\nA pool leak.\n" in shown["markdown"]
    status, old = await call(client, "GET", f"{base}?version=1")
    assert status == 200 and old["version"] == 1 and old["sections"]["root_cause"] == ""
    status, listed = await call(client, "GET", f"{base}/versions")
    assert [(v["version"], v["author"], v["sections"]) for v in listed["versions"]] == [
        (1, "api", ["summary", "impact"]),
        (2, "dave", ["summary", "impact", "root_cause"]),
    ]
    status, diff = await call(client, "GET", f"{base}/diff?from=1&to=2")
    assert status == 200 and (diff["from_version"], diff["to_version"]) == (1, 2)
    assert "-Checkout failed.\n+Checkout failed for 40 min.\n" in diff["diff"]
    assert "+A pool leak.\n" in diff["diff"]
    status, default = await call(client, "GET", f"{base}/diff")
    assert (default["from_version"], default["to_version"]) == (1, 2)
    status, from_nothing = await call(client, "GET", f"{base}/diff?from=0&to=1")
    assert "+Checkout failed.\n" in from_nothing["diff"]
    for path, code, field in (
        (f"{base}?version=9", 404, None),
        (f"{base}?version=0", 400, "version"),
        (f"{base}?nope=1", 400, "nope"),
        (f"{base}/diff?from=7", 404, "from"),
        (f"{base}/diff?to=x", 400, "to"),
        ("/api/v1/incidents/999/postmortem", 404, None),
        ("/api/v1/incidents/999/postmortem/versions", 404, None),
    ):
        status, body = await call(client, "GET", path)
        assert (status, body.get("field")) == (code, field), (path, body)


async def test_a_bad_save_is_named_and_writes_nothing(service: Service) -> None:
    client = await service.start(api_tokens=(ApiToken("viewer", "read", Secret("ro")),))
    i = await opened(client)
    base = f"/api/v1/incidents/{i}/postmortem"
    status, body = await save(client, i, summary="ok", blame="bob")
    assert status == 400 and body["field"] == "sections.blame"
    assert body["error"].startswith("unknown section 'blame'; sections: summary, impact")
    status, body = await call(client, "POST", base, {"sections": {}, "extra": 1})
    assert status == 400 and body["field"] == "extra"
    status, body = await call(client, "POST", base, {})
    assert status == 400 and body["field"] == "sections"
    status, body = await save(client, i, impact="x" * 20_001)
    assert status == 400 and body["field"] == "sections.impact"
    big = {"sections": {name: "x" * 20_000 for name in SECTIONS} | {"x": "y" * 950_000}}
    raw = io.BytesIO(json.dumps(big).encode())
    resp = await client.post(base, data=raw, headers={**WRITE, "Connection": "close"})
    assert resp.status == 413
    resp = await client.post(
        base, json={"sections": {"summary": "x"}}, headers={"Authorization": "Bearer ro"}
    )
    assert resp.status == 403
    assert service.rows("SELECT count(*) FROM postmortem_versions") == [(0,)]
    # An Idempotency-Key: the retry gets the first answer, marked, and saves nothing twice.
    headers = {"Idempotency-Key": "save-1"}
    first = await call(client, "POST", base, {"sections": {"summary": "once"}}, **headers)
    resp = await client.post(
        base, json={"sections": {"summary": "once"}}, headers={**WRITE, **headers}
    )
    assert resp.headers["Idempotent-Replayed"] == "true" and await resp.json() == first[1]
    assert service.rows("SELECT count(*) FROM postmortem_versions") == [(1,)]


async def test_publishing_into_a_git_knowledge_base(service: Service, tmp_path: Path) -> None:
    kb = git_repo(tmp_path / "kb")
    client = await service.start(kb_dir=kb, kb_author=AUTHOR)
    i = await opened(client)
    await save(client, i, summary="Checkout failed.")
    # Not resolved yet: refused, nothing written.
    status, body = await publish(client, i)
    assert status == 409 and "the incident is triggered" in body["error"]
    assert tree(kb) == []
    await resolve(client, i)
    # The route requires a postmortem (sev1): closing waits for it.
    status, body = await call(client, "POST", f"/api/v1/incidents/{i}/close", {})
    assert status == 409 and "publish it first" in body["error"]
    status, done = await publish(client, i)
    assert status == 200 and done["changed"], done
    path = f"2026/{i}-{TITLE_SLUG}.md"
    commit = done["publication"]["commit"]
    assert done["publication"] | {"commit": None} == {
        "version": 1,
        "path": path,
        "commit": None,
        "published_by": "alice",
        "published_at": "2026-11-27T04:06:40Z",
        "pushed": False,
    }
    assert done["incident"]["status"] == "closed"
    assert [e["kind"] for e in done["events"]] == ["postmortem_published", "status_changed"]
    assert done["events"][1]["text"] == "Closed by alice"
    assert tree(kb) == ["2026", path, "README.md"]
    written = (kb / path).read_text()
    assert written.startswith(f"# Postmortem: #{i} 5xx ratio above 5%\n")
    assert "Checkout failed." in written
    index = (kb / "README.md").read_text()
    assert f"| [#{i}]({path}) | " in index and "| sev1 |" in index
    log = git(kb, "log", "--format=%H|%an <%ae>|%cn|%s|%b", "--", path)
    (line,) = [x for x in log.strip().splitlines() if x]
    sha, author, committer, subject, message = line.split("|")
    assert sha == commit and author == AUTHOR and committer == "Bridge Bot"
    assert subject == f"Postmortem #{i}: 5xx ratio above 5% (v1)"
    assert message == "Published by alice through incident-bridge."
    shown = git(kb, "show", "--name-only", "--format=", sha).split()
    assert sorted(shown) == sorted([path, "README.md"])
    # Published again as it is: nothing recorded, no empty commit.
    status, same = await publish(client, i)
    assert status == 200 and not same["changed"] and same["events"] == []
    assert git(kb, "rev-list", "--count", "HEAD").strip() == "1"
    # After an edit: a new commit of the same file, never a second file.
    await save(client, i, root_cause="A pool leak.")
    status, again = await publish(client, i, actor="bob")
    assert status == 200 and again["changed"] and again["publication"]["version"] == 2
    assert again["publication"]["path"] == path and again["publication"]["commit"] != commit
    assert [e["kind"] for e in again["events"]] == ["postmortem_published"]  # already closed
    assert tree(kb) == ["2026", path, "README.md"]
    assert git(kb, "rev-list", "--count", "HEAD").strip() == "2"
    assert "A pool leak." in (kb / path).read_text()
    assert "Published by bob" in git(kb, "log", "-1", "--format=%b")
    # The published Markdown, for people: where "seen this before" links to.
    resp = await client.get(f"/incidents/{i}/postmortem")
    assert resp.status == 200 and resp.content_type == "text/plain"
    assert await resp.text() == (kb / path).read_text()
    # Searchable by its narrative.
    status, found = await call(client, "GET", "/api/v1/search?q=pool+leak")
    assert [(h["incident_id"], h["kind"]) for h in found["results"]] == [(i, "postmortem")]


async def test_a_second_incident_is_added_to_the_index_newest_first(
    service: Service, tmp_path: Path, clock: Clock
) -> None:
    kb = git_repo(tmp_path / "kb")
    client = await service.start(kb_dir=kb, kb_author=AUTHOR)
    first = await opened(client)
    clock.advance(3600)
    other = copy.deepcopy(fixture_body("firing-group-bearer.json"))
    other["groupKey"] = "another"
    other["commonAnnotations"] = {"summary": "Disk full on db-3"}
    for alert in other["alerts"]:
        alert["startsAt"] = "2026-11-27T05:00:00Z"
        alert["labels"]["disk"] = "sda"
        del alert["fingerprint"]
    second = await opened(client, other)
    for i in (first, second):
        await save(client, i, summary=f"incident {i}")
        await resolve(client, i)
        assert (await publish(client, i))[0] == 200
    index = (kb / "README.md").read_text()
    rows = [line for line in index.splitlines() if line.startswith("| [#")]
    assert [r.split("]")[0] for r in rows] == [f"| [#{second}", f"| [#{first}"]
    assert git(kb, "rev-list", "--count", "HEAD").strip() == "2"


async def test_paths_that_leave_the_knowledge_base_are_refused(
    service: Service, tmp_path: Path
) -> None:
    kb = git_repo(tmp_path / "kb")
    outside = tmp_path / "outside"
    outside.mkdir()
    (kb / "2026").symlink_to(outside, target_is_directory=True)
    client = await service.start(kb_dir=kb, kb_author=AUTHOR)
    i = await opened(client)
    await save(client, i, summary="Checkout failed.")
    await resolve(client, i)
    status, body = await publish(client, i)
    assert status == 409 and "is a link to" in body["error"] and "nothing written" in body["error"]
    assert list(outside.iterdir()) == [] and not (kb / "README.md").exists()
    assert service.rows("SELECT count(*) FROM postmortem_publications") == [(0,)]
    status, incident = await call(client, "GET", f"/api/v1/incidents/{i}")
    assert incident["status"] == "resolved"  # not closed either
    # The index page as a link to a file outside: refused the same way.
    (kb / "2026").unlink()
    secret = outside / "secret.md"
    secret.write_text("keep me\n")
    (kb / "README.md").symlink_to(secret)
    status, body = await publish(client, i)
    assert status == 409 and "README.md" in body["error"]
    assert secret.read_text() == "keep me\n" and not (kb / "2026").exists()
    assert git(kb, "rev-list", "--all", "--count").strip() == "0"


async def test_a_template_error_is_named_and_nothing_is_written(
    service: Service, tmp_path: Path
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "postmortem.md.j2").write_text("# {{ incident.id }}\n\n{{ nope.x }}\n")
    kb = tmp_path / "kb"
    client = await service.start(kb_dir=kb, templates=templates)
    i = await opened(client)
    await save(client, i, summary="x")
    await resolve(client, i)
    status, body = await call(client, "GET", f"/api/v1/incidents/{i}/postmortem")
    assert status == 422 and "postmortem.md.j2:3: UndefinedError" in body["error"]
    status, body = await publish(client, i)
    assert status == 422 and "postmortem.md.j2:3:" in body["error"]
    assert not kb.exists()
    assert service.rows("SELECT count(*) FROM postmortem_publications") == [(0,)]


async def test_without_a_knowledge_base_the_publication_is_recorded_only(
    service: Service,
) -> None:
    client = await service.start(kb_database_only=True)
    i = await opened(client)
    await resolve(client, i)
    status, body = await publish(client, i)
    assert status == 409 and "nothing is written yet" in body["error"]
    await save(client, i, summary="Checkout failed.")
    status, done = await publish(client, i)
    assert status == 200 and done["publication"]["path"] == ""
    assert done["publication"]["commit"] is None and done["incident"]["status"] == "closed"
    resp = await client.get(f"/incidents/{i}/postmortem")
    assert resp.status == 200 and "Checkout failed." in await resp.text()
    assert (await client.get("/incidents/999/postmortem")).status == 404
    status, shown = await call(client, "GET", f"/api/v1/incidents/{i}/postmortem")
    assert shown["published"]["version"] == 1 and shown["published"]["path"] == ""
    assert not (service.tmp_path / "kb").exists()  # not even the default folder


async def test_the_push_goes_through_the_outbox_and_is_retried(
    service: Service, tmp_path: Path, clock: Clock
) -> None:
    kb = git_repo(tmp_path / "kb")
    remote = tmp_path / "remote.git"  # not there yet: the first push fails
    client = await service.start(kb_dir=kb, kb_author=AUTHOR, kb_remote=str(remote))
    i = await opened(client)
    await save(client, i, summary="Checkout failed.")
    await resolve(client, i)
    status, done = await publish(client, i)
    assert status == 200 and done["publication"]["pushed"] is True
    assert done["incident"]["status"] == "closed"  # publishing never waits for the push

    def push_row() -> tuple[Any, ...]:
        (row,) = service.rows(
            "SELECT state, attempts, last_error, next_attempt_at FROM outbox WHERE target = ?",
            SENDER,
        )
        return row

    assert push_row()[:2] == ("pending", 0)
    await service.deliver()
    state, attempts, error, retry_at = push_row()
    assert (state, attempts, error) == ("pending", 1, "git_push_failed")
    assert retry_at > clock()
    # The remote appears; the retry, when due, pushes.
    git_repo(remote, bare=True)
    await service.deliver()
    assert push_row()[1] == 1  # not due yet
    clock.advance(3600)
    await service.deliver()
    assert push_row()[0] == "delivered"
    head = git(kb, "rev-parse", "HEAD").strip()
    assert git(remote, "rev-parse", "main").strip() == head == done["publication"]["commit"]
    # Publishing again after an edit: a new commit, pushed again.
    await save(client, i, impact="5% of payments")
    status, again = await publish(client, i)
    assert again["publication"]["pushed"] is True
    await service.deliver()
    assert git(remote, "rev-parse", "main").strip() == again["publication"]["commit"]


async def test_seen_this_before_links_the_published_postmortem(
    service: Service, clock: Clock
) -> None:
    client = await service.start()
    first = await opened(client)
    await save(client, first, summary="The pool leaked.")
    await resolve(client, first)
    assert (await publish(client, first))[0] == 200
    clock.advance(3 * 3600)
    again = copy.deepcopy(fixture_body("firing-group-bearer.json"))
    again["groupKey"] = "again"
    for alert in again["alerts"]:
        del alert["fingerprint"]
        alert["labels"]["cluster"] = "b"
    second = await opened(client, again)
    assert service.state is not None
    indexer = Indexer(service.state, incident_url=lambda n: f"{BASE}/incidents/{n}")
    for _ in range(3):
        await indexer.tick()
    ((data,),) = service.rows(
        "SELECT data FROM timeline WHERE incident_id = ? AND kind = 'similar_incidents'", second
    )
    (similar,) = json.loads(data)["similar"]
    assert similar["id"] == first
    assert similar["postmortem_url"] == f"{BASE}/incidents/{first}/postmortem"


async def test_a_knowledge_base_that_cannot_be_written_is_a_409(
    service: Service, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    client = await service.start(kb_dir=blocker)
    i = await opened(client)
    await save(client, i, summary="x")
    await resolve(client, i)
    status, body = await publish(client, i)
    assert status == 409 and "is not a folder" in body["error"]
    other = await service.start(kb_dir=blocker / "kb")
    j = await opened(other)
    await save(other, j, summary="x")
    await resolve(other, j)
    status, body = await publish(other, j)
    assert status == 409 and "cannot publish into the knowledge base" in body["error"]
    assert blocker.read_text() == "not a folder\n"


def _postmortem_section(page: str) -> str:
    found = re.search(r'<section id="postmortem".*?</section>', page, re.S)
    assert found, "no postmortem section on the page"
    return found.group(0)


async def test_the_page_shows_the_postmortem_s_tables_and_a_readable_header(
    service: Service,
) -> None:
    client = await service.start()
    i = await opened(client)
    await save(client, i, summary="Checkout failed.")
    await resolve(client, i)
    resp = await client.get(f"/incidents/{i}")
    assert resp.status == 200
    section = _postmortem_section(await resp.text())
    # The header's two sentences stay apart ("...Z. Policy: required.", never "Z.Policy").
    header = re.search(r"<p>(Version 1 by api, .*?)</p>", section, re.S)
    assert header, section[:600]
    assert re.search(r", 2026-11-27 04:06:40 UTC\.\s+Policy: required\.", header.group(1)), header
    assert not re.search(r"\S\.Policy", header.group(1))
    # Every table of the Markdown is a table, each in its own region that scrolls on a phone.
    tables = re.findall(
        r'<div class="scroll" tabindex="0" role="region" aria-label="([^"]+)">\s*<table>', section
    )
    assert "Milestones and durations, scrollable" in tables
    assert "Milestones and durations (2), scrollable" in tables
    assert "Roles and hand-overs, scrollable" in tables and "Timeline (UTC), scrollable" in tables
    assert "Action items, scrollable" in tables
    assert len(tables) == len(set(tables)) == section.count("<table>")
    assert "|---|" not in section and "<th>Milestone</th>" in section
    # The Markdown's headings sit below the section's own <h2>.
    assert "<h3>Postmortem: #" in section and "<h4>Summary</h4>" in section


ALICE = "alice-write-token-0123456789"
CAROL = "carol-read-token-0123456789"
NAMED = (ApiToken("alice", "write", Secret(ALICE)), ApiToken("carol", "read", Secret(CAROL)))


async def test_the_published_postmortem_link_reads_with_the_session_or_signs_in(
    service: Service,
) -> None:
    # Named tokens: reads need a token or a session, as on a listener beyond loopback.
    client = await service.start(host="0.0.0.0", api_tokens=NAMED)
    i = await opened(client)
    await save(client, i, summary="Checkout failed.")
    await resolve(client, i)
    assert (await publish(client, i))[0] == 200
    path = f"/incidents/{i}/postmortem"
    # Nobody signed in (a person following "seen this before"): to the sign-in, and back.
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == 303, (resp.status, await resp.text())
    assert resp.headers["Location"] == "/login?" + urlencode({"next": path})
    # A script with a wrong token gets the API's answer, not a page.
    resp = await client.get(path, headers={"Authorization": "Bearer not-a-token"})
    assert resp.status == 401 and resp.content_type == "application/json"
    resp = await client.get(path, headers={"Authorization": f"Bearer {CAROL}"})
    assert resp.status == 200 and "Checkout failed." in await resp.text()
    # Signing in (a read token is enough) comes back to the postmortem, which now opens.
    resp = await client.post("/login", data={"token": CAROL, "next": path}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == path
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == 200 and resp.content_type == "text/plain"
    assert (await resp.text()).startswith(f"# Postmortem: #{i} ")
    # The other links a person follows from messages and pages work with the session too; the
    # page links the published postmortem.
    for link in (f"/incidents/{i}", "/", "/?q=checkout"):
        assert (await client.get(link, allow_redirects=False)).status == 200, link
    page = await (await client.get(f"/incidents/{i}")).text()
    assert f'<a href="{path}">Published as 2026/{i}-' in _postmortem_section(page)
    # Signed out: every one of them sends to the sign-in again.
    client.session.cookie_jar.clear()
    for link in (path, f"/incidents/{i}", "/"):
        resp = await client.get(link, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].startswith("/login?next="), link


HOSTILE = (
    "Checkout failed. <script>alert(1)</script> <img src=x onerror=alert(2)>\n\n"
    "See [the graph](javascript:alert(3)), [the runbook](https://runbooks.example/pool), "
    "<javascript:alert(4)>, <https://status.example/incidents/9> and [the ref][r].\n\n"
    "[r]: JavaScript&#58;alert(5)\n\n"
    "The payload was `<script>`:\n\n```html\n<script>alert('quoted')</script>\n```"
)


async def published_hostile(
    service: Service, tmp_path: Path, **settings: Any
) -> tuple[TestClient[Any, Any], int, str]:
    """An incident whose summary is ``HOSTILE``, resolved and published into a new knowledge
    base: the client, the incident, the file as committed."""
    kb = git_repo(tmp_path / "kb")
    client = await service.start(kb_dir=kb, kb_author=AUTHOR, **settings)
    i = await opened(client)
    await save(client, i, summary=HOSTILE)
    await resolve(client, i)
    status, done = await publish(client, i)
    assert status == 200, done
    return client, i, git(kb, "show", f"HEAD:{done['publication']['path']}")


async def test_raw_html_and_unsafe_links_are_not_published(
    service: Service, tmp_path: Path
) -> None:
    client, i, committed = await published_hostile(service, tmp_path)
    html, links = html_and_links(committed)
    assert html == []
    # The alerts' links, the runbook and the autolink; nothing else.
    assert all(link.startswith(("http://", "https://")) for link in links), links
    assert {"https://runbooks.example/pool", "https://status.example/incidents/9"} <= set(links)
    assert "javascript" not in " ".join(links).lower()
    # Shown as the text it was; the code block is kept exactly as written.
    assert "&lt;script>alert(1)&lt;/script>" in committed
    assert "```html\n<script>alert('quoted')</script>\n```" in committed
    assert "`<script>`" in committed
    # What the API and the page show is what was published.
    _status, shown = await call(client, "GET", f"/api/v1/incidents/{i}/postmortem")
    assert shown["markdown"] == committed
    assert shown["sections"]["summary"] == HOSTILE  # the team's text itself is kept


async def test_raw_html_is_published_when_the_team_allows_it(
    service: Service, tmp_path: Path
) -> None:
    client, i, committed = await published_hostile(service, tmp_path, kb_allow_raw_html=True)
    assert HOSTILE in committed
    html, links = html_and_links(committed)
    assert "<script>" in html and "<img src=x onerror=alert(2)>" in html
    assert "javascript:alert(3)" in links
    # The page still shows it as text: it renders Markdown with raw HTML off.
    page = await (await client.get(f"/incidents/{i}")).text()
    section = _postmortem_section(page)
    assert "<script" not in section and "<img" not in section
    assert 'href="javascript' not in section.lower()


async def test_by_default_postmortems_land_in_a_repository_beside_the_database(
    service: Service, tmp_path: Path
) -> None:
    # A fresh machine: nothing but the database's folder, no --kb-dir.
    client = await service.start()
    assert service.state is not None
    kb = service.state.settings.db.parent / "kb"
    assert not kb.exists()
    i = await opened(client)
    await save(client, i, summary="Checkout failed.")
    await resolve(client, i)
    status, done = await publish(client, i)
    assert status == 200, done
    path = f"2026/{i}-{TITLE_SLUG}.md"
    assert done["publication"]["path"] == path and done["publication"]["commit"]
    # A Git repository of its own, made by that first publication, with the files committed.
    assert git(kb, "rev-parse", "--show-toplevel").strip() == str(kb.resolve())
    assert git(kb, "rev-parse", "HEAD").strip() == done["publication"]["commit"]
    assert sorted(git(kb, "ls-files").split()) == sorted([path, "README.md"])


async def test_a_new_folder_inside_another_repository_is_a_repository_of_its_own(
    service: Service, tmp_path: Path
) -> None:
    """A service run from a checkout keeps its data in it (./data is ignored there): the
    knowledge base made there must not commit into that checkout."""
    outer = git_repo(tmp_path / "checkout")
    (outer / ".gitignore").write_text("/data/\n")
    kb = outer / "data" / "kb"
    client = await service.start(kb_dir=kb, kb_author=AUTHOR)
    i = await opened(client)
    await save(client, i, summary="Checkout failed.")
    await resolve(client, i)
    status, done = await publish(client, i)
    assert status == 200 and done["publication"]["commit"], done
    assert git(kb, "rev-parse", "--show-toplevel").strip() == str(kb.resolve())
    assert git(outer, "rev-list", "--all", "--count").strip() == "0"
    # An existing folder that is no repository is used as it is: written, not committed.
    plain = tmp_path / "plain"
    plain.mkdir()
    other = await service.start(kb_dir=plain)
    j = await opened(other)
    await save(other, j, summary="x")
    await resolve(other, j)
    status, done = await publish(other, j)
    assert status == 200 and done["publication"]["commit"] is None
    assert not (plain / ".git").exists() and (plain / "README.md").exists()
