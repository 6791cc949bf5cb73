"""The incident metrics' aggregates (migration 0011): the triggers in the milestone's
transaction, the backfill of a database that already has incidents, and what counts how."""

from __future__ import annotations

from typing import Any

from bridge.core import mttx
from bridge.store import metrics as aggregates
from tests.store.conftest import Databases
from tests.store.test_store import next_id

NS = 10**9
TEAMS = frozenset({"pay", "web"})


def _open(
    conn: Any,
    iid: int,
    severity: str = "sev1",
    team: str | None = "pay",
    started: int = 0,
    opened: int = 45,
) -> None:
    conn.execute(
        "INSERT INTO incidents (id, key, title, severity, status, route, team, started_at, "
        "opened_at) VALUES (?, 'k', 't', ?, 'triggered', 'r', ?, ?, ?)",
        (iid, severity, team, started * NS, opened * NS),
    )


def _set(conn: Any, iid: int, **values: int | str | None) -> None:
    sets = ", ".join(f"{k} = ?" for k in values)
    conn.execute(f"UPDATE incidents SET {sets} WHERE id = ?", (*values.values(), iid))


def _life(conn: Any) -> None:
    """Four incidents: acknowledged, mitigated, reopened, mitigated again and resolved (1);
    acknowledged after mitigation, by hand (2); resolved by hand at once (3); open (4)."""
    _open(conn, 1)
    _set(conn, 1, status="acknowledged", acknowledged_at=100 * NS)
    _set(conn, 1, status="mitigated", mitigated_at=200 * NS)
    conn.execute(
        "INSERT INTO timeline (id, incident_id, time, kind, actor, text) "
        f"VALUES ({next_id('timeline')}, 1, 1, 'reopened', 'alertmanager', 'Reopened')"
    )
    _set(conn, 1, status="triggered", mitigated_at=None)
    _set(conn, 1, status="acknowledged", acknowledged_at=4000 * NS)  # overwritten: not again
    _set(conn, 1, status="mitigated", mitigated_at=5000 * NS)  # after a reopen: not again
    _set(conn, 1, status="resolved", resolved_at=6000 * NS)
    _open(conn, 2, severity="sev2", team=None, started=10, opened=20)
    _set(conn, 2, status="mitigated", mitigated_at=70 * NS)
    _set(conn, 2, acknowledged_at=100 * NS)
    _open(conn, 3, severity="sev3", team="web")
    _set(conn, 3, status="resolved", mitigated_at=900 * NS, resolved_at=900 * NS)
    _open(conn, 4, started=100, opened=50)  # started after it opened: a delay of 0, never < 0


def _histograms(conn: Any) -> dict[tuple[str, str, str], tuple[int, float]]:
    out: dict[tuple[str, str, str], tuple[int, float]] = {}
    for metric, severity, team, _bucket, n, total in aggregates.read(conn, TEAMS).histograms:
        c, s = out.get((metric, severity, team), (0, 0.0))
        out[(metric, severity, team)] = (c + n, s + total)
    return out


def test_one_observation_per_incident_per_milestone_the_first_time(databases: Databases) -> None:
    conn = databases.new()
    _life(conn)
    h = _histograms(conn)
    assert h[("ack", "sev1", "pay")] == (1, 100.0)  # the second acknowledgement is not observed
    assert h[("mitigate", "sev1", "pay")] == (1, 200.0)  # the first mitigation only
    assert h[("resolve", "sev1", "pay")] == (1, 6000.0)
    assert h[("ack", "sev2", "none")] == (1, 90.0)  # by hand, after mitigation: counted
    assert h[("mitigate", "sev3", "web")] == (1, 900.0)  # resolving passes through mitigation
    assert h[("detect", "sev1", "pay")] == (2, 45.0)  # incident 4: 0, not -50
    counters = {(m, s, t): n for m, s, t, n in aggregates.read(conn, TEAMS).counters}
    assert counters[("opened", "sev1", "pay")] == 2
    assert counters[("reopened", "sev1", "pay")] == 1
    buckets = {
        (m, b) for m, s, t, b, n, _ in aggregates.read(conn, TEAMS).histograms if s == "sev1"
    }
    assert ("resolve", mttx.bucket_index(6000)) in buckets
    assert ("resolve", 8) in buckets  # 3600 < 6000 <= 7200


