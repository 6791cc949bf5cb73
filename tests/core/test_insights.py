"""The insights' aggregation (core/insights.py): pure, on hand-made facts."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bridge.core import insights as ins
from bridge.core.insights import Facts, IncidentFact, Interaction, OpenItem, WorkingHours

NS = 10**9
DAY = 86_400 * NS


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * NS


NOW = at("2026-12-07T12:00:00")


def fact(iid: int, opened: int, **kw: object) -> IncidentFact:
    base = dict(
        id=iid,
        severity="sev1",
        team="pay",
        service="api",
        route="r",
        status="resolved",
        started_at=opened,
        opened_at=opened,
    )
    base.update(kw)
    return IncidentFact(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text,span", [("30d", 30 * DAY), ("12h", 12 * 3600 * NS), ("2w", 14 * DAY)]
)
def test_since_reads_hours_days_weeks(text: str, span: int) -> None:
    assert ins.parse_since(text) == span


@pytest.mark.parametrize(
    "text", ["", "30", "0d", "-1d", "1.5d", "30 d", "30m", "\u0661d", "99999w"]
)
def test_a_bad_since_names_the_field(text: str) -> None:
    with pytest.raises(ins.InsightsError) as e:
        ins.parse_since(text)
    assert e.value.field == "since"


def test_means_trend_and_groups() -> None:
    t = NOW - 5 * DAY
    cur = [
        fact(
            1, t, acknowledged_at=t + 60 * NS, mitigated_at=t + 600 * NS, resolved_at=t + 1200 * NS
        ),
        fact(
            2,
            t,
            team="web",
            acknowledged_at=t + 120 * NS,
            resolved_at=t + 2400 * NS,
            mitigated_at=t + 1800 * NS,
        ),
        # dismissed: its acknowledgement counts, no time to mitigate or resolve (as the metrics)
        fact(
            3,
            t,
            dismissed=True,
            acknowledged_at=t + 30 * NS,
            resolved_at=t + 99999 * NS,
            mitigated_at=t + 99999 * NS,
        ),
    ]
    prev = [
        fact(
            9,
            t - 30 * DAY,
            resolved_at=t - 30 * DAY + 3600 * NS,
            mitigated_at=t - 30 * DAY + 60 * NS,
        )
    ]
    out = ins.compute(Facts(cur, prev), now=NOW, span=30 * DAY, required=lambda r, s: False)
    trend = {r[0]: r[1:] for r in out.tables["trend"].rows}
    assert trend["incidents"] == (3, 1, 200.0)
    assert trend["mtta_s"] == (70.0, None, None)
    assert trend["mttm_s"] == (1200.0, 60.0, 1900.0)
    assert trend["mttr_s"] == (1800.0, 3600.0, -50.0)
    teams = {r[0]: r for r in out.tables["by_team"].rows}
    assert teams["pay"][1:] == (2, 45.0, 600.0, 1200.0, 3600.0, -66.7)
    assert teams["web"][4] == 2400.0 and teams["web"][5] is None
    assert out.tables["by_week"].rows == [("2026-11-30", 3, 70.0, 1200.0, 1800.0)]


def test_noisiest_and_runbooks() -> None:
    t = NOW - DAY
    cur = [
        fact(1, t, alertname="Disk", service="db", pages=2, flaps=1),
        fact(2, t, alertname="Disk", service="db", reopens=1),
        fact(3, t, alertname="Latency", service="api", runbook=True),
        fact(4, t, alertname="=cmd()", service="api"),
    ]
    out = ins.compute(Facts(cur), now=NOW, span=30 * DAY, required=lambda r, s: False)
    assert out.tables["noisiest"].rows[0] == ("Disk", "db", 2, 2, 1, 1)
    assert [r[0] for r in out.tables["no_runbook"].rows] == ["Disk", "=cmd()"]
    csv = ins.csv_text(out.tables["no_runbook"])
    assert csv.splitlines()[2] == "'=cmd(),api,1"  # no formula for a spreadsheet


def test_off_hours_in_the_rotation_zone() -> None:
    hours = WorkingHours()
    berlin = ZoneInfo("Europe/Berlin")
    # Monday 2026-12-07 17:00-20:00 in Berlin (16:00-19:00 UTC): one working hour, two off
    start = at("2026-12-07T16:00:00")
    assert ins.off_hours_ns(start, start + 3 * 3600 * NS, berlin, hours) == 2 * 3600 * NS
    # the same span read in UTC: 16:00-18:00 working, 18:00-19:00 off
    assert ins.off_hours_ns(start, start + 3 * 3600 * NS, ZoneInfo("UTC"), hours) == 3600 * NS
    # a Saturday is off all day
    sat = at("2026-12-05T10:00:00")
    assert ins.off_hours_ns(sat, sat + 3600 * NS, berlin, hours) == 3600 * NS
    assert not ins.is_working(sat, berlin, hours)


def test_interruptions_per_person() -> None:
    t = at("2026-12-05T22:00:00")  # Saturday night
    inc = fact(1, t, mitigated_at=t + 2 * 3600 * NS)
    xs = [
        Interaction("ana", "page", 1, t),
        Interaction("ana", "ack", 1, t + 600 * NS),
        Interaction("bo", "page", 1, at("2026-12-07T10:00:00")),
    ]
    out = ins.compute(
        Facts([inc], interactions=xs),
        now=NOW,
        span=30 * DAY,
        required=lambda r, s: False,
        zones={"ana": "Europe/Berlin"},
    )
    rows = {r[0]: r for r in out.tables["interruptions"].rows}
    assert rows["ana"] == ("ana", "Europe/Berlin", "09:00-18:00 Mon-Fri", 1, 1, 2, 2.0)
    assert rows["bo"][1:6] == ("UTC", "09:00-18:00 Mon-Fri", 1, 0, 0)


def test_follow_up_health() -> None:
    old = NOW - 10 * DAY
    cur = [
        fact(1, old, route="r", resolved_at=old),  # required, 3 days overdue
        fact(2, old, route="r", resolved_at=NOW - DAY),  # not yet due
        fact(3, old, route="r", resolved_at=old, published=True),
        fact(4, old, route="quiet", resolved_at=old),  # not required
    ]
    items = [OpenItem(1, "fix disk", "ana", NOW - 2 * DAY), OpenItem(1, "older", "", NOW - 5 * DAY)]
    out = ins.compute(
        Facts(cur, open_items=items),
        now=NOW,
        span=30 * DAY,
        required=lambda route, sev: route == "r",
    )
    assert out.tables["postmortems_overdue"].rows == [(1, "r", "sev1", old, 3.0)]
    assert [(r[1], r[4]) for r in out.tables["action_items"].rows] == [
        ("older", 5.0),
        ("fix disk", 2.0),
    ]
    md = ins.markdown_text(out)
    assert "| 1 | r | sev1 |" in md and "## No runbook" in md


def test_long_follow_up_lists_are_cut_and_counted() -> None:
    old = NOW - 30 * DAY
    cur = [fact(i, old - i * 60 * NS, resolved_at=old - i * 60 * NS) for i in range(1, 251)]
    items = [OpenItem(i, f"item {i}", "", old + i) for i in range(1, 151)]
    out = ins.compute(
        Facts(cur, open_items=items), now=NOW, span=60 * DAY, required=lambda r, s: True
    )
    overdue = out.tables["postmortems_overdue"].rows
    assert len(overdue) == ins.LIST_ROWS and overdue[0][0] == 250  # the most overdue first
    assert len(out.tables["action_items"].rows) == ins.LIST_ROWS
    trend = {r[0]: r[1] for r in out.tables["trend"].rows}
    assert (trend["postmortems_overdue"], trend["open_action_items"]) == (250, 150)


def test_the_calendar_answers_as_the_day_by_day_walk_across_clock_changes() -> None:
    """Interruptions ask a zone's working instants by bisection (``_Calendar``): the same
    answers as ``is_working`` and ``off_hours_ns`` (whole seconds, where their float reading
    is exact), around the spring and autumn changes and with rotations' own hours."""
    import random
    from datetime import time

    rng = random.Random(7)
    lo, hi = at("2026-03-20T00:00:00"), at("2026-11-10T00:00:00")
    for name in ("Europe/Berlin", "America/New_York", "Australia/Sydney", "UTC"):
        zone = ZoneInfo(name)
        for hours in (WorkingHours(), WorkingHours(time(7, 30), time(16, 0), frozenset({5, 6}))):
            cal = ins._Calendar(zone, hours, lo, hi + 2 * DAY)
            for _ in range(300):
                start = lo + rng.randrange((hi - lo) // NS) * NS
                end = start + rng.randrange(2 * 86_400) * NS
                assert cal.is_working(start) == ins.is_working(start, zone, hours)
                assert cal.off_hours_ns(start, end) == ins.off_hours_ns(start, end, zone, hours)


def test_interruptions_count_against_each_persons_rotation_hours() -> None:
    """The same Saturday page: off hours for ana (Monday to Friday), working for cy, whose
    rotation works weekends; each row says whose hours counted."""
    from datetime import time

    t = at("2026-12-05T12:00:00")  # Saturday noon UTC
    weekend = WorkingHours(time(8, 0), time(20, 0), frozenset({5, 6}))
    out = ins.compute(
        Facts(
            [fact(1, t, mitigated_at=t + 3600 * NS)],
            interactions=[Interaction("ana", "page", 1, t), Interaction("cy", "page", 1, t)],
        ),
        now=NOW,
        span=30 * DAY,
        required=lambda r, s: False,
        hours_of={"cy": weekend},
    )
    rows = {r[0]: r for r in out.tables["interruptions"].rows}
    assert rows["ana"][2:] == ("09:00-18:00 Mon-Fri", 1, 0, 1, 1.0)
    assert rows["cy"][2:] == ("08:00-20:00 Sat-Sun", 1, 0, 0, 0.0)
    assert out.working_hours == "09:00-18:00 Mon-Fri"
