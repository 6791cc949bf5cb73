"""Insights: where MTTR goes, from what the store keeps (docs/insights.md). Pure: the store
reads the facts (``store/insights.py``), this module aggregates them into tables.

Every answer is a set of named tables (columns and rows of plain values), so that the API, the
CLI's formats, the page's charts and the CSV downloads all show the same numbers:

- ``trend``: MTTA/MTTM/MTTR and the incident count of this period against the previous one;
- ``by_week``, ``by_team``, ``by_service``, ``by_route``: the means per group (and, for the
  groups, MTTR in the previous period and its change);
- ``noisiest``: incidents, pages, reopenings and flapping per alertname and service;
- ``interruptions``: per person, pages, acknowledgements, how many fell outside working hours
  and the hours spent on incidents outside them (in their rotation's time zone);
- ``action_items``: open action items, oldest first, with their age;
- ``postmortems_overdue``: incidents whose policy requires a postmortem, resolved more than
  ``POSTMORTEM_DUE_DAYS`` ago and still without one;
- ``no_runbook``: alertnames whose alerts carry no ``runbook_url`` annotation.

The means are those of the Prometheus MTTx histograms (``core/mttx.py``): seconds from the
first alert's ``startsAt`` to the milestone, never below 0; a dismissed incident counts for
MTTA but observes no time to mitigate or resolve.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

NS = 1_000_000_000
DAY_NS = 86_400 * NS
DEFAULT_SINCE = "30d"
MAX_SINCE_DAYS = 3660
# A postmortem the policy requires is overdue this long after the incident is resolved.
POSTMORTEM_DUE_DAYS = 7
# Rows of the noisiest alerts shown: the long tail says nothing more.
NOISIEST_ROWS = 20
# Rows of the follow-up's lists (the oldest, the most overdue): their totals are in ``trend``.
# Thousands of overdue postmortems made a page of megabytes that nobody reads to the end.
LIST_ROWS = 100
# One incident counts at most this long against a person's evening: a forgotten open incident
# would otherwise add weeks of "hours out of working hours".
MAX_ENGAGEMENT_NS = DAY_NS

# A Prometheus label name: the store splices it into a JSON path (values are parameters).
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SINCE = re.compile(r"^([1-9][0-9]{0,4})([hdw])$")
_UNIT_NS = {"h": 3600 * NS, "d": DAY_NS, "w": 7 * DAY_NS}


class InsightsError(ValueError):
    """A bad parameter; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_since(text: str) -> int:
    """``30d``, ``12h``, ``8w`` -> nanoseconds; anything else (or beyond ten years) raises."""
    m = _SINCE.match(text)
    if m is None:
        raise InsightsError("since", f"{text!r} is not a duration such as 30d, 12h or 8w")
    span = int(m.group(1)) * _UNIT_NS[m.group(2)]
    if span > MAX_SINCE_DAYS * DAY_NS:
        raise InsightsError("since", f"at most {MAX_SINCE_DAYS} days")
    return span


_EPOCH = date(1970, 1, 1)
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """Working hours in a rotation's own time zone: ``start``-``end`` on ``days`` (0 = Monday)."""

    start: time = time(9, 0)
    end: time = time(18, 0)
    days: frozenset[int] = frozenset(range(5))

    def describe(self) -> str:
        """``09:00-18:00 Mon-Fri``; days in runs (``Mon-Wed,Sat``)."""
        runs: list[list[int]] = []
        for d in sorted(self.days):
            if runs and runs[-1][-1] == d - 1:
                runs[-1].append(d)
            else:
                runs.append([d])
        names = ",".join(
            DAY_NAMES[r[0]] if len(r) == 1 else f"{DAY_NAMES[r[0]]}-{DAY_NAMES[r[-1]]}"
            for r in runs
        )
        return f"{self.start:%H:%M}-{self.end:%H:%M} {names or 'no days'}"