def test_the_backfill_equals_the_triggers(databases: Databases) -> None:
    live = databases.new()
    _life(live)
    old = databases.new(upto="0011")
    _life(old)
    databases.upgrade(old)
    a, b = aggregates.read(live, TEAMS), aggregates.read(old, TEAMS)
    assert sorted(a.counters) == sorted(b.counters)
    assert sorted(a.postmortems) == sorted(b.postmortems)
    # the backfill does not know the first mitigation (acknowledgement) of a reopened
    # incident: its latest one counts
    differ = {(r[0], r[1], r[2]) for r in set(a.histograms) ^ set(b.histograms)}
    assert differ <= {("mitigate", "sev1", "pay"), ("ack", "sev1", "pay")}
    # and a trigger after the backfill adds to it
    _open(old, 5)
    assert _histograms(old)[("detect", "sev1", "pay")] == (3, 90.0)


def test_postmortems_pending_and_followup_items_open(databases: Databases) -> None:
    conn = databases.new()
    _life(conn)
    pending = {(r, s): n for r, s, n in aggregates.read(conn, TEAMS).postmortems}
    assert pending == {("r", "sev1"): 1, ("r", "sev3"): 1}
    conn.execute(
        "INSERT INTO postmortem_publications (incident_id, version, path, published_by, "
        "published_at) VALUES (1, 1, 'p.md', 'ann', 1)"
    )
    _set(conn, 1, status="closed", closed_at=7000 * NS)  # publishing closes: no change
    conn.execute(
        "INSERT INTO postmortem_publications (incident_id, version, path, published_by, "
        "published_at) VALUES (1, 2, 'p.md', 'ann', 2)"
    )  # a second publication counts nothing
    _set(conn, 3, status="closed", closed_at=7000 * NS)  # still unpublished: still pending
    assert {(r, s): n for r, s, n in aggregates.read(conn, TEAMS).postmortems} == {("r", "sev3"): 1}

    def item(iid: int, state: str) -> None:
        conn.execute(
            "INSERT INTO followup_items (id, incident_id, kind, text, state, created_by, "
            f"created_at) VALUES ({next_id('followup_items')}, ?, 'action', 'x', ?, 'ann', 1)",
            (iid, state),
        )

    item(1, "open")
    item(1, "open")
    item(2, "done")
    assert aggregates.read(conn, TEAMS).followup_items_open == 2
    conn.execute("UPDATE followup_items SET state = 'waived' WHERE id = 1")
    conn.execute("UPDATE followup_items SET state = 'open' WHERE id = 3")
    conn.execute("UPDATE followup_items SET state = 'open' WHERE id = 3")  # no change
    assert aggregates.read(conn, TEAMS).followup_items_open == 2
    conn.execute("DELETE FROM followup_items WHERE id = 2")
    assert aggregates.read(conn, TEAMS).followup_items_open == 1


def test_the_read_bounds_teams_and_sums_them(databases: Databases) -> None:
    conn = databases.new()
    for iid, team in enumerate(["pay", "x1", "x2", None, "web"], start=1):
        _open(conn, iid, team=team)
    opened = {t: n for m, _s, t, n in aggregates.read(conn, {"pay"}).counters if m == "opened"}
    assert opened == {"pay": 1, "other": 3, "none": 1}
    detect = [r for r in aggregates.read(conn, ()).histograms if r[0] == "detect"]
    assert {(r[2], r[4]) for r in detect} == {("other", 4), ("none", 1)}


def test_team_labels_are_bounded() -> None:
    teams = {"pay", "web"}
    assert mttx.team_label("pay", teams) == "pay"
    assert mttx.team_label("from-an-alert-label", teams) == "other"
    assert mttx.team_label(None, teams) == "none"
    assert mttx.team_label("", teams) == "none"
    assert mttx.severity_label("sev9", ("sev1",)) == "other"
    assert mttx.bucket_index(30) == 0
    assert mttx.bucket_index(30.001) == 1
    assert mttx.bucket_index(10**7) == len(mttx.BUCKETS)
