"""Who is on call over a span (pure): shifts with their true bounds, stored overrides merged over
the YAML ones (the stored win for their span), now and next with the hand-off time."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from bridge.rules.rotations import (
    Member,
    Override,
    Rotation,
    holder,
    now_and_next,
    shifts,
    with_overrides,
)

A, B, C, D = Member("a"), Member("b"), Member("c"), Member("d")


def utc(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


def daily(*overrides: Override, tz: str = "UTC") -> Rotation:
    return Rotation("ops", (A, B, C), 1, time(9, 0), tz, date(2026, 1, 5), overrides)


def names(found: list) -> list[tuple[str, str, str]]:
    return [(s.start.isoformat()[:16], s.end.isoformat()[:16], s.member.name) for s in found]


def test_shifts_follow_the_hand_offs_with_true_bounds() -> None:
    found = shifts(daily(), utc("2026-01-06T12:00"), utc("2026-01-07T10:00"))
    assert names(found) == [
        ("2026-01-06T09:00", "2026-01-07T09:00", "b"),
        ("2026-01-07T09:00", "2026-01-08T09:00", "c"),
    ]


def test_an_override_cuts_a_shift_and_a_person_holding_on_is_one_shift() -> None:
    # d takes 12:00-15:00 of b's day; then c covers from b's 15:00 up to c's own shift.
    rotation = daily(
        Override(utc("2026-01-06T12:00"), utc("2026-01-06T15:00"), D),
        Override(utc("2026-01-06T15:00"), utc("2026-01-07T09:00"), C),
    )
    found = shifts(rotation, utc("2026-01-06T10:00"), utc("2026-01-07T10:00"))
    assert names(found) == [
        ("2026-01-06T09:00", "2026-01-06T12:00", "b"),
        ("2026-01-06T12:00", "2026-01-06T15:00", "d"),
        ("2026-01-06T15:00", "2026-01-08T09:00", "c"),
    ]


def test_stored_overrides_win_over_yaml_ones_for_their_span_only() -> None:
    yaml = daily(Override(utc("2026-01-06T09:00"), utc("2026-01-07T09:00"), A))
    merged = with_overrides(yaml, (Override(utc("2026-01-06T12:00"), utc("2026-01-06T18:00"), D),))
    assert holder(merged, utc("2026-01-06T10:00")).name == "a"  # the YAML override
    assert holder(merged, utc("2026-01-06T13:00")).name == "d"  # the stored one wins
    assert holder(merged, utc("2026-01-06T18:00")).name == "a"  # the YAML one again
    assert holder(merged, utc("2026-01-07T09:00")).name == "c"  # the base schedule
    assert with_overrides(yaml, ()) is yaml


def test_a_swap_is_one_override_each_way() -> None:
    swap = (
        Override(utc("2026-01-06T09:00"), utc("2026-01-07T09:00"), C),
        Override(utc("2026-01-07T09:00"), utc("2026-01-08T09:00"), B),
    )
    found = shifts(with_overrides(daily(), swap), utc("2026-01-06T09:00"), utc("2026-01-08T09:00"))
    assert [s.member.name for s in found] == ["c", "b"]


def test_now_and_next_give_the_hand_off_time() -> None:
    now, nxt = now_and_next(daily(), utc("2026-01-06T12:00"))
    assert (now.member.name, now.end) == ("b", utc("2026-01-07T09:00"))
    assert nxt is not None and (nxt.member.name, nxt.start) == ("c", utc("2026-01-07T09:00"))
    # an override that makes c start early moves the hand-off to it
    early = daily(Override(utc("2026-01-06T20:00"), utc("2026-01-07T09:00"), C))
    now, nxt = now_and_next(early, utc("2026-01-06T12:00"))
    assert now.end == utc("2026-01-06T20:00")
    assert nxt is not None and (nxt.member.name, nxt.end) == ("c", utc("2026-01-08T09:00"))


def test_hand_offs_follow_the_wall_clock_across_dst() -> None:
    # Berlin springs forward on 2026-03-29: 09:00 is 08:00 UTC before and 07:00 UTC after.
    found = shifts(daily(tz="Europe/Berlin"), utc("2026-03-28T12:00"), utc("2026-03-29T12:00"))
    assert [(s.start, s.end) for s in found] == [
        (utc("2026-03-28T08:00"), utc("2026-03-29T07:00")),
        (utc("2026-03-29T07:00"), utc("2026-03-30T07:00")),
    ]


def test_a_rotation_of_one_has_nobody_next() -> None:
    solo = Rotation("solo", (A,), 7)
    now, nxt = now_and_next(solo, utc("2026-02-01T00:00"))
    assert now.member.name == "a" and nxt is None
