"""Who holds a rotation at time T, across DST changes (hand-offs follow the wall clock)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.rules.rotations import Member, Override, Rotation, handoff_instant, holder

A, B, C = Member("a"), Member("b"), Member("c")


def rot(tz: str, period: int = 1, at: time = time(9, 0), **kw: object) -> Rotation:
    return Rotation("r", (A, B, C), period, at, tz, date(2026, 1, 5), **kw)  # type: ignore[arg-type]


def utc(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


CASES = [
    # (name, rotation, instant (UTC), holder)
    ("first shift starts at the hand-off", rot("UTC"), "2026-01-05T09:00", "a"),
    ("before the first hand-off wraps around", rot("UTC"), "2026-01-05T08:59", "c"),
    ("daily next day", rot("UTC"), "2026-01-06T09:00", "b"),
    ("weekly", rot("UTC", 7), "2026-01-12T08:59", "a"),
    ("weekly second week", rot("UTC", 7), "2026-01-12T09:00", "b"),
    ("three-day period", rot("UTC", 3), "2026-01-11T09:00", "c"),
    # Europe/Berlin springs forward on 2026-03-29 02:00 -> 03:00: 09:00 CET = 08:00 UTC before,
    # 09:00 CEST = 07:00 UTC from that day on. 2026-03-28 is day 82 (82 % 3 = 1 -> b).
    ("Berlin day before spring, just before", rot("Europe/Berlin"), "2026-03-28T07:59", "a"),
    ("Berlin day before spring, at 09:00 CET", rot("Europe/Berlin"), "2026-03-28T08:00", "b"),
    ("Berlin spring day, 08:59 CEST", rot("Europe/Berlin"), "2026-03-29T06:59", "b"),
    ("Berlin spring day, 09:00 CEST", rot("Europe/Berlin"), "2026-03-29T07:00", "c"),
    # Berlin falls back on 2026-10-25 03:00 -> 02:00: 09:00 CET = 08:00 UTC (day 293 -> c).
    ("Berlin fall day, 09:00 CEST would be wrong", rot("Europe/Berlin"), "2026-10-25T07:30", "b"),
    ("Berlin fall day, 09:00 CET", rot("Europe/Berlin"), "2026-10-25T08:00", "c"),
    # New York springs forward on 2026-03-08: 09:00 EDT = 13:00 UTC (day 62 -> c).
    ("New York spring day, 08:59 EDT", rot("America/New_York"), "2026-03-08T12:59", "b"),
    ("New York spring day, 09:00 EDT", rot("America/New_York"), "2026-03-08T13:00", "c"),
    # ... and falls back on 2026-11-01: 09:00 EST = 14:00 UTC (day 300 -> a).
    (
        "New York fall day, 09:00 EDT would be wrong",
        rot("America/New_York"),
        "2026-11-01T13:30",
        "c",
    ),
    ("New York fall day, 09:00 EST", rot("America/New_York"), "2026-11-01T14:00", "a"),
    # A hand-off inside the spring gap (02:30 does not exist) happens when the gap ends.
    ("gap hand-off before", rot("Europe/Berlin", at=time(2, 30)), "2026-03-29T00:59", "b"),
    ("gap hand-off at 03:00 CEST", rot("Europe/Berlin", at=time(2, 30)), "2026-03-29T01:00", "c"),
    # A hand-off in the repeated hour happens at its first occurrence (02:30 CEST = 00:30 UTC).
    ("fold hand-off not yet", rot("Europe/Berlin", at=time(2, 30)), "2026-10-25T00:29", "b"),
    (
        "fold hand-off first occurrence",
        rot("Europe/Berlin", at=time(2, 30)),
        "2026-10-25T00:30",
        "c",
    ),
    ("fold hand-off not again", rot("Europe/Berlin", at=time(2, 30)), "2026-10-25T01:30", "c"),
]


@pytest.mark.parametrize(
    ("rotation", "at", "want"), [(r, a, w) for _, r, a, w in CASES], ids=[n for n, *_ in CASES]
)
def test_holder(rotation: Rotation, at: str, want: str) -> None:
    assert holder(rotation, utc(at)).name == want


def test_override_replaces_the_holder_for_its_range() -> None:
    zone = ZoneInfo("Europe/Berlin")
    o = Override(
        handoff_instant(date(2026, 12, 24), time(9), zone),
        handoff_instant(date(2026, 12, 27), time(9), zone),
        C,
    )
    r = rot("Europe/Berlin", overrides=(o,))
    plain = rot("Europe/Berlin")
    assert holder(r, utc("2026-12-24T07:59")) == holder(plain, utc("2026-12-24T07:59"))
    assert holder(r, utc("2026-12-24T08:00")).name == "c"
    assert holder(r, utc("2026-12-27T07:59")).name == "c"
    assert holder(r, utc("2026-12-27T08:00")) == holder(
        rot("Europe/Berlin"), utc("2026-12-27T08:00")
    )


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        holder(rot("UTC"), datetime(2026, 1, 5, 9))


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"]


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    period=st.integers(1, 10),
    hour=st.integers(4, 23),  # outside every gap/fold of these zones
    minute=st.sampled_from([0, 15, 30]),
    seconds=st.integers(0, 3 * 365 * 86400),
)
def test_hand_off_follows_the_local_wall_clock(
    zone: str, period: int, hour: int, minute: int, seconds: int
) -> None:
    r = rot(zone, period, time(hour, minute))
    at = datetime(2025, 6, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    local = at.astimezone(ZoneInfo(zone))
    day = local.date() if local.time() >= time(hour, minute) else local.date() - timedelta(days=1)
    want = r.members[((day - r.start).days // period) % 3]
    assert holder(r, at) == want
