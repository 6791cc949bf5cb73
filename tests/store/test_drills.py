"""Drills in the store, on both backends: a drill's incident is stored as one (and found by its
drill id), it is never "seen before" for a real incident, its report's facts are read in one
go, and a scheduled drill's slot is claimed once."""

from __future__ import annotations

import hashlib
import json

from bridge.core import drills
from bridge.core.alertmanager import parse_webhook
from bridge.store.drills import claim_run, claimed_runs, find, report_facts
from bridge.store.ingest import apply_webhook
from bridge.store.search import find_similar
from tests.store.test_search import POLICY, Db, db, labels

__all__ = ["db"]  # the fixture, on both backends


def open_drill(d: Db, name: str, **extra: str) -> int:
    raw = json.dumps(drills.webhook(drills.labels(name=name, extra=extra), d.now)).encode()
    payload = parse_webhook(raw)
    d.now += 10**9
    with d.transaction():
        result = apply_webhook(
            d.conn,
            payload=payload,
            decisions=POLICY.evaluate(payload, d.now),
            sha256=hashlib.sha256(raw).hexdigest(),
            body=raw,
            now=d.now,
        )
    return result.incidents[0].id


def test_a_drill_is_stored_as_one_and_found_by_its_name(db: Db) -> None:
    real = db.open("g1", "Checkout errors", labels("HighErrorRate", "checkout"))
    drill = open_drill(db, "d-1", service="checkout")
    rows = dict(db.rows("SELECT id, drill FROM incidents"))
    assert rows == {real: 0, drill: 1}
    (title,) = db.rows("SELECT title FROM incidents WHERE id = ?", drill)[0]
    assert title.startswith("DRILL: ")
    assert find(db.conn, "d-1") == drill
    assert find(db.conn, "d-2") is None
    facts = report_facts(db.conn, drill)
    assert facts is not None and facts["incident"]["id"] == drill
    assert next(e["kind"] for e in facts["timeline"]) == "opened"
    assert {r["target"] for r in facts["outbox"]} == {"console"}
    assert report_facts(db.conn, real) is None  # not a drill: no drill report


def test_a_drill_is_never_seen_before_for_a_real_incident(db: Db) -> None:
    first = db.open("g1", "Checkout errors", labels("HighErrorRate", "checkout"))
    db.conn.execute("UPDATE incidents SET status = 'resolved' WHERE id = ?", (first,))
    # the same alert and service, and the same words, as a drill
    drill_labels = {**labels("HighErrorRate", "checkout"), "drill": "true"}
    drill = db.open("g2", "Checkout errors", drill_labels)
    db.conn.execute("UPDATE incidents SET status = 'resolved' WHERE id = ?", (drill,))
    db.index()
    second = db.open("g3", "Checkout errors", labels("HighErrorRate", "checkout", instance="2"))
    db.index()
    found = [c.id for c in find_similar(db.conn, second)]
    assert found == [first]


def test_a_scheduled_drill_slot_is_claimed_once(db: Db) -> None:
    with db.transaction():
        assert claim_run(db.conn, "checkout", 100, "announce", db.now)
    with db.transaction():
        assert claim_run(db.conn, "checkout", 100, "fire", db.now)
    with db.transaction():
        assert not claim_run(db.conn, "checkout", 100, "fire", db.now + 1)
    with db.transaction():
        assert claim_run(db.conn, "checkout", 200, "fire", db.now)
    assert claimed_runs(db.conn, "checkout") == [(100, "announce"), (100, "fire"), (200, "fire")]
    assert claimed_runs(db.conn, "other") == []