@dataclass(frozen=True, slots=True)
class IncidentFact:
    """One incident as the insights read it (times in ns since the epoch)."""

    id: int
    severity: str
    team: str
    service: str
    route: str
    status: str
    started_at: int
    opened_at: int
    acknowledged_at: int | None = None
    mitigated_at: int | None = None
    resolved_at: int | None = None
    dismissed: bool = False
    alertname: str = ""
    runbook: bool = False
    reopens: int = 0
    flaps: int = 0
    pages: int = 0
    published: bool = False


@dataclass(frozen=True, slots=True)
class Interaction:
    """A person paged (``page``) or acknowledging (``ack``) an incident, at ``at``."""

    person: str
    kind: str
    incident_id: int
    at: int


@dataclass(frozen=True, slots=True)
class OpenItem:
    incident_id: int
    text: str
    owner: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Facts:
    """What the store read: incidents opened in this period and in the previous one (of the same
    length, for the trend), people's interactions with this period's incidents, open items."""

    current: Sequence[IncidentFact]
    previous: Sequence[IncidentFact] = ()
    interactions: Sequence[Interaction] = ()
    open_items: Sequence[OpenItem] = ()


@dataclass(slots=True)
class Sums:
    """What a group of incidents adds up to, in whole nanoseconds (so that adding groups up is
    exact): incidents, and per milestone how many reached it and the sum of their durations
    (as ``ack_s``, ``mitigate_s``, ``resolve_s``); pages, reopenings, flapping; how many had an
    alert with a runbook. The store keeps these per day (``store/insights.py``)."""

    n: int = 0
    na: int = 0
    sa: int = 0
    nm: int = 0
    sm: int = 0
    nr: int = 0
    sr: int = 0
    pages: int = 0
    reopens: int = 0
    flaps: int = 0
    runbook: int = 0

    def add(self, o: Sums) -> None:
        self.n += o.n
        self.na += o.na
        self.sa += o.sa
        self.nm += o.nm
        self.sm += o.sm
        self.nr += o.nr
        self.sr += o.sr
        self.pages += o.pages
        self.reopens += o.reopens
        self.flaps += o.flaps
        self.runbook += o.runbook

    def add_incident(self, i: IncidentFact) -> None:
        s = i.started_at
        self.n += 1
        if i.acknowledged_at is not None:
            self.na += 1
            self.sa += max(0, i.acknowledged_at - s)
        if not i.dismissed:
            if i.mitigated_at is not None:
                self.nm += 1
                self.sm += max(0, i.mitigated_at - s)
            if i.resolved_at is not None:
                self.nr += 1
                self.sr += max(0, i.resolved_at - s)
        self.pages += i.pages
        self.reopens += i.reopens
        self.flaps += i.flaps
        self.runbook += 1 if i.runbook else 0

    def means(self) -> tuple[float | None, float | None, float | None]:
        return (
            round(self.sa / self.na / 1e9, 3) if self.na else None,
            round(self.sm / self.nm / 1e9, 3) if self.nm else None,
            round(self.sr / self.nr / 1e9, 3) if self.nr else None,
        )


@dataclass(frozen=True, slots=True)
class Group:
    """The finest grouping the tables need: the week an incident was opened in (its Monday,
    UTC), its team, service, route and alertname."""

    week: str
    team: str
    service: str
    route: str
    alertname: str


@dataclass(frozen=True, slots=True)
class Rollup:
    """What the tables are made of: the period's and the previous period's incidents summed
    per ``Group``; people's interactions with the period's incidents and, per incident, when
    their time on it ends (mitigated, else resolved, else None); the open action items; the
    overdue postmortems (the ``LIST_ROWS`` most overdue rows, and how many there are)."""

    current: Mapping[Group, Sums]
    previous: Mapping[Group, Sums] = field(default_factory=dict)
    interactions: Sequence[Interaction] = ()
    ends: Mapping[int, int | None] = field(default_factory=dict)
    open_items: Sequence[OpenItem] = ()
    overdue: Sequence[tuple[int, str, str, int, float]] = ()
    overdue_count: int = 0


def group_of(i: IncidentFact) -> Group:
    return Group(week_of(i.opened_at), i.team, i.service, i.route, i.alertname)


def add_incidents(into: dict[Group, Sums], incidents: Sequence[IncidentFact]) -> None:
    for i in incidents:
        into.setdefault(group_of(i), Sums()).add_incident(i)


