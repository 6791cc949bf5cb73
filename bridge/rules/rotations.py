"""On-call rotations and the pure answer to "who holds this rotation at time T".

A rotation hands off every ``period_days`` days at ``handoff`` wall-clock time in its own
time zone, starting with the first member on ``start``. Hand-offs follow the wall clock, so
across a DST change a shift is 23 or 25 hours long and the hand-off stays at 09:00 local. A
hand-off time that does not exist that day (inside a spring-forward gap) happens at the
first instant after the gap; one that exists twice (fall-back) happens at the first of them.
Overrides replace the holder for ``[start, end)``; a bare date means that day's hand-off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from bridge.core.insights import WorkingHours


@dataclass(frozen=True)
class Member:
    name: str
    handles: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Override:
    start: datetime  # aware
    end: datetime  # aware, exclusive
    member: Member


@dataclass(frozen=True)
class Rotation:
    name: str
    members: tuple[Member, ...]
    period_days: int = 7
    handoff: time = time(9, 0)
    timezone: str = "UTC"
    start: date = date(2026, 1, 5)
    overrides: tuple[Override, ...] = ()
    # targets told of each hand-off (channel messages, docs/oncall.md); empty: none
    handoff_to: tuple[str, ...] = ()
    # what the insights count as working hours on the rotation's wall clock (docs/insights.md)
    working_hours: WorkingHours = field(default_factory=WorkingHours)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)


def handoff_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The aware instant of the wall-clock time ``at`` on ``day`` in ``zone`` (gap-safe)."""
    local = datetime.combine(day, at, tzinfo=zone)  # fold=0: the first of a repeated hour
    u0 = local.astimezone(UTC)
    if u0.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return u0
    # A wall time inside a spring-forward gap: hand off at the transition itself, found by
    # bisection between the two readings of the wall time (the offset changes once there).
    lo = int(local.replace(fold=1).timestamp())
    hi = int(u0.timestamp())
    before = datetime.fromtimestamp(lo, zone).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def to_instant(value: date, rotation_zone: ZoneInfo, handoff: time) -> datetime:
    """An override bound: a date means that day's hand-off; a naive datetime is local."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=rotation_zone).astimezone(UTC)
    return handoff_instant(value, handoff, rotation_zone)


def shift_index(rotation: Rotation, at: datetime) -> int:
    """How many hand-offs have happened since the rotation's start (negative before it)."""
    if at.tzinfo is None:
        raise ValueError("holder() needs an aware datetime")
    zone = rotation.zone
    local_day = at.astimezone(zone).date()
    # The most recent hand-off day: today if today's hand-off has passed, else yesterday.
    if at < handoff_instant(local_day, rotation.handoff, zone):
        local_day -= timedelta(days=1)
    return (local_day - rotation.start).days // rotation.period_days


def holder(rotation: Rotation, at: datetime) -> Member:
    """Who holds ``rotation`` at ``at`` (aware). Pure: no clock, no I/O."""
    for o in rotation.overrides:
        if o.start <= at < o.end:
            return o.member
    idx = shift_index(rotation, at)
    return rotation.members[idx % len(rotation.members)]


def holder_at_ns(rotation: Rotation, now_ns: int) -> Member:
    return holder(rotation, datetime.fromtimestamp(now_ns / 1e9, tz=UTC))


def next_member(rotation: Rotation, after: str | None, at: datetime) -> Member | None:
    """The member after ``after`` in the rotation's order (wrapping round): who an escalation
    hands the commander role to. When ``after`` is no member (nobody holds the role, or someone
    outside the rotation does), the member after the one scheduled at ``at``. None when that
    would be ``after`` again (a rotation of one)."""
    names = [m.name for m in rotation.members]
    index = names.index(after) if after in names else shift_index(rotation, at) % len(names)
    found = rotation.members[(index + 1) % len(names)]
    return None if found.name == after else found


# --- who is on call over a span: shifts, stored overrides merged (docs/oncall.md) ---


@dataclass(frozen=True)
class Shift:
    """One person's stretch holding a rotation, ``[start, end)``, overrides applied."""

    start: datetime
    end: datetime
    member: Member


def with_overrides(rotation: Rotation, stored: tuple[Override, ...]) -> Rotation:
    """``rotation`` with overrides made at run time (API, CLI, pages, chat) merged over its YAML
    ones: ``holder`` takes the first override that covers an instant, so the stored ones go
    first (newest first, as given) and win over the YAML ones for their span; outside their
    span the YAML overrides and the base schedule still hold. The rules file stays the base."""
    if not stored:
        return rotation
    # replace: every other setting of the rotation (handoff_to, working hours) stays
    return replace(rotation, overrides=(*stored, *rotation.overrides))


def shift_start(rotation: Rotation, index: int) -> datetime:
    """The instant the ``index``-th base shift (0: the first member's at ``start``) begins."""
    day = rotation.start + timedelta(days=index * rotation.period_days)
    return handoff_instant(day, rotation.handoff, rotation.zone)


def _covering(rotation: Rotation, at: datetime) -> Override | None:
    return next((o for o in rotation.overrides if o.start < at < o.end), None)


def shifts(rotation: Rotation, start: datetime, end: datetime) -> list[Shift]:
    """The shifts that overlap ``[start, end)``, in order, with their true bounds (the first may
    begin before ``start``, the last end after ``end``): base hand-offs and override bounds cut
    the time, and a person holding on across a cut is one shift. Pure."""
    if end <= start:
        return []
    lo = shift_start(rotation, shift_index(rotation, start))
    hi = shift_start(rotation, shift_index(rotation, end) + 1)
    # An override across a bound moves that bound to the base hand-off beyond it (a few steps
    # at most: each move passes an override, and there are finitely many).
    for _ in range(len(rotation.overrides) + 1):
        o = _covering(rotation, lo)
        if o is None:
            break
        lo = shift_start(rotation, shift_index(rotation, o.start))
    for _ in range(len(rotation.overrides) + 1):
        o = _covering(rotation, hi)
        if o is None:
            break
        hi = shift_start(rotation, shift_index(rotation, o.end) + 1)
    cuts = {lo, hi}
    index = shift_index(rotation, lo) + 1
    while (t := shift_start(rotation, index)) < hi:
        cuts.add(t)
        index += 1
    for o in rotation.overrides:
        cuts.update(t for t in (o.start, o.end) if lo < t < hi)
    ordered = sorted(cuts)
    out: list[Shift] = []
    for a, b in pairwise(ordered):
        member = holder(rotation, a)
        if out and out[-1].member.name == member.name and out[-1].end == a:
            out[-1] = Shift(out[-1].start, b, out[-1].member)
        else:
            out.append(Shift(a, b, member))
    return [s for s in out if s.end > start and s.start < end]


def now_and_next(rotation: Rotation, at: datetime) -> tuple[Shift, Shift | None]:
    """The shift holding at ``at`` and the one after it (None for a rotation of one person
    without overrides ahead within two years): the hand-off is the first's ``end``."""
    span = timedelta(days=rotation.period_days)
    while True:
        found = shifts(rotation, at, at + span)
        # A third shift proves the second's end is its true end (no merge past the window).
        if len(found) >= 3 or span > timedelta(days=800):
            break
        span *= 2
    if len(found) >= 2:
        return found[0], found[1]
    # One person throughout: the shift runs to the window's end; nobody is next.
    return found[0], None
