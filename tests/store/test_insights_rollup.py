"""The insights from the aggregates the write path keeps (migration 0024_insights,
store/insights.read_rollup) against the exact computation incident by incident
(store/insights.read + core/insights.compute), on both backends: every table equal, over a
varied store, for periods whose edges fall inside days, before and after later writes, and
for a history written before the migration (its back-fill)."""

from __future__ import annotations

import json
import random
from datetime import time
from typing import Any

import sqlite_utils

from bridge.core import insights as core
from bridge.store import insights
from bridge.store.migrations import MIGRATIONS, migrate
from tests.store.conftest import Databases
from tests.store.test_insights import DAY, NOW, NS, _alert, _entry, _incident, _set

HOUR = 3600 * NS
ZONES = {"ana": "Europe/Berlin", "bo": "America/New_York"}
HOURS_OF = {"bo": core.WorkingHours(time(8, 0), time(16, 30), frozenset({0, 1, 2, 3}))}
# Periods ending at the usual 30 s step and anywhere inside a day; one shorter than a day; one
# whose previous period reaches back before every incident.
PERIODS = [
    (NOW, 30 * DAY),
    (NOW - 5 * HOUR - 17 * NS, 7 * DAY),
    (NOW - 2 * DAY + 123_456_789, 12 * HOUR),
    (NOW + 30 * NS, 45 * DAY),
    (NOW - 13 * DAY, 1 * HOUR),
]


def _required(route: str, severity: str) -> bool:
    return severity != "sev3" and route != "quiet"


def _published(conn: Any, iid: int) -> None:
    conn.execute(
        "INSERT INTO postmortem_publications (id, incident_id, version, path, published_by, "
        "published_at) VALUES ((SELECT coalesce(max(id), 0) + 1 FROM postmortem_publications), "
        "?, 1, '', 'ana', 0)",
        (iid,),
    )


