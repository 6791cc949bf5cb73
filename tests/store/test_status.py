"""The status page's read (store/status.py), on both backends: only public updates, only their
public fields, newest first and at most ``limit``; the hurting incidents with their alerts'
labels and their links changed by hand, in order."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlite_utils

from bridge.core.actions import LinkComponents, PostUpdate, Transition
from bridge.core.status import LinkChange
from bridge.store.actions import ActionRequest
from bridge.store.migrations import migrate
from bridge.store.status import read_status
from tests.conftest import SECOND, T0
from tests.store.conftest import opened


async def _act(store: Any, incident: int, command: Any, at: int) -> None:
    answer = await store.actions.apply_action(ActionRequest(incident, command, T0 + at * SECOND))
    assert answer.status == 200, answer.body


async def test_only_public_updates_and_their_public_fields(store: Any) -> None:
    incident = await opened(store)
    await _act(store, incident, PostUpdate("alice", "internal only"), 1)
    await _act(
        store,
        incident,
        PostUpdate(
            "alice", "private words", public=True, public_text="Public words", public_title="Title"
        ),
        2,
    )
    await _act(store, incident, PostUpdate("bob", "said in public", public=True), 3)
    read = await store.status.read(limit=10)
    assert [(u.incident_id, u.text, u.title) for u in read.updates] == [
        (incident, "said in public", None),
        (incident, "Public words", "Title"),
    ]
    assert [u.at for u in read.updates] == [T0 + 3 * SECOND, T0 + 2 * SECOND]
    assert len((await store.status.read(limit=1)).updates) == 1
    text = repr(read)
    assert "private words" not in text and "internal only" not in text
    assert "alice" not in text and "bob" not in text


async def test_hurting_incidents_with_their_labels_and_links(store: Any) -> None:
    incident = await opened(store)
    await _act(store, incident, LinkComponents("alice", add=("a", "b")), 1)
    await _act(store, incident, LinkComponents("alice", remove=("a",)), 2)
    read = await store.status.read(limit=10)
    (facts,) = read.open_incidents()
    assert facts.id == incident and facts.status == "triggered"
    assert facts.changes == (LinkChange(add=("a", "b")), LinkChange(remove=("a",)))
    assert facts.label_sets and all("alertname" in s for s in facts.label_sets)
    # mitigated: no longer hurting, and not read unless a public update names it
    await _act(store, incident, Transition("alice", "mitigate"), 3)
    read = await store.status.read(limit=10)
    assert read.open_incidents() == [] and read.incidents == ()


def test_the_newest_public_updates_are_read_without_sorting_them_all(tmp_path: Path) -> None:
    """Migration 0025_status: the read walks the status updates back from the newest by id and
    stops after ``limit`` public ones, instead of sorting every status update on each read."""
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    try:
        migrate(sqlite_utils.Database(conn))
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        read_status(conn, limit=50)
        conn.set_trace_callback(None)
        (updates,) = [s for s in statements if "json_extract(data, '$.public_text')" in s]
        plan = conn.execute(f"EXPLAIN QUERY PLAN {updates}").fetchall()
    finally:
        conn.close()
    details = [row[3] for row in plan]
    assert details == ["SCAN timeline USING INDEX idx_timeline_status_updates_id"], details
