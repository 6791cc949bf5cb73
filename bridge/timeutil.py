"""Timestamps as integer nanoseconds since the epoch, UTC.

Alertmanager sends RFC 3339 with nanoseconds; Python's datetime keeps microseconds.
Integers keep every digit, compare exactly (HA peers send identical values) and are cheap.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

NS = 1_000_000_000
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$"
)
# Go's zero time: Alertmanager's endsAt for an alert that is still firing.
GO_ZERO = "0001-01-01T00:00:00Z"
# Nanoseconds since the epoch must fit SQLite's 64-bit integers.
_MAX_NS = 2**63 - 1
_MIN_NS = -(2**63)


def parse_rfc3339(text: str) -> int | None:
    """Parse RFC 3339 into ns since epoch; Go's zero time gives None ("no end")."""
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError("not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if year <= 1:
        return None
    frac = (m.group(7) or "").ljust(9, "0")
    zone = m.group(8)
    base = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        base -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    value = _epoch_seconds(base) * NS + int(frac)
    if not _MIN_NS <= value <= _MAX_NS:
        raise ValueError("timestamp out of range (years 1678 to 2261)")
    return value


def _epoch_seconds(dt: datetime) -> int:
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return delta.days * 86400 + delta.seconds


def format_ns(ns: int | None) -> str | None:
    """Render ns since epoch as RFC 3339 UTC; sub-second digits only when present."""
    if ns is None:
        return None
    seconds, frac = divmod(ns, NS)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def from_datetime(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError("naive datetime")
    return _epoch_seconds(dt.astimezone(UTC)) * NS + dt.microsecond * 1000


def to_datetime(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // NS, UTC).replace(microsecond=(ns % NS) // 1000)
