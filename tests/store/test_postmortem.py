"""Postmortems in the store: the facts gathered from the incident, its timeline, alerts and the
follow-up's tables (read defensively), versions saved as new rows with their timeline entry and
outbox rows, and publications recorded with theirs, the push of the knowledge base, the search
document and the link "seen this before" gives."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from bridge.core.actions import AddEntry, AssignRole, Transition
from bridge.core.postmortem import SECTIONS
from bridge.store import Store
from bridge.store.actions import ActionRequest, Idempotency, apply_action
from bridge.store.postmortem import (
    PublishRecord,
    SaveRequest,
    gather_facts,
    get_version,
    list_publications,
    list_versions,
    previous_path,
    published_index,
    published_markdown,
    read_postmortem,
    record_publication,
    save_version,
)
from bridge.store.search import postmortem_url, search
from tests.conftest import SECOND, T0, rows
from tests.store.conftest import opened


@pytest.fixture
def db(any_store: Any) -> Any:
    """The store, on each backend."""
    return any_store


async def act(store: Store, incident: int, command: Any, at: int) -> dict[str, Any]:
    request = ActionRequest(incident, command, T0 + at * SECOND)
    answer = await store.write(lambda conn: apply_action(conn, request))
    assert answer.status == 200, answer.body
    return dict(answer.body)


async def save(store: Store, incident: int, at: int = 100, **sections: str) -> Any:
    request = SaveRequest(incident, sections, "dave", T0 + at * SECOND)
    return await store.write(lambda conn: save_version(conn, request))


async def test_the_facts_are_what_the_incident_recorded(db: Store) -> None:
    i = await opened(db)
    await act(db, i, Transition("carol", "acknowledge"), 60)
    await act(db, i, AssignRole("amara", "commander", "dave"), 70)
    note = (await act(db, i, AddEntry("sam", "note", "p99 at 4 s"), 80))["events"][0]["id"]
    await act(db, i, AddEntry("sam", "note", "p99 at 6 s", corrects=note), 90)
    await act(db, i, Transition("dave", "resolve", "rolled back"), 600)
    facts = await db.read(lambda conn: gather_facts(conn, i))
    assert facts is not None and facts.status == "resolved"
    (started, opened_at, acked, mitigated, resolved) = rows(
        db,
        "SELECT started_at, opened_at, acknowledged_at, mitigated_at, resolved_at FROM incidents "
        "WHERE id = ?",
        i,
    )[0]
    got = {d.name: d.ns for d in facts.durations}
    assert got == {
        "detection_delay": opened_at - started,
        "time_to_acknowledge": acked - started,
        "time_to_mitigate": mitigated - started,
        "time_to_resolve": resolved - started,
    }
    assert [(h.role, h.after) for h in facts.handovers] == [("commander", ("dave",))]
    notes = [r for r in facts.timeline if r.kind == "note"]
    assert [(r.id, r.text, r.corrected_by) for r in notes] == [(note, "Note: p99 at 6 s", note + 1)]
    assert {(a.alertname, a.status) for a in facts.alerts} == {("HighErrorRate", "firing")}
    # No follow-up rows (the follow-up opens at the scheduler's tick): none, no error.
    assert facts.validation is None and facts.items == ()
    assert await db.read(lambda conn: gather_facts(conn, 999)) is None


async def test_the_follow_up_is_read_defensively(db: Store) -> None:
    i = await opened(db)

    def fill(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO followups (incident_id, route, opened_at, stabilize_until, "
            "ticket_target, validated_at, validation) VALUES (?, 'default', 1, 2, 'jira', 3, ?)",
            (i, json.dumps({"passed": True, "quiet": True, "checks": [], "reasons": []})),
        )
        for item_id, kind, detail in ((1, "action", "{}"), (2, "review", "not json")):
            conn.execute(
                "INSERT INTO followup_items (id, incident_id, kind, text, owner, detail, "
                "created_by, created_at) VALUES (?, ?, ?, ?, 'zed', ?, 'dave', 5)",
                (item_id, i, kind, f"item {item_id}", detail),
            )
        conn.execute(
            "INSERT INTO target_state (incident_id, target, state, updated_at) "
            "VALUES (?, 'jira', ?, 6)",
            (i, json.dumps({"tickets": {"1": {"key": "OPS-1", "url": "https://j.example/1"}}})),
        )

    await db.write(fill)
    facts = await db.read(lambda conn: gather_facts(conn, i))
    assert facts is not None and facts.validation is not None
    assert facts.validation.passed is True and facts.validation.validated_at == 3
    assert [(x.id, x.kind, x.ticket_key, x.ticket_url) for x in facts.items] == [
        (1, "action", "OPS-1", "https://j.example/1"),
        (2, "review", "", ""),
    ]

    def damage(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE followups SET validation = 'nope' WHERE incident_id = ?", (i,))
        conn.execute("UPDATE target_state SET state = '[1]' WHERE incident_id = ?", (i,))

    await db.write(damage)
    facts = await db.read(lambda conn: gather_facts(conn, i))
    assert facts is not None and facts.validation is not None
    assert facts.validation.passed is None and facts.items[0].ticket_key == ""


async def test_every_save_is_a_version_with_its_entry_and_notifications(db: Store) -> None:
    i = await opened(db)
    timeline = len(rows(db, "SELECT id FROM timeline"))
    first = await save(db, i, summary="Checkout failed.", impact="5% of payments")
    assert first.status == 200 and first.changed
    assert first.body["version"]["version"] == 1
    assert first.body["version"]["sections"]["summary"] == "Checkout failed."
    assert first.body["events"][0]["kind"] == "postmortem_saved"
    assert first.body["events"][0]["text"] == "Postmortem v1 saved by dave (summary, impact)"
    assert len(rows(db, "SELECT id FROM timeline")) == timeline + 1
    # Its outbox rows are written with it: the dedicated channel's, when the incident has one
    # (the built-in policy has none, and a timeline entry never reaches the general tier).
    event_id = first.body["events"][0]["id"]
    outbox = rows(db, "SELECT count(*) FROM outbox WHERE event_id = ?", event_id)
    assert outbox == [(first.notifications,)]
    # The same text again (an editor's newline added) is no new version and writes nothing.
    again = await save(db, i, at=200, summary="Checkout failed.\n")
    assert again.status == 200 and not again.changed and again.body["version"]["version"] == 1
    assert len(rows(db, "SELECT id FROM timeline")) == timeline + 1
    second = await save(db, i, at=300, root_cause="A pool leak.")
    assert second.body["version"]["version"] == 2
    versions = await db.read(lambda conn: list_versions(conn, i))
    assert [v.version for v in versions] == [1, 2]
    # Never overwritten: version 1 reads as it was saved; version 2 kept the other sections.
    assert versions[0].narrative.root_cause == "" and versions[1].narrative.root_cause
    assert versions[1].narrative.summary == "Checkout failed."
    newest = await db.read(lambda conn: get_version(conn, i))
    assert newest is not None and newest.version == 2 and newest.author == "dave"
    assert newest.saved_at == T0 + 300 * SECOND


async def test_a_bad_save_writes_nothing_and_a_key_keeps_its_answer(db: Store) -> None:
    i = await opened(db)
    bad = await save(db, i, summary="ok", blame="bob")
    assert bad.status == 400 and bad.body["field"] == "sections.blame"
    assert ", ".join(SECTIONS) in bad.body["error"]
    assert rows(db, "SELECT count(*) FROM postmortem_versions") == [(0,)]
    assert (await save(db, 999, summary="x")).status == 404
    key = Idempotency("alice", "k-1", "digest-1")
    request = SaveRequest(i, {"summary": "once"}, "alice", T0, key)
    first = await db.write(lambda conn: save_version(conn, request))
    again = await db.write(lambda conn: save_version(conn, request))
    assert again.replayed and again.body == first.body
    assert rows(db, "SELECT count(*) FROM postmortem_versions") == [(1,)]
    other = SaveRequest(i, {"summary": "twice"}, "alice", T0, Idempotency("alice", "k-1", "d2"))
    assert (await db.write(lambda conn: save_version(conn, other))).status == 422


async def test_a_publication_is_recorded_notified_pushed_and_searchable(db: Store) -> None:
    i = await opened(db)
    await save(db, i, summary="The connection pool leaked under retries.")
    await act(db, i, Transition("dave", "resolve"), 600)
    record = PublishRecord(
        incident_id=i,
        version=1,
        path="2026/1-checkout.md",
        commit_sha="c" * 40,
        actor="dave",
        now=T0 + 700 * SECOND,
        markdown="# Postmortem\n",
        search_text="Postmortem: checkout\n\nThe connection pool leaked under retries.",
        push_target="@knowledge-base",
    )
    recorded = await db.write(lambda conn: record_publication(conn, record))
    assert recorded is not None and recorded.pushed
    event = recorded.events[0]
    assert event["kind"] == "postmortem_published"
    assert event["text"] == (
        "Postmortem v1 published by dave: 2026/1-checkout.md (commit cccccccccccc)"
    )
    outbox = rows(db, "SELECT target, tier, event FROM outbox WHERE event_id = ?", event["id"])
    assert ("@knowledge-base", "knowledge-base", "postmortem_published") in outbox
    # The tiers hear of it (the built-in policy: the console, in the general tier).
    assert ("console", "general", "postmortem_published") in outbox
    assert recorded.notifications == len(outbox)
    hits = await db.read(lambda conn: search(conn, "leaked retries"))
    assert [(h["incident_id"], h["kind"]) for h in hits] == [(i, "postmortem")]
    assert await db.read(lambda conn: published_markdown(conn, i)) == "# Postmortem\n"
    assert await db.read(lambda conn: previous_path(conn, i)) == "2026/1-checkout.md"
    index = await db.read(published_index)
    assert [(e.incident_id, e.path) for e in index] == [(i, "2026/1-checkout.md")]
    read = await db.read(lambda conn: read_postmortem(conn, i))
    assert read is not None and read.publication is not None and read.newest == 1
    # Seen this before links the published postmortem (when a page URL is known).
    link = await db.read(
        lambda conn: postmortem_url(conn, i, lambda n: f"https://b.example/incidents/{n}")
    )
    assert link == f"https://b.example/incidents/{i}/postmortem"
    assert await db.read(lambda conn: postmortem_url(conn, i)) is None
    # Recorded without a file (no knowledge base): no push, the index does not list it.
    bare = PublishRecord(i, 1, "", None, "dave", T0 + 800 * SECOND, "# again\n", "x")
    again = await db.write(lambda conn: record_publication(conn, bare))
    assert again is not None and not again.pushed
    publications = await db.read(lambda conn: list_publications(conn, i))
    assert [(p.path, p.commit_sha) for p in publications] == [
        ("2026/1-checkout.md", "c" * 40),
        ("", None),
    ]
    assert [e.path for e in await db.read(published_index)] == ["2026/1-checkout.md"]
    assert await db.read(lambda conn: previous_path(conn, i)) == "2026/1-checkout.md"


async def test_a_required_postmortem_guards_the_close(db: Store) -> None:
    i = await opened(db)
    await act(db, i, Transition("dave", "resolve"), 60)

    def close(at: int) -> Any:
        request = ActionRequest(
            i,
            Transition("dave", "close"),
            T0 + at * SECOND,
            postmortem_policy=lambda *_: "required",
        )
        return db.write(lambda conn: apply_action(conn, request))

    refused = await close(70)
    assert refused.status == 409 and "publish it first" in refused.body["error"]
    record = PublishRecord(i, 1, "", None, "dave", T0 + 80 * SECOND, "# pm\n", "pm")
    await db.write(lambda conn: record_publication(conn, record))
    assert (await close(90)).status == 200
