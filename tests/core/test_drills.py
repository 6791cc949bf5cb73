"""Drills, pure: the cron subset of scheduled drills (fields, lists, ranges, steps, day of month
or of week), its slots and what a tick fires and announces; the drill's labels and marking."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bridge.core import drills
from bridge.core.alertmanager import parse_webhook
from bridge.core.drills import CronError, Schedule, due, parse_cron, slots
from bridge.core.policy import BuiltinPolicy, Decision, Tiers, drill_decision

MIN = drills.MINUTE_NS


def ns(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 10**9  # type: ignore[misc]


def test_cron_fields_lists_ranges_steps() -> None:
    c = parse_cron("*/15 9-17/4 1,15 * 1-5")
    assert c.minutes == {0, 15, 30, 45}
    assert c.hours == {9, 13, 17}
    assert c.days == {1, 15} and c.weekdays == {1, 2, 3, 4, 5}
    # day of month and day of week both given: either matches, as in cron
    assert c.matches(datetime(2026, 12, 15, 9, 0, tzinfo=UTC))  # a Tuesday, and the 15th
    assert c.matches(datetime(2026, 12, 1, 13, 30, tzinfo=UTC))  # a Tuesday
    assert c.matches(datetime(2026, 11, 15, 9, 45, tzinfo=UTC))  # a Sunday, the 15th
    assert not c.matches(datetime(2026, 12, 6, 9, 0, tzinfo=UTC))  # Sunday the 6th
    assert parse_cron("0 0 * * 7").weekdays == {0}  # 7 is Sunday too


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 10 * *", "4 fields"),
        ("61 10 * * 1", "minute: '61' is outside 0-59"),
        ("0 24 * * 1", "hour: '24' is outside 0-23"),
        ("0 10 0 * *", "day of month: '0' is outside 1-31"),
        ("0 10 * 13 *", "month: '13' is outside 1-12"),
        ("0 10 * * MON", "day of week: 'MON' is not"),
        ("*/0 * * * *", "minute: step '0'"),
        ("5-1 * * * *", "minute: '5-1' is outside"),
    ],
)
def test_cron_errors_name_the_field(text: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse_cron(text)


def test_a_tick_fires_the_newest_slot_and_announces_those_ahead() -> None:
    monday_10 = ns(2026, 12, 7, 10, 0)  # a Monday
    weekly = Schedule(parse_cron("0 10 * * 1"), "0 10 * * 1", announce_before_s=3600)
    assert slots(weekly.cron, monday_10 - MIN, monday_10 + 7 * 24 * 60 * MIN) == [
        monday_10,
        monday_10 + 7 * 24 * 60 * MIN,
    ]
    assert due(weekly, monday_10 - 30 * MIN) == ([monday_10], [])  # announced an hour ahead
    assert due(weekly, monday_10 + 30 * 10**9) == ([], [monday_10])
    assert due(weekly, monday_10 + 16 * MIN) == ([], [])  # too late: not fired hours late
    every = Schedule(parse_cron("* * * * *"), "* * * * *")
    assert due(every, monday_10 + 5 * MIN) == ([], [monday_10 + 5 * MIN])  # one, not 15


def test_a_drill_decision_is_marked_and_leaves_stakeholders_out() -> None:
    base = Decision(
        key="k",
        severity="sev4",
        title="Checkout errors",
        fingerprints=("f",),
        tiers=Tiers(general=("g",), stakeholders=("execs",)),
    )
    labels = drills.labels(name="abc", severity="sev2")
    marked = drill_decision(base, labels)
    assert marked.drill and marked.title == "DRILL: Checkout errors"
    assert marked.severity == "sev2" and marked.tiers.stakeholders == ()
    asked = drill_decision(base, drills.labels(name="abc", stakeholders=True))
    assert asked.tiers.stakeholders == ("execs",) and asked.severity == "sev4"
    assert drill_decision(base, {"alertname": "Real"}) is base
    # a label value other than "true" is no drill
    assert drill_decision(base, {"drill": "yes"}) is base
    assert drill_decision(asked, labels).title == "DRILL: Checkout errors"  # prefixed once


def test_the_builtin_policy_marks_a_drill_too() -> None:
    body = drills.webhook(drills.labels(name="abc", severity="sev1"), ns(2026, 12, 7, 10, 0))
    (decision,) = BuiltinPolicy().evaluate(parse_webhook(json.dumps(body).encode()), 0)
    assert decision.drill and decision.severity == "sev1"
    assert decision.title.startswith("DRILL: ")