def _varied(conn: Any, rng: random.Random, first: int, count: int) -> list[int]:
    """``count`` incidents opened over the last 100 days at any nanosecond (some right at or
    around midnight UTC): reopenings, flapping, pages, acknowledgements by people, runbooks or
    none, two alerts of different names, none, dismissals, drills, publications, milestones
    before the start (counted as 0 s), incidents left open."""
    ids = []
    for iid in range(first, first + count):
        ids.append(iid)
        if iid % 7 == 0:  # right at a day's edge, or a nanosecond beside it
            opened = (NOW // DAY - rng.randrange(100)) * DAY + rng.choice((-1, 0, 1))
        else:
            opened = NOW - rng.randrange(100 * DAY)
        _incident(
            conn,
            iid,
            opened,
            team=rng.choice(("pay", "web", "")),
            service=rng.choice(("api", "db", "cache")),
            severity=rng.choice(("sev1", "sev2", "sev3")),
            route=rng.choice(("r", "quiet", "ops")),
        )
        started = opened - 30 * NS
        shape = rng.randrange(4)
        if shape < 3:
            name = rng.choice(("HighLatency", "DiskFull", "=cmd", "Errors"))
            runbook = {"runbook_url": "http://rb"} if rng.random() < 0.5 else {}
            _alert(conn, iid, f"f{iid}a", {"alertname": name}, runbook)
        if shape == 1:
            _alert(conn, iid, f"f{iid}b", {"alertname": "Aardvark"}, {"runbook_url": ""})
        if shape == 2:  # an alert without a name joins: the incident's name stays
            _alert(conn, iid, f"f{iid}c", {"job": "node"}, {"runbook_url": "http://rb"})
        for _ in range(rng.randrange(4)):
            _entry(conn, iid, "alert_fired", started + rng.randrange(HOUR))
        if rng.random() < 0.3:
            _entry(conn, iid, "reopened", opened + HOUR)
        if rng.random() < 0.4:
            people: list[Any] = rng.sample(["ana", "bo", "cy", "dee"], rng.randrange(1, 3))
            _entry(conn, iid, "escalation_step", opened + 5 * 60 * NS, data={"people": people})
        if rng.random() < 0.1:
            _entry(conn, iid, "escalation_step", opened, data={"people": ["ana", 7, None]})
        if rng.random() < 0.5:
            who = rng.choice(("ana", "bo", "cy"))
            at = opened + rng.randrange(1, 20 * HOUR)
            _entry(conn, iid, "status_changed", at, actor=who, data={"to": "acknowledged"})
            _set(conn, iid, status="acknowledged", acknowledged_at=at)
        _entry(conn, iid, "status_changed", opened, data={"to": "triggered"})
        if rng.random() < 0.6:
            # some before the first alert's start: counted as 0 s
            _set(conn, iid, status="mitigated", mitigated_at=started + rng.randrange(-HOUR, DAY))
            if rng.random() < 0.8:
                _set(conn, iid, status="resolved", resolved_at=started + rng.randrange(2 * DAY))
        if rng.random() < 0.1:
            _set(conn, iid, dismissed_at=opened + HOUR, status="closed")
        if rng.random() < 0.08:
            _set(conn, iid, drill=1)
        if rng.random() < 0.15:
            _published(conn, iid)
    return ids


def _later(conn: Any, rng: random.Random, ids: list[int]) -> None:
    """Writes after the incidents were counted: acknowledged, mitigated, resolved, dismissed,
    moved to another team, made a drill; an alert's runbook added, an alert removed from its
    incident, another alert joined; a page, a reopening and a flap more; a publication."""
    for iid in rng.sample(ids, len(ids) // 3):
        base = NOW - 5 * HOUR
        choice = rng.randrange(9)
        if choice == 0:
            _entry(conn, iid, "status_changed", base, actor="dee", data={"to": "acknowledged"})
            _set(conn, iid, status="acknowledged", acknowledged_at=base)
        elif choice == 1:
            _set(conn, iid, status="resolved", mitigated_at=base, resolved_at=base + HOUR)
        elif choice == 2:
            _set(conn, iid, team="moved", service="elsewhere", route="ops", severity="sev1")
        elif choice == 3:
            _set(conn, iid, drill=1)
        elif choice == 4:
            conn.execute(
                "UPDATE alerts SET annotations = ? WHERE fingerprint = ?",
                (json.dumps({"runbook_url": "http://new"}), f"f{iid}a"),
            )
        elif choice == 5:
            conn.execute("DELETE FROM incident_alerts WHERE incident_id = ?", (iid,))
        elif choice == 6:
            _alert(conn, iid, f"f{iid}late", {"alertname": "Late"})
            _entry(conn, iid, "alert_fired", base)
        elif choice == 7:
            _entry(conn, iid, "escalation_step", base, data={"people": ["cy"]})
            _entry(conn, iid, "reopened", base)
        else:
            _set(conn, iid, dismissed_at=base, status="closed")
            _published(conn, iid)


def _assert_same(conn: Any) -> int:
    """Every table of every period equal; how many incidents the periods held (so that a test
    never compares two empty answers)."""
    insights.refresh(conn)  # the marked incidents brought in, as the service does first
    seen = 0
    for until, span in PERIODS:
        exact = core.compute(
            insights.read(conn, until=until, span=span),
            now=until,
            span=span,
            required=_required,
            zones=ZONES,
            hours_of=HOURS_OF,
        )
        kept = core.tables_of(
            insights.read_rollup(conn, until=until, span=span, required=_required),
            now=until,
            span=span,
            zones=ZONES,
            hours_of=HOURS_OF,
        )
        for name in core.TABLES:
            assert kept.tables[name] == exact.tables[name], (name, until, span)
        seen += exact.tables["trend"].rows[0][1]  # type: ignore[operator]
    return seen


def test_the_kept_aggregates_give_every_table_as_the_exact_computation(
    databases: Databases,
) -> None:
    conn = databases.new()
    rng = random.Random(28)
    ids = _varied(conn, rng, 1, 160)
    assert _assert_same(conn) > 100
    _later(conn, rng, ids)
    assert _assert_same(conn) > 100
    # the tables say something: groups, pages, flapping, people, overdue postmortems
    answer = core.tables_of(
        insights.read_rollup(conn, until=NOW, span=45 * DAY, required=_required),
        now=NOW,
        span=45 * DAY,
    )
    assert len(answer.tables["by_team"].rows) >= 3
    assert any(r[3] for r in answer.tables["noisiest"].rows)  # pages
    assert any(r[5] for r in answer.tables["noisiest"].rows)  # flapping
    assert {r[0] for r in answer.tables["interruptions"].rows} >= {"ana", "bo", "cy"}
    assert answer.tables["postmortems_overdue"].rows


def test_an_upgrade_keeps_the_insights_of_the_history(databases: Databases) -> None:
    """A store written before migration 0024: the back-fill gives the same tables, and the
    triggers keep them from there."""
    conn = databases.new(upto="0024")
    rng = random.Random(2024)
    ids = _varied(conn, rng, 1, 120)
    if databases.backend == "sqlite":
        migrate(sqlite_utils.Database(conn), MIGRATIONS)
    else:
        from bridge.store.postgres import schema

        schema.migrate(conn.raw, schema.MIGRATIONS)
    assert _assert_same(conn) > 50
    _later(conn, rng, ids)
    ids += _varied(conn, rng, 1000, 40)
    assert _assert_same(conn) > 50


def test_drills_and_the_days_they_leave_count_nowhere(databases: Databases) -> None:
    """A day whose one incident became a drill keeps a row of zeros: it makes no group."""
    conn = databases.new()
    t = NOW - 10 * DAY
    _incident(conn, 1, t, team="gone", service="gone")
    _incident(conn, 2, t, team="pay")
    _set(conn, 1, drill=1)
    insights.refresh(conn)
    answer = core.tables_of(
        insights.read_rollup(conn, until=NOW, span=30 * DAY, required=_required),
        now=NOW,
        span=30 * DAY,
    )
    assert [r[0] for r in answer.tables["by_team"].rows] == ["pay"]
    assert [r[1] for r in answer.tables["by_service"].rows] == [1]


def test_a_runbook_added_to_an_alert_later_counts_for_its_incidents(databases: Databases) -> None:
    conn = databases.new()
    _incident(conn, 1, NOW - 10 * DAY, service="api")
    _alert(conn, 1, "fa", {"alertname": "NoBook"})

    def no_runbook() -> list[Any]:
        insights.refresh(conn)
        rollup = insights.read_rollup(conn, until=NOW, span=30 * DAY, required=_required)
        return core.tables_of(rollup, now=NOW, span=30 * DAY).tables["no_runbook"].rows

    assert no_runbook() == [("NoBook", "api", 1)]
    conn.execute(
        "UPDATE alerts SET annotations = ? WHERE fingerprint = 'fa'",
        (json.dumps({"runbook_url": "http://rb"}),),
    )
    assert no_runbook() == []


def test_the_most_overdue_postmortems_when_the_list_is_cut(
    databases: Databases, monkeypatch: Any
) -> None:
    """More overdue postmortems than the list shows: the same rows (resolved longest ago
    first) and total, the list read from as few days of resolutions as hold it."""
    for size in (1, 3):
        monkeypatch.setattr(core, "LIST_ROWS", size)
        monkeypatch.setattr(insights, "LIST_ROWS", size)
        conn = databases.new()
        _varied(conn, random.Random(size), 1, 160)
        assert _assert_same(conn) > 100
        rollup = insights.read_rollup(conn, until=NOW, span=45 * DAY, required=_required)
        assert len(rollup.overdue) == size < rollup.overdue_count


def test_a_write_only_marks_its_incidents_and_the_refresh_sums_them(
    databases: Databases,
) -> None:
    """The write path writes no aggregate in its transaction: it marks the incidents it
    touched. A refresh sums them (one with a limit the lowest ids first, the rest left
    marked) and clears the marks; with nothing marked it writes nothing."""
    conn = databases.new()
    rng = random.Random(34)
    ids = _varied(conn, rng, 1, 30)

    def count(table: str) -> int:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    assert [count(t) for t in insights.TABLES[:-1]] == [0, 0, 0, 0]
    marked = conn.execute("SELECT incident_id FROM insight_dirty ORDER BY incident_id")
    assert [r[0] for r in marked.fetchall()] == ids
    assert insights.refresh(conn, limit=10) == 10
    facts = conn.execute("SELECT id FROM insight_facts ORDER BY id").fetchall()
    assert [r[0] for r in facts] == ids[:10]
    assert count("insight_dirty") == 20
    assert insights.refresh(conn) == 20
    assert insights.refresh(conn) == 0
    assert count("insight_dirty") == 0 and count("insight_facts") == 30
    assert count("insight_days") > 0 and count("insight_interactions") > 0
    assert _assert_same(conn) > 5
    # an incident written again is marked again (and only it)
    _set(conn, ids[3], team="moved")
    assert [r[0] for r in conn.execute("SELECT incident_id FROM insight_dirty")] == [ids[3]]


def test_a_refresh_touches_only_its_incidents_sums_not_their_whole_days(
    databases: Databases,
) -> None:
    """A refresh moves the sums by its incidents' old and new rows: its cost follows the
    incidents marked, not how many share their day (a storm's day holds all of its
    incidents, and the scheduler refreshes 500 at a time)."""
    conn = databases.new()
    ids = _varied(conn, random.Random(36), 1, 40)
    insights.refresh(conn)
    (day, team, service, route, alertname, n) = conn.execute(
        "SELECT day, team, service, route, alertname, n FROM insight_days "
        "ORDER BY n DESC, day LIMIT 1"
    ).fetchone()
    # a sum no incident explains: a refresh that summed the whole day again would lose it
    conn.execute(
        "UPDATE insight_days SET runbook = runbook + 1000 WHERE day = ? AND team = ? "
        "AND service = ? AND route = ? AND alertname = ?",
        (day, team, service, route, alertname),
    )
    # an incident of that day, written again
    (other,) = conn.execute(
        "SELECT min(id) FROM insight_facts WHERE opened_at / ? = ?", (DAY, day)
    ).fetchone()
    assert other in ids
    _set(conn, other, acknowledged_at=None)
    assert insights.refresh(conn) == 1
    (runbook_after,) = conn.execute(
        "SELECT runbook FROM insight_days WHERE day = ? AND team = ? AND service = ? "
        "AND route = ? AND alertname = ?",
        (day, team, service, route, alertname),
    ).fetchone()
    assert runbook_after >= 1000 and n > 0


def test_incidents_moved_to_other_days_leave_their_old_days(databases: Databases) -> None:
    """A refresh sums every day its incidents were in and are in now: the old day's sums
    lose them, the new day's gain them."""
    conn = databases.new()
    rng = random.Random(35)
    ids = _varied(conn, rng, 1, 80)
    assert _assert_same(conn) > 20
    for iid in rng.sample(ids, 30):
        (opened,) = conn.execute("SELECT opened_at FROM incidents WHERE id = ?", (iid,)).fetchone()
        _set(conn, iid, opened_at=opened - rng.randrange(1, 20) * DAY - 7 * HOUR)
    assert _assert_same(conn) > 20
