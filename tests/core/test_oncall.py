"""The pure parts of on call (core/oncall.py): a chat's "until 18:00" in the rotation's time
zone, and the iCalendar text (escaping, folding at 75 octets, stable UIDs)."""

from __future__ import annotations

from datetime import UTC, datetime

import icalendar

from bridge.core.oncall import ShiftRecord, calendar, shift_uid, until_instant

S = 10**9


def ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * S


def test_until_a_time_of_day_is_the_next_one_in_the_rotations_zone() -> None:
    now = ns("2026-12-08T10:00:00")  # 11:00 in Berlin (CET)
    assert until_instant("18:00", "Europe/Berlin", now) == ns("2026-12-08T17:00:00")
    # 09:00 has passed in Berlin: tomorrow's
    assert until_instant("9:00", "Europe/Berlin", now) == ns("2026-12-09T08:00:00")
    assert until_instant("18:00", "America/New_York", now) == ns("2026-12-08T23:00:00")
    assert until_instant("2026-12-09T06:00:00Z", "Europe/Berlin", now) == ns("2026-12-09T06:00:00")
    for bad in ("24:00", "18h", "teatime", "2026-13-01T00:00:00Z", ""):
        assert until_instant(bad, "UTC", now) is None, bad


def test_a_calendar_is_valid_escaped_folded_with_stable_uids() -> None:
    name = "ops; night, shift \\ " + "é" * 60  # separators, backslash and long UTF-8
    shifts = [
        ShiftRecord(name, "amara", ns("2026-12-08T09:00:00"), ns("2026-12-09T09:00:00")),
        ShiftRecord(name, "bjorn", ns("2026-12-09T09:00:00"), ns("2026-12-10T09:00:00")),
    ]
    text = calendar(f"On call: {name}", shifts, now=ns("2026-12-08T00:00:00"))
    lines = text.split("\r\n")
    assert lines[-1] == "" and all(len(line.encode()) <= 75 for line in lines)
    cal = icalendar.Calendar.from_ical(text)
    events = list(cal.walk("VEVENT"))
    assert [str(e["SUMMARY"]) for e in events] == [
        f"On call: {name} (amara)",
        f"On call: {name} (bjorn)",
    ]
    assert events[0].decoded("DTSTART") == datetime(2026, 12, 8, 9, tzinfo=UTC)
    assert events[0].decoded("DTSTAMP") == datetime(2026, 12, 8, tzinfo=UTC)
    assert str(events[0]["UID"]) == shift_uid(shifts[0]) != shift_uid(shifts[1])
    # the UID is the shift's: the same rotation, person and start, whatever its end
    longer = ShiftRecord(name, "amara", shifts[0].start, shifts[0].end + 3600 * S)
    assert shift_uid(longer) == shift_uid(shifts[0])
