"""Drills in the store, on both backends: a drill's incident is stored as one (and found by its
drill id), it is never "seen before" for a real incident, its report's facts are read in one
go, and a scheduled drill's slot is claimed once."""

from __future__ import annotations

import hashlib
import json

import pytest

from bridge.core import drills
from bridge.core.alertmanager import parse_webhook
from bridge.store.drills import claim_run, claimed_runs, find, report_facts
from bridge.store.ingest import apply_webhook
from bridge.store.metrics import read as read_aggregates
from bridge.store.search import find_similar
from tests.store.test_search import POLICY, Db, db, labels

__all__ = ["db"]  # the fixture, on both backends


def open_drill(d: Db, name: str, **extra: str) -> int:
    # started a second before it opens, as the real incidents of ``Db.open`` are not
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


def test_a_drills_mttx_is_kept_apart_from_the_real_ones(db: Db) -> None:
    real = db.open("g1", "Checkout errors", labels("HighErrorRate", "checkout", team="pay"))
    drill = open_drill(db, "d-1", team="pay", severity="critical")
    s = 10**9
    for i in (real, drill):
        for sql in (
            f"UPDATE incidents SET acknowledged_at = opened_at + {60 * s} WHERE id = ?",
            f"UPDATE incidents SET mitigated_at = opened_at + {120 * s}, status = 'mitigated' "
            "WHERE id = ?",
            "UPDATE incidents SET mitigated_at = NULL, status = 'triggered' WHERE id = ?",
            f"UPDATE incidents SET mitigated_at = opened_at + {180 * s}, status = 'mitigated' "
            "WHERE id = ?",
            f"UPDATE incidents SET resolved_at = opened_at + {240 * s}, status = 'resolved' "
            "WHERE id = ?",
        ):
            with db.transaction():
                db.conn.execute(sql, (i,))
    agg = read_aggregates(db.conn, ["pay"])
    real_n: dict[tuple[str, str, str], int] = {}
    for metric, severity, team, _bucket, n, _sum in agg.histograms:
        real_n[(metric, severity, team)] = real_n.get((metric, severity, team), 0) + n
    assert {k: n for k, n in real_n.items() if n} == {
        (m, "sev1", "pay"): 1 for m in ("detect", "ack", "mitigate", "resolve")
    }
    counted = {(m, sev, team): n for m, sev, team, n in agg.counters if n}
    assert counted == {("opened", "sev1", "pay"): 1, ("reopened", "sev1", "pay"): 1}
    drill_n: dict[tuple[str, str], tuple[int, float]] = {}
    for metric, severity, _bucket, n, total in agg.drill_histograms:
        seen = drill_n.get((metric, severity), (0, 0.0))
        drill_n[(metric, severity)] = (seen[0] + n, seen[1] + total)
    assert {k: v[0] for k, v in drill_n.items() if v[0]} == {
        (m, "sev1"): 1 for m in ("detect", "ack", "mitigate", "resolve")
    }
    assert drill_n[("ack", "sev1")][1] == pytest.approx(60.0 + 1.0)  # started a second earlier
    assert sorted((m, n) for m, _sev, n in agg.drill_counters if n) == [
        ("opened", 1),
        ("reopened", 1),
    ]
