"""The insights' facts read from the store (store/insights.py) on both backends, and the same
MTTA/MTTM/MTTR as the Prometheus MTTx histograms' _sum/_count over the same incidents."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.core import insights as core
from bridge.store import insights
from bridge.store import metrics as aggregates
from tests.store.conftest import Databases
from tests.store.test_store import next_id

NS = 10**9
DAY = 86_400 * NS
NOW = 1_796_000_000 * NS  # 2026-11-29, a Sunday
TEAMS = frozenset({"pay", "web"})


def _incident(
    conn: Any,
    iid: int,
    opened: int,
    *,
    team: str = "pay",
    service: str = "api",
    severity: str = "sev1",
    route: str = "r",
) -> None:
    conn.execute(
        "INSERT INTO incidents (id, key, title, severity, status, route, team, service, "
        "started_at, opened_at) VALUES (?, 'k', 't', ?, 'triggered', ?, ?, ?, ?, ?)",
        (iid, severity, route, team, service, opened - 30 * NS, opened),
    )


def _set(conn: Any, iid: int, **values: Any) -> None:
    sets = ", ".join(f"{k} = ?" for k in values)
    conn.execute(f"UPDATE incidents SET {sets} WHERE id = ?", (*values.values(), iid))


def _alert(
    conn: Any, iid: int, fp: str, labels: dict[str, str], annotations: dict[str, str] | None = None
) -> None:
    conn.execute(
        "INSERT INTO alerts (fingerprint, labels, annotations, status, starts_at, first_seen, "
        "last_seen) VALUES (?, ?, ?, 'firing', 0, 0, 0)",
        (fp, json.dumps(labels), json.dumps(annotations or {})),
    )
    conn.execute(
        "INSERT INTO incident_alerts (incident_id, fingerprint, status, starts_at, first_seen, "
        "last_seen) VALUES (?, ?, 'firing', 0, 0, 0)",
        (iid, fp),
    )


def _entry(
    conn: Any,
    iid: int,
    kind: str,
    at: int,
    actor: str = "alertmanager",
    data: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        f"INSERT INTO timeline (id, incident_id, time, kind, actor, text, data) "
        f"VALUES ({next_id('timeline')}, ?, ?, ?, ?, 'x', ?)",
        (iid, at, kind, actor, json.dumps(data or {})),
    )


def _world(conn: Any) -> None:
    """Three incidents this period (one flapping, paged and acknowledged by ana; one reopened;
    one a drill), one in the previous period, one too old for either."""
    t = NOW - 3 * DAY
    _incident(conn, 1, t)
    _alert(conn, 1, "a1", {"alertname": "HighLatency", "team": "pay"}, {"runbook_url": "http://rb"})
    _entry(conn, 1, "alert_fired", t)
    _entry(conn, 1, "alert_fired", t + 60 * NS)  # fired again after it resolved: flapping
    _entry(conn, 1, "escalation_step", t + 300 * NS, data={"people": ["ana", "bo"]})
    _entry(conn, 1, "status_changed", t + 400 * NS, actor="ana", data={"to": "acknowledged"})
    _set(conn, 1, status="acknowledged", acknowledged_at=t + 400 * NS)
    _set(conn, 1, status="mitigated", mitigated_at=t + 1000 * NS)
    _set(conn, 1, status="resolved", resolved_at=t + 2000 * NS)
    _incident(conn, 2, t + DAY, team="web", service="db")
    _alert(conn, 2, "a2", {"alertname": "DiskFull", "team": "web"})
    _entry(conn, 2, "alert_fired", t + DAY)
    _entry(conn, 2, "reopened", t + DAY + NS)
    _set(conn, 2, status="acknowledged", acknowledged_at=t + DAY + 100 * NS)
    _incident(conn, 3, t + 2 * DAY)
    _alert(conn, 3, "a3", {"alertname": "Drill"})
    _set(conn, 3, drill=1)
    _incident(conn, 4, NOW - 40 * DAY)
    _set(
        conn,
        4,
        status="resolved",
        acknowledged_at=NOW - 40 * DAY + 60 * NS,
        mitigated_at=NOW - 40 * DAY,
        resolved_at=NOW - 40 * DAY + 3600 * NS,
    )
    _incident(conn, 5, NOW - 90 * DAY)


def test_the_facts_of_a_period_and_the_one_before(databases: Databases) -> None:
    conn = databases.new()
    _world(conn)
    facts = insights.read(conn, until=NOW, span=30 * DAY)
    by_id = {i.id: i for i in facts.current}
    assert sorted(by_id) == [1, 2]  # the drill and the older ones left out
    assert [i.id for i in facts.previous] == [4]
    one, two = by_id[1], by_id[2]
    assert (one.alertname, one.runbook, one.flaps, one.pages, one.reopens) == (
        "HighLatency",
        True,
        1,
        1,
        0,
    )
    assert (two.alertname, two.runbook, two.flaps, two.pages, two.reopens) == (
        "DiskFull",
        False,
        0,
        0,
        1,
    )
    assert sorted((x.person, x.kind, x.incident_id) for x in facts.interactions) == [
        ("ana", "ack", 1),
        ("ana", "page", 1),
        ("bo", "page", 1),
    ]
    only = insights.read(conn, until=NOW, span=30 * DAY, labels=[("alertname", "DiskFull")])
    assert [i.id for i in only.current] == [2]


def test_a_label_name_that_is_not_one_is_refused(databases: Databases) -> None:
    conn = databases.new()
    with pytest.raises(ValueError, match="label name"):
        insights.read(conn, until=NOW, span=DAY, labels=[("x') OR 1=1 --", "v")])


def test_the_means_equal_the_mttx_histograms_sum_over_count(databases: Databases) -> None:
    """The same incidents read by the insights and by the metrics' aggregates (what
    /metrics exposes as incident_bridge_time_to_*_seconds_sum and _count)."""
    conn = databases.new()
    t = NOW - 10 * DAY
    for iid in range(1, 9):
        _incident(conn, iid, t + iid * 3600 * NS, team="pay" if iid % 2 else "web")
        _set(conn, iid, status="acknowledged", acknowledged_at=t + iid * 3600 * NS + iid * 7 * NS)
        if iid % 3:
            _set(conn, iid, status="mitigated", mitigated_at=t + iid * 3600 * NS + iid * 50 * NS)
        if iid % 3 == 1:
            _set(conn, iid, status="resolved", resolved_at=t + iid * 3600 * NS + iid * 90 * NS)
    facts = insights.read(conn, until=NOW, span=30 * DAY)
    trend = core.compute(facts, now=NOW, span=30 * DAY, required=lambda r, s: False)
    # the answer the service gives (from the kept sums) is the same, table for table
    insights.refresh(conn)
    rollup = insights.read_rollup(conn, until=NOW, span=30 * DAY, required=lambda r, s: False)
    assert core.tables_of(rollup, now=NOW, span=30 * DAY).tables == trend.tables
    ours = {row[0]: row[1] for row in trend.tables["trend"].rows}
    sums: dict[str, list[float]] = {}
    for metric, _sev, _team, _bucket, n, total in aggregates.read(conn, TEAMS).histograms:
        c, s = sums.get(metric, [0, 0.0])
        sums[metric] = [c + n, s + total]
    for measure, metric in (("mtta_s", "ack"), ("mttm_s", "mitigate"), ("mttr_s", "resolve")):
        count, total = sums[metric]
        assert ours[measure] == pytest.approx(total / count, abs=1e-3), measure
    by_team = {row[0]: row for row in trend.tables["by_team"].rows}
    pay = [
        row
        for row in aggregates.read(conn, TEAMS).histograms
        if row[0] == "ack" and row[2] == "pay"
    ]
    assert by_team["pay"][2] == pytest.approx(sum(r[5] for r in pay) / sum(r[4] for r in pay))
