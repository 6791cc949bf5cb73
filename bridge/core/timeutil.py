"""Timestamps as integer nanoseconds since the epoch, UTC.

Alertmanager sends RFC 3339 with nanoseconds; Python's datetime keeps microseconds.
Integers keep every digit, compare exactly (HA peers send identical values) and are cheap.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

NS = 1_000_000_000
# The clock every part is given (never reads one itself): nanoseconds since the epoch.
Clock = Callable[[], int]
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$"
)
# Go's zero time: Alertmanager's endsAt for an alert that is still firing.
GO_ZERO = "0001-01-01T00:00:00Z"
# Nanoseconds since the epoch must fit SQLite's 64-bit integers: years 1678 to 2261.
MAX_NS = 2**63 - 1
MIN_NS = -(2**63)


_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (integer arithmetic only: this runs
    for every timestamp of every webhook)."""
    year -= month <= 2
    era = (year if year >= 0 else year - 399) // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_rfc3339(text: str, *, clamp: bool = False) -> int | None:
    """Parse RFC 3339 into ns since epoch; Go's zero time gives None ("no end").

    A time outside the years 1678 to 2261 is an error, or with ``clamp`` the nearest time that
    can be kept (``MIN_NS`` or ``MAX_NS``): Alertmanager accepts such times, and an alert must
    not be lost for them."""
    if text == GO_ZERO:  # the endsAt of every firing alert
        return None
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError("not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if year <= 1:
        return None
    if not 1 <= month <= 12:
        raise ValueError("month out of range")
    if not 1 <= day <= (29 if month == 2 and _leap(year) else _DAYS_IN_MONTH[month - 1]):
        raise ValueError("day out of range for the month")
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError("time of day out of range")
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    zone = m.group(8)
    if zone not in ("Z", "z"):
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        seconds -= offset if zone[0] == "+" else -offset
    frac = m.group(7)
    value = seconds * NS + (int(frac.ljust(9, "0")) if frac else 0)
    if not MIN_NS <= value <= MAX_NS:
        if clamp:
            return MAX_NS if value > MAX_NS else MIN_NS
        raise ValueError("timestamp out of range (years 1678 to 2261)")
    return value


def format_ns(ns: int | None) -> str | None:
    """Render ns since epoch as RFC 3339 UTC; sub-second digits only when present."""
    if ns is None:
        return None
    seconds, frac = divmod(ns, NS)
    # isoformat is twice as fast as strftime; years are 1678-2261, always four digits.
    text = datetime.fromtimestamp(seconds, UTC).isoformat()[:19]
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"