def rollup_of(facts: Facts, *, now: int, required: Callable[[str, str], bool]) -> Rollup:
    """The rollup of the facts read incident by incident (the exact path: labels filter it)."""
    current: dict[Group, Sums] = {}
    previous: dict[Group, Sums] = {}
    add_incidents(current, facts.current)
    add_incidents(previous, facts.previous)
    overdue, count = overdue_rows(facts.current, required, now)
    return Rollup(
        current,
        previous,
        facts.interactions,
        {i.id: i.mitigated_at or i.resolved_at for i in facts.current},
        facts.open_items,
        overdue,
        count,
    )


Value = str | int | float | None


@dataclass(frozen=True, slots=True)
class Table:
    columns: tuple[str, ...]
    rows: list[tuple[Value, ...]] = field(default_factory=list)

    def records(self) -> list[dict[str, Value]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


TABLES = (
    "trend",
    "by_week",
    "by_team",
    "by_service",
    "by_route",
    "noisiest",
    "interruptions",
    "action_items",
    "postmortems_overdue",
    "no_runbook",
)


@dataclass(frozen=True, slots=True)
class Insights:
    since: int
    until: int
    span: int
    working_hours: str
    tables: dict[str, Table]


def _seconds(at: int | None, base: int) -> float | None:
    return None if at is None else max(0.0, (at - base) / 1e9)


def ack_s(i: IncidentFact) -> float | None:
    return _seconds(i.acknowledged_at, i.started_at)


def mitigate_s(i: IncidentFact) -> float | None:
    return None if i.dismissed else _seconds(i.mitigated_at, i.started_at)


def resolve_s(i: IncidentFact) -> float | None:
    return None if i.dismissed else _seconds(i.resolved_at, i.started_at)


def means(incidents: Sequence[IncidentFact]) -> tuple[float | None, float | None, float | None]:
    """MTTA, MTTM, MTTR in seconds over the incidents that reached each milestone (as
    ``ack_s``, ``mitigate_s``, ``resolve_s``). One pass in whole nanoseconds: this runs over
    every incident of the period several times (per week, team, service, route)."""
    sa = sm = sr = na = nm = nr = 0
    for i in incidents:
        s = i.started_at
        if i.acknowledged_at is not None:
            sa += max(0, i.acknowledged_at - s)
            na += 1
        if i.dismissed:
            continue
        if i.mitigated_at is not None:
            sm += max(0, i.mitigated_at - s)
            nm += 1
        if i.resolved_at is not None:
            sr += max(0, i.resolved_at - s)
            nr += 1
    return (
        round(sa / na / 1e9, 3) if na else None,
        round(sm / nm / 1e9, 3) if nm else None,
        round(sr / nr / 1e9, 3) if nr else None,
    )


def change_pct(now: float | None, before: float | None) -> float | None:
    """How much ``now`` moved against ``before``, in percent (negative: faster)."""
    if now is None or before is None or before == 0:
        return None
    return round((now - before) / before * 100, 1)


def week_of(ns: int) -> str:
    """The Monday (UTC) of the week an instant falls in, as YYYY-MM-DD. In whole days of
    nanoseconds: a float's seconds put the last nanosecond of a Sunday in the next week."""
    return monday_of(ns // DAY_NS)


def monday_of(day: int) -> str:
    """The Monday of a day counted from 1970-01-01 (a Thursday), as YYYY-MM-DD."""
    return (_EPOCH + timedelta(days=day - (day + 3) % 7)).isoformat()


def _sum_by(groups: Mapping[Group, Sums], key: Callable[[Group], str]) -> dict[str, Sums]:
    out: dict[str, Sums] = {}
    for g, sums in groups.items():
        if sums.n:  # a group whose incidents all left (a drill marked late) is no group
            out.setdefault(key(g), Sums()).add(sums)
    return out


def _total(groups: Mapping[Group, Sums]) -> Sums:
    total = Sums()
    for sums in groups.values():
        total.add(sums)
    return total


def _by(
    name: str,
    current: Mapping[Group, Sums],
    previous: Mapping[Group, Sums],
    key: Callable[[Group], str],
) -> Table:
    now = _sum_by(current, key)
    before = _sum_by(previous, key)
    table = Table(
        (name, "incidents", "mtta_s", "mttm_s", "mttr_s", "mttr_previous_s", "mttr_change_pct")
    )
    for k in sorted(now):
        mtta, mttm, mttr = now[k].means()
        prev = before[k].means()[2] if k in before else None
        table.rows.append((k, now[k].n, mtta, mttm, mttr, prev, change_pct(mttr, prev)))
    return table


def _trend(current: Mapping[Group, Sums], previous: Mapping[Group, Sums]) -> Table:
    table = Table(("measure", "this_period", "previous_period", "change_pct"))
    a, b = _total(current), _total(previous)
    table.rows.append(("incidents", a.n, b.n, change_pct(a.n, b.n)))
    for label, x, y in zip(("mtta_s", "mttm_s", "mttr_s"), a.means(), b.means(), strict=True):
        table.rows.append((label, x, y, change_pct(x, y)))
    return table


def _by_week(current: Mapping[Group, Sums]) -> Table:
    table = Table(("week", "incidents", "mtta_s", "mttm_s", "mttr_s"))
    groups = _sum_by(current, lambda g: g.week)
    for week in sorted(groups):
        table.rows.append((week, groups[week].n, *groups[week].means()))
    return table


def _noisiest(current: Mapping[Group, Sums]) -> Table:
    table = Table(("alertname", "service", "incidents", "pages", "reopenings", "flapping"))
    groups = _sum_by(current, lambda g: f"{g.alertname}\x00{g.service}")
    rows = []
    for k, s in groups.items():
        alertname, service = k.split("\x00", 1)
        rows.append((alertname, service, s.n, s.pages, s.reopens, s.flaps))
    # The noisiest first: most incidents, then most pages; names break ties for a stable order.
    rows.sort(key=lambda r: (-r[2], -r[3], -r[4], -r[5], r[0], r[1]))
    table.rows.extend(rows[:NOISIEST_ROWS])
    return table


def _no_runbook(current: Mapping[Group, Sums]) -> Table:
    table = Table(("alertname", "service", "incidents"))
    groups = _sum_by(current, lambda g: f"{g.alertname}\x00{g.service}")
    rows = []
    for k, s in groups.items():
        if s.runbook:
            continue
        alertname, service = k.split("\x00", 1)
        rows.append((alertname, service, s.n))
    rows.sort(key=lambda r: (-r[2], r[0], r[1]))
    table.rows.extend(rows)
    return table


def _local(ns: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=zone)


@functools.lru_cache(maxsize=8192)
def _instant(day: date, at: time, zone: ZoneInfo) -> int:
    # Cached: thousands of people's evenings fall on the same few dozen days of a period.
    return int(datetime.combine(day, at, tzinfo=zone).timestamp() * NS)


def is_working(ns: int, zone: ZoneInfo, hours: WorkingHours) -> bool:
    local = _local(ns, zone)
    return local.weekday() in hours.days and hours.start <= local.time() < hours.end


def off_hours_ns(start: int, end: int, zone: ZoneInfo, hours: WorkingHours) -> int:
    """How much of [start, end) falls outside working hours in ``zone`` (day by day, on the
    wall clock: a day of a clock change is 23 or 25 hours long)."""
    if end <= start:
        return 0
    working = 0
    day = _local(start, zone).date()
    last = _local(end, zone).date()
    while day <= last:
        if day.weekday() in hours.days:
            lo = max(start, _instant(day, hours.start, zone))
            hi = min(end, _instant(day, hours.end, zone))
            working += max(0, hi - lo)
        day += timedelta(days=1)
    return end - start - working


class _Calendar:
    """One zone's working hours as instants: each working day's [start, end) in ns over the
    days that [lo, hi) touches, and the working time before each. ``is_working`` and
    ``off_hours_ns`` ask it by bisection: 10,000 interactions are not 10,000 walks through
    the days of their zone (whole nanoseconds, where ``is_working`` reads a float's
    seconds)."""

    def __init__(self, zone: ZoneInfo, hours: WorkingHours, lo: int, hi: int) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.before: list[int] = []  # working time before each start
        day = _local(lo, zone).date() - timedelta(days=1)
        last = _local(hi, zone).date() + timedelta(days=1)
        total = 0
        while day <= last:
            if day.weekday() in hours.days:
                a, b = _instant(day, hours.start, zone), _instant(day, hours.end, zone)
                if b > a:
                    self.starts.append(a)
                    self.ends.append(b)
                    self.before.append(total)
                    total += b - a
            day += timedelta(days=1)

    def working_before(self, ns: int) -> int:
        i = bisect.bisect_right(self.starts, ns) - 1
        if i < 0:
            return 0
        return self.before[i] + min(ns, self.ends[i]) - self.starts[i]

    def is_working(self, ns: int) -> bool:
        i = bisect.bisect_right(self.starts, ns) - 1
        return i >= 0 and ns < self.ends[i]

    def off_hours_ns(self, start: int, end: int) -> int:
        if end <= start:
            return 0
        return end - start - (self.working_before(end) - self.working_before(start))


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _interruptions(
    interactions: Sequence[Interaction],
    ends: Mapping[int, int | None],
    zones: Mapping[str, str],
    hours_of: Mapping[str, WorkingHours],
    hours: WorkingHours,
    now: int,
) -> Table:
    table = Table(
        (
            "person",
            "timezone",
            "working_hours",
            "pages",
            "acknowledgements",
            "out_of_hours",
            "hours_out_of_hours",
        )
    )
    pages: dict[str, int] = defaultdict(int)
    acks: dict[str, int] = defaultdict(int)
    out: dict[str, int] = defaultdict(int)
    first: dict[tuple[str, int], int] = {}
    if not interactions:
        return table
    lo = min(x.at for x in interactions)
    hi = max(max(x.at for x in interactions) + MAX_ENGAGEMENT_NS, now)
    calendars: dict[tuple[str, WorkingHours], _Calendar] = {}
    of_person: dict[str, _Calendar] = {}

    def calendar(person: str) -> _Calendar:
        found = of_person.get(person)
        if found is None:
            zone = _zone(zones.get(person))
            own = hours_of.get(person, hours)
            key = (zone.key, own)
            if key not in calendars:
                calendars[key] = _Calendar(zone, own, lo, hi)
            found = of_person[person] = calendars[key]
        return found

    for x in interactions:
        if x.kind == "page":
            pages[x.person] += 1
        else:
            acks[x.person] += 1
        if not calendar(x.person).is_working(x.at):
            out[x.person] += 1
        k = (x.person, x.incident_id)
        first[k] = min(first.get(k, x.at), x.at)
    # The time a person spends on an incident: from the first page or acknowledgement to its
    # mitigation (or now while it is not), at most a day; only what falls off hours counts.
    spent: dict[str, int] = defaultdict(int)
    for (person, incident_id), at in first.items():
        done = ends.get(incident_id)
        end = min(done if done is not None else now, at + MAX_ENGAGEMENT_NS)
        spent[person] += calendar(person).off_hours_ns(at, end)
    for person in sorted(set(pages) | set(acks)):
        table.rows.append(
            (
                person,
                _zone(zones.get(person)).key,
                hours_of.get(person, hours).describe(),
                pages[person],
                acks[person],
                out[person],
                round(spent[person] / 3600 / NS, 2),
            )
        )
    return table


def _action_items(items: Sequence[OpenItem], now: int) -> Table:
    table = Table(("incident_id", "item", "owner", "created_at_ns", "age_days"))
    for item in sorted(items, key=lambda x: (x.created_at, x.incident_id))[:LIST_ROWS]:
        age = round(max(0, now - item.created_at) / DAY_NS, 1)
        table.rows.append((item.incident_id, item.text, item.owner, item.created_at, age))
    return table


def overdue_days(resolved_at: int, now: int) -> float:
    return round((now - resolved_at - POSTMORTEM_DUE_DAYS * DAY_NS) / DAY_NS, 1)


def overdue_rows(
    current: Sequence[IncidentFact], required: Callable[[str, str], bool], now: int
) -> tuple[list[tuple[int, str, str, int, float]], int]:
    """The most overdue postmortems first (``LIST_ROWS`` of them), and how many there are."""
    due = POSTMORTEM_DUE_DAYS * DAY_NS
    rows = []
    for i in current:
        if i.dismissed or i.published or i.resolved_at is None:
            continue
        if i.status not in ("resolved", "closed") or now - i.resolved_at <= due:
            continue
        if required(i.route, i.severity):
            rows.append(
                (i.id, i.route, i.severity, i.resolved_at, overdue_days(i.resolved_at, now))
            )
    rows.sort(key=lambda r: (r[3], r[0]))  # resolved longest ago first (not the rounded days)
    return rows[:LIST_ROWS], len(rows)


def compute(
    facts: Facts,
    *,
    now: int,
    span: int,
    required: Callable[[str, str], bool],
    zones: Mapping[str, str] | None = None,
    hours: WorkingHours = WorkingHours(),
    hours_of: Mapping[str, WorkingHours] | None = None,
) -> Insights:
    """The insights of the period [now - span, now) from the facts the store read for it,
    incident by incident. ``required(route, severity)``: whether the policy requires a
    postmortem; ``zones``: a person's rotation's time zone (UTC for anyone in no rotation);
    ``hours_of``: a person's rotation's working hours (``hours`` for anyone else)."""
    rollup = rollup_of(facts, now=now, required=required)
    return tables_of(rollup, now=now, span=span, zones=zones, hours=hours, hours_of=hours_of)


def tables_of(
    rollup: Rollup,
    *,
    now: int,
    span: int,
    zones: Mapping[str, str] | None = None,
    hours: WorkingHours = WorkingHours(),
    hours_of: Mapping[str, WorkingHours] | None = None,
) -> Insights:
    """The insights of the period [now - span, now) from its rollup: the store's kept
    aggregates (``store/insights.read_rollup``) or the facts summed (``rollup_of``)."""
    cur, prev = rollup.current, rollup.previous
    overdue = Table(("incident_id", "route", "severity", "resolved_at_ns", "days_overdue"))
    overdue.rows.extend(rollup.overdue)
    trend = _trend(cur, prev)
    # Follow-up health in one look: the totals of the two lists (which show LIST_ROWS rows).
    trend.rows.append(("open_action_items", len(rollup.open_items), None, None))
    trend.rows.append(("postmortems_overdue", rollup.overdue_count, None, None))
    interruptions = _interruptions(
        rollup.interactions, rollup.ends, zones or {}, hours_of or {}, hours, now
    )
    tables = {
        "trend": trend,
        "by_week": _by_week(cur),
        "by_team": _by("team", cur, prev, lambda g: g.team),
        "by_service": _by("service", cur, prev, lambda g: g.service),
        "by_route": _by("route", cur, prev, lambda g: g.route),
        "noisiest": _noisiest(cur),
        "interruptions": interruptions,
        "action_items": _action_items(rollup.open_items, now),
        "postmortems_overdue": overdue,
        "no_runbook": _no_runbook(cur),
    }
    return Insights(now - span, now, span, hours.describe(), tables)


def csv_text(table: Table) -> str:
    """A table as CSV (RFC 4180, CRLF). A cell starting with = + - @ is prefixed with ' so that
    a spreadsheet does not run an alert's name as a formula."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(["" if v is None else _safe_cell(v) for v in row])
    return out.getvalue()


def _safe_cell(v: Value) -> Value:
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def markdown_text(insights: Insights, names: Sequence[str] = TABLES) -> str:
    """The tables as Markdown sections (the CLI's ``--format markdown``)."""
    lines: list[str] = []
    for name in names:
        table = insights.tables[name]
        lines += [f"## {name.replace('_', ' ').capitalize()}", ""]
        if not table.rows:
            lines += ["(none)", ""]
            continue
        lines.append("| " + " | ".join(table.columns) + " |")
        lines.append("|" + "---|" * len(table.columns))
        for row in table.rows:
            cells = [
                "" if v is None else str(v).replace("|", "\\|").replace("\n", " ") for v in row
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
