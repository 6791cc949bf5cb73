"""Who is on call, as the API, the CLI, the pages, the calendars and chat see it: plain records
of shifts (ns times), the iCalendar text of a feed (RFC 5545), and the reading of a chat's
"until 18:00" in a rotation's time zone. Pure: the rotations' arithmetic is in
``rules/rotations.py``, reached through the runtime."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bridge.core.timeutil import parse_rfc3339
from bridge.core.values import immutable


@immutable
class OverrideSpan:
    """A stored override as the runtime merges it: ``person`` holds ``rotation`` for
    ``[start, end)`` (ns). Earlier spans in a sequence win over later ones."""

    rotation: str
    person: str
    start: int
    end: int


@immutable
class ShiftRecord:
    rotation: str
    person: str
    start: int
    end: int


@immutable
class RotationNow:
    """A rotation at an instant: who holds it, who is next; the hand-off is ``now.end``."""

    rotation: str
    timezone: str
    now: ShiftRecord
    next: ShiftRecord | None


# --- iCalendar (RFC 5545) ---------------------------------------------------------------------

PRODID = "-//incident-bridge//on-call//EN"


def _escape(text: str) -> str:
    """TEXT values (RFC 5545 3.3.11): backslash, semicolon, comma and newlines escaped; other
    control characters (not allowed in a TEXT) dropped."""
    text = text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    text = text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")
    return "".join(c for c in text if c >= " " or c == "\t")


def _fold(line: str) -> str:
    """Lines of at most 75 octets (3.1), continued with CRLF and a space, never inside a
    UTF-8 sequence."""
    out: list[str] = []
    current = ""
    size = 0
    limit = 75
    for char in line:
        n = len(char.encode())
        if size + n > limit:
            out.append(current)
            current, size, limit = char, n, 74  # a continuation's leading space counts
        else:
            current += char
            size += n
    out.append(current)
    return "\r\n ".join(out)


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y%m%dT%H%M%SZ")


def shift_uid(shift: ShiftRecord) -> str:
    """The same shift has the same UID in every feed and every fetch (a calendar updates it
    instead of adding a copy): it is named by rotation, person and start."""
    digest = hashlib.sha256(f"{shift.rotation}\0{shift.person}\0{shift.start}".encode())
    return f"{digest.hexdigest()[:32]}@incident-bridge"


def calendar(name: str, shifts: Sequence[ShiftRecord], *, now: int, url: str = "") -> str:
    """A VCALENDAR of one VEVENT a shift (times in UTC, DTSTAMP ``now``), CRLF line ends."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{_escape(name)}",
    ]
    stamp = _utc(now)
    for s in shifts:
        lines += [
            "BEGIN:VEVENT",
            f"UID:{shift_uid(s)}",
            f"DTSTAMP:{stamp}",
            f"DTSTART:{_utc(s.start)}",
            f"DTEND:{_utc(s.end)}",
            f"SUMMARY:{_escape(f'On call: {s.rotation} ({s.person})')}",
            f"DESCRIPTION:{_escape(f'{s.person} holds the rotation {s.rotation}')}",
            "TRANSP:TRANSPARENT",
            *([f"URL:{_escape(url)}"] if url else []),
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(_fold(line) + "\r\n" for line in lines)


# --- "until 18:00" ----------------------------------------------------------------------------

_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def until_instant(text: str, timezone: str, now: int) -> int | None:
    """The instant a chat's ``until HH:MM`` means: the next time the wall clock of ``timezone``
    reads HH:MM after ``now`` (today, or tomorrow when that time has passed); an RFC 3339 time
    is taken as it is. None when ``text`` is neither."""
    m = _CLOCK.match(text.strip())
    if m is None:
        try:
            return parse_rfc3339(text.strip())
        except ValueError:
            return None
    zone = ZoneInfo(timezone)
    local_now = datetime.fromtimestamp(now / 1e9, zone)
    day = local_now.date()
    for _ in range(3):  # today, tomorrow (and the day after, past a DST gap)
        at = datetime(day.year, day.month, day.day, int(m[1]), int(m[2]), tzinfo=zone)
        ns = int(at.timestamp()) * 10**9
        if ns > now:
            return ns
        day += timedelta(days=1)
    return None
