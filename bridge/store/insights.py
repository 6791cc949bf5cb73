"""The facts the insights aggregate (``core/insights.py``, docs/insights.md): kept from the
write path's marks (migration 0024_insights) and read in one look, or read incident by incident.

The kept aggregates (``install``). The write path only marks: triggers on both backends put the
id of every incident a write touched into ``insight_dirty`` (one cheap insert, a marked one
left as it is); ``refresh``, one write transaction of its own (the scheduler's tick, and the
service before it computes an answer), computes the rest from the marked incidents, set by set:

- ``insight_facts``: one row per incident with what the insights need of it (its milestones,
  team, service, route, the smallest alertname of its alerts and whether one has a runbook, its
  alerts, alerts fired, reopenings, escalation steps, whether a postmortem is published, whether
  it is a drill), from ``incidents``, ``incident_alerts``, ``alerts``, ``timeline`` and
  ``postmortem_publications``;
- ``insight_days``: those rows summed per UTC day opened and (team, service, route, alertname),
  drills left out (``core/insights.Sums``: counts and nanosecond sums), every day a marked
  incident was or is in summed again from ``insight_facts``; ``insight_pending`` likewise;
- ``insight_interactions``: people paged by an escalation step and people acknowledging, with
  their incident's opening time.

``read_rollup`` sums the whole days of a period from ``insight_days`` and reads the incidents of
its partial first and last days from ``insight_facts``: the same numbers as ``read`` and
``core/insights.compute`` (tests/store/test_insights.py compares every table), without reading
100,000 incidents. A label filter reads incident by incident (``read``): labels are not kept.

The incident-by-incident read:

Incidents opened in the period and in the one before it (the trend), each with its alerts'
alertname (the smallest, when they differ) and whether any of them has a ``runbook_url``; its
reopenings, its alerts firing again after they resolved (flapping), the people its escalation
steps paged, who acknowledged it; the open action items. Drills (``incidents.drill``) are left
out. Counting is done here in SQL (grouped per incident) so that 100,000 incidents cross the
read pool as one row each, not as their whole timelines.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence

from bridge.core.insights import (
    DAY_NS,
    LABEL_NAME,
    LIST_ROWS,
    POSTMORTEM_DUE_DAYS,
    Facts,
    Group,
    IncidentFact,
    Interaction,
    OpenItem,
    Rollup,
    Sums,
    monday_of,
    overdue_days,
)

# Drills (``incidents.drill``, migration 0023_drills) are practice: they count nowhere here.
_NOT_DRILL = "i.drill = 0"


def _label_filter(labels: Sequence[tuple[str, str]]) -> tuple[str, list[str]]:
    """SQL selecting incidents with an alert carrying every label given (name checked: it is
    spliced into the JSON path, the value is a parameter)."""
    sql, args = "", []
    for name, value in labels:
        if not LABEL_NAME.match(name):
            raise ValueError(f"not a label name: {name!r}")
        sql += (
            " AND EXISTS (SELECT 1 FROM incident_alerts la JOIN alerts a2 "
            "ON a2.fingerprint = la.fingerprint WHERE la.incident_id = i.id "
            f"AND json_extract(a2.labels, '$.{name}') = ?)"
        )
        args.append(value)
    return sql, args


def _incidents(
    conn: sqlite3.Connection, lo: int, hi: int, labels: Sequence[tuple[str, str]]
) -> list[IncidentFact]:
    where, args = _label_filter(labels)
    rows = conn.execute(
        "SELECT i.id, i.severity, coalesce(i.team, ''), coalesce(i.service, ''), "
        "coalesce(i.route, ''), i.status, i.started_at, i.opened_at, i.acknowledged_at, "
        "i.mitigated_at, i.resolved_at, i.dismissed_at IS NOT NULL "
        f"FROM incidents i WHERE i.opened_at >= ? AND i.opened_at < ? AND {_NOT_DRILL}{where}",
        [lo, hi, *args],
    ).fetchall()
    # The alerts' alertname and runbook, and the publications, in one pass each over the
    # period (a subquery per incident read 100,000 incidents' alerts one by one).
    alerts = {
        r[0]: (r[1] or "", bool(r[2]))
        for r in conn.execute(
            "SELECT ia.incident_id, min(json_extract(a.labels, '$.alertname')), "
            "max(CASE WHEN coalesce(json_extract(a.annotations, '$.runbook_url'), '') <> '' "
            "THEN 1 ELSE 0 END) FROM incidents i JOIN incident_alerts ia "
            "ON ia.incident_id = i.id JOIN alerts a ON a.fingerprint = ia.fingerprint "
            "WHERE i.opened_at >= ? AND i.opened_at < ? GROUP BY ia.incident_id",
            [lo, hi],
        ).fetchall()
    }
    published = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT p.incident_id FROM postmortem_publications p JOIN incidents i "
            "ON i.id = p.incident_id WHERE i.opened_at >= ? AND i.opened_at < ?",
            [lo, hi],
        ).fetchall()
    }
    none = ("", False)
    return [
        IncidentFact(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            r[8],
            r[9],
            r[10],
            bool(r[11]),
            *alerts.get(r[0], none),
            published=r[0] in published,
        )
        for r in rows
    ]


def _counts(conn: sqlite3.Connection, lo: int, hi: int) -> dict[int, tuple[int, int, int]]:
    """Per incident of the period: reopenings, alerts fired again after the first firing of
    each (flapping), escalation steps (pages)."""
    rows = conn.execute(
        "SELECT t.incident_id, "
        "sum(CASE WHEN t.kind = 'reopened' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN t.kind = 'alert_fired' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN t.kind = 'escalation_step' THEN 1 ELSE 0 END) "
        "FROM incidents i JOIN timeline t ON t.incident_id = i.id "
        "WHERE i.opened_at >= ? AND i.opened_at < ? "
        "AND t.kind IN ('reopened', 'alert_fired', 'escalation_step') "
        "GROUP BY t.incident_id",
        [lo, hi],
    ).fetchall()
    alerts = dict(
        conn.execute(
            "SELECT ia.incident_id, count(*) FROM incidents i JOIN incident_alerts ia "
            "ON ia.incident_id = i.id WHERE i.opened_at >= ? AND i.opened_at < ? "
            "GROUP BY ia.incident_id",
            [lo, hi],
        ).fetchall()
    )
    return {
        r[0]: (int(r[1] or 0), max(0, int(r[2] or 0) - int(alerts.get(r[0], 0))), int(r[3] or 0))
        for r in rows
    }


def _interactions(conn: sqlite3.Connection, lo: int, hi: int) -> list[Interaction]:
    """The people paged by escalation steps and those who acknowledged, of the period's
    incidents (an acknowledgement is a person's status change to ``acknowledged``)."""
    out: list[Interaction] = []
    rows = conn.execute(
        "SELECT t.incident_id, t.kind, t.actor, t.time, t.data FROM incidents i "
        "JOIN timeline t ON t.incident_id = i.id WHERE i.opened_at >= ? AND i.opened_at < ? "
        "AND (t.kind = 'escalation_step' OR (t.kind = 'status_changed' "
        "AND json_extract(t.data, '$.to') = 'acknowledged'))",
        [lo, hi],
    ).fetchall()
    for incident_id, kind, actor, at, data in rows:
        if kind == "status_changed":
            out.append(Interaction(actor, "ack", incident_id, at))
            continue
        try:
            people = json.loads(data or "{}").get("people") or []
        except (ValueError, AttributeError):
            people = []
        out.extend(Interaction(p, "page", incident_id, at) for p in people if isinstance(p, str))
    return out


def read(
    conn: sqlite3.Connection,
    *,
    until: int,
    span: int,
    labels: Sequence[tuple[str, str]] = (),
) -> Facts:
    """The facts of [until - span, until) and of the period of the same length before it."""
    lo, prev = until - span, until - 2 * span
    current = _incidents(conn, lo, until, labels)
    counts = _counts(conn, lo, until)
    current = [_with_counts(i, counts[i.id]) if i.id in counts else i for i in current]
    ids = {i.id for i in current}
    interactions = [x for x in _interactions(conn, lo, until) if x.incident_id in ids]
    return Facts(
        current=current,
        previous=_incidents(conn, prev, lo, labels),
        interactions=interactions,
        open_items=_open_items(conn),
    )


def _with_counts(i: IncidentFact, c: tuple[int, int, int]) -> IncidentFact:
    from dataclasses import replace

    return replace(i, reopens=c[0], flaps=c[1], pages=c[2])


# --- The aggregates kept by the write path (migration 0024_insights) ---------------------------

TABLES = (
    "insight_facts",
    "insight_days",
    "insight_pending",
    "insight_interactions",
    "insight_dirty",
)
_KEY = ("team", "service", "route", "alertname")
_SUMS = ("n", "na", "sa", "nm", "sm", "nr", "sr", "pages", "reopens", "flaps", "runbook")
_FACT_COLUMNS = (
    "drill",
    "severity",
    "team",
    "service",
    "route",
    "status",
    "started_at",
    "opened_at",
    "acknowledged_at",
    "mitigated_at",
    "resolved_at",
    "dismissed",
)

# an incident whose postmortem may be overdue (core/insights.overdue_rows: resolved or closed,
# not dismissed, not published; a drill never)
_PENDING = (
    "drill = 0 AND dismissed = 0 AND published = 0 AND status IN ('resolved', 'closed') "
    "AND resolved_at IS NOT NULL"
)

DDL = (
    "CREATE TABLE insight_facts (id BIGINT PRIMARY KEY, drill BIGINT NOT NULL, "
    "severity TEXT NOT NULL, team TEXT NOT NULL, service TEXT NOT NULL, route TEXT NOT NULL, "
    "status TEXT NOT NULL, started_at BIGINT NOT NULL, opened_at BIGINT NOT NULL, "
    "acknowledged_at BIGINT, mitigated_at BIGINT, resolved_at BIGINT, "
    "dismissed BIGINT NOT NULL, alertname TEXT NOT NULL DEFAULT '', "
    "runbook BIGINT NOT NULL DEFAULT 0, alerts BIGINT NOT NULL DEFAULT 0, "
    "fired BIGINT NOT NULL DEFAULT 0, reopens BIGINT NOT NULL DEFAULT 0, "
    "pages BIGINT NOT NULL DEFAULT 0, published BIGINT NOT NULL DEFAULT 0)",
    "CREATE INDEX idx_insight_facts_opened ON insight_facts (opened_at)",
    "CREATE TABLE insight_days (day BIGINT NOT NULL, team TEXT NOT NULL, service TEXT NOT NULL, "
    "route TEXT NOT NULL, alertname TEXT NOT NULL, "
    + ", ".join(f"{c} BIGINT NOT NULL" for c in _SUMS)
    + ", PRIMARY KEY (day, team, service, route, alertname))",
    # their incident's opening, end of a person's time on it (mitigated, else resolved) and
    # drill flag kept beside them (insight_incident_update): read without a look-up each
    "CREATE TABLE insight_interactions (timeline_id BIGINT NOT NULL, seq BIGINT NOT NULL, "
    "incident_id BIGINT NOT NULL, opened_at BIGINT NOT NULL, person TEXT NOT NULL, "
    "kind TEXT NOT NULL, at BIGINT NOT NULL, ended BIGINT, drill BIGINT NOT NULL, "
    "PRIMARY KEY (timeline_id, seq))",
    # covering: the period's interactions read from the index alone
    "CREATE INDEX idx_insight_interactions_opened "
    "ON insight_interactions (opened_at, drill, incident_id, person, kind, at, ended)",
    "CREATE TABLE insight_pending (day BIGINT NOT NULL, resolved_day BIGINT NOT NULL, "
    "route TEXT NOT NULL, severity TEXT NOT NULL, n BIGINT NOT NULL, "
    "PRIMARY KEY (day, resolved_day, route, severity))",
    f"CREATE INDEX idx_insight_facts_pending ON insight_facts (resolved_at) WHERE {_PENDING}",
    "CREATE INDEX idx_insight_interactions_incident ON insight_interactions (incident_id)",
    # an alert's annotations changed: the incidents holding it, found without a scan
    "CREATE INDEX idx_incident_alerts_fingerprint ON incident_alerts (fingerprint)",
    # the incidents a write touched since the last ``refresh`` (the triggers mark them)
    "CREATE TABLE insight_dirty (incident_id BIGINT PRIMARY KEY)",
)


def _fact_exprs(r: str) -> list[str]:
    """An incident row's (``r``) columns as ``insight_facts`` keeps them (``_FACT_COLUMNS``)."""
    return [
        f"coalesce({r}.drill, 0)",
        f"{r}.severity",
        f"coalesce({r}.team, '')",
        f"coalesce({r}.service, '')",
        f"coalesce({r}.route, '')",
        f"{r}.status",
        f"{r}.started_at",
        f"{r}.opened_at",
        f"{r}.acknowledged_at",
        f"{r}.mitigated_at",
        f"{r}.resolved_at",
        f"CASE WHEN {r}.dismissed_at IS NULL THEN 0 ELSE 1 END",
    ]


def _sum_exprs(r: str) -> list[str]:
    """A fact row's (``r``) contribution to its day, column by column as ``_SUMS`` (the means
    of core/insights: from started_at, never below 0; a dismissal observes no MTTM or MTTR)."""

    def took(column: str, dismissed: bool) -> list[str]:
        gate = f"{r}.dismissed = 0 AND " if dismissed else ""
        return [
            f"CASE WHEN {gate}{r}.{column} IS NOT NULL THEN 1 ELSE 0 END",
            f"CASE WHEN {gate}{r}.{column} > {r}.started_at "
            f"THEN {r}.{column} - {r}.started_at ELSE 0 END",
        ]

    return [
        "1",
        *took("acknowledged_at", False),
        *took("mitigated_at", True),
        *took("resolved_at", True),
        f"{r}.pages",
        f"{r}.reopens",
        f"CASE WHEN {r}.fired > {r}.alerts THEN {r}.fired - {r}.alerts ELSE 0 END",
        f"CASE WHEN {r}.runbook > 0 THEN 1 ELSE 0 END",
    ]


def _day(r: str) -> str:
    return f"{r}.opened_at / {DAY_NS}"


_RUNBOOK = (
    "max(CASE WHEN coalesce(json_extract(a.annotations, '$.runbook_url'), '') <> '' "
    "THEN 1 ELSE 0 END)"
)


def _pending(r: str) -> str:
    return " AND ".join(f"{r}.{c.strip()}" for c in _PENDING.split(" AND "))


_MARKED = "('reopened', 'alert_fired', 'escalation_step', 'status_changed')"


_INTERACTION = "timeline_id, seq, incident_id, opened_at, person, kind, at, ended, drill"
_OF_INCIDENT = "coalesce(i.mitigated_at, i.resolved_at), coalesce(i.drill, 0)"


def _ack_entry() -> str:
    # the JSON is read only when it is JSON: a trigger's error would fail the write
    return (
        f"INSERT INTO insight_interactions ({_INTERACTION}) SELECT new.id, 0, new.incident_id, "
        f"i.opened_at, new.actor, 'ack', new.time, {_OF_INCIDENT} "
        "FROM incidents i WHERE i.id = new.incident_id AND (CASE WHEN json_valid(new.data) "
        "THEN json_extract(new.data, '$.to') END) = 'acknowledged';"
    )


def _page_entry(pg: bool) -> str:
    """The people an escalation step paged (``data.people``, strings only), one row each."""
    head = f"INSERT INTO insight_interactions ({_INTERACTION}) "
    if pg:
        people = (
            "jsonb_array_elements(CASE WHEN json_valid(new.data) THEN CASE WHEN "
            "jsonb_typeof(new.data::jsonb -> 'people') = 'array' THEN new.data::jsonb -> 'people' "
            "END END) WITH ORDINALITY AS p(value, seq)"
        )
        return (
            f"{head}SELECT new.id, p.seq, new.incident_id, i.opened_at, p.value #>> '{{}}', "
            f"'page', new.time, {_OF_INCIDENT} FROM incidents i, {people} "
            "WHERE i.id = new.incident_id "
            "AND jsonb_typeof(p.value) = 'string';"
        )
    people = (
        "json_each(CASE WHEN json_valid(new.data) THEN CASE WHEN "
        "json_type(new.data, '$.people') = 'array' THEN json_extract(new.data, '$.people') "
        "END END) AS p"
    )
    return (
        f"{head}SELECT new.id, p.key, new.incident_id, i.opened_at, p.value, 'page', new.time, "
        f"{_OF_INCIDENT} FROM incidents i, {people} WHERE i.id = new.incident_id "
        "AND p.type = 'text';"
    )


def _changed(columns: Sequence[str], pg: bool) -> str:
    differs = "IS DISTINCT FROM" if pg else "IS NOT"
    return " OR ".join(f"old.{c} {differs} new.{c}" for c in columns)


_INCIDENT_COLUMNS = (
    "drill",
    "severity",
    "team",
    "service",
    "route",
    "status",
    "started_at",
    "opened_at",
    "acknowledged_at",
    "mitigated_at",
    "resolved_at",
    "dismissed_at",
)


def _mark(ids: str) -> str:
    """The incidents ``ids`` (a value, or a SELECT of one column) marked for the next
    ``refresh``: a marked one stays marked (the same spelling on both backends)."""
    source = f"VALUES ({ids})" if not ids.startswith("SELECT") else ids
    return f"INSERT INTO insight_dirty (incident_id) {source} ON CONFLICT DO NOTHING;"


_HOLDING = "SELECT h.incident_id FROM incident_alerts h WHERE h.fingerprint = new.fingerprint"


def triggers(pg: bool) -> list[tuple[str, str, str, str, list[str]]]:
    """(name, event, table, condition or '', statements) of every trigger, in the backend's
    spelling. Each only marks the incidents a write touched (``insight_dirty``): the
    aggregates are computed again from them by ``refresh``, set by set, outside the webhooks'
    transactions (a row-level cascade into the sums cost PostgreSQL a PL/pgSQL call per row
    and level, inside every webhook's write)."""
    return [
        ("insight_incident_insert", "AFTER INSERT", "incidents", "", [_mark("new.id")]),
        (
            "insight_incident_update",
            f"AFTER UPDATE OF {', '.join(_INCIDENT_COLUMNS)}",
            "incidents",
            _changed(_INCIDENT_COLUMNS, pg),
            [_mark("new.id")],
        ),
        (
            "insight_incident_alerts_insert",
            "AFTER INSERT",
            "incident_alerts",
            "",
            [_mark("new.incident_id")],
        ),
        (
            "insight_incident_alerts_update",
            "AFTER UPDATE",
            "incident_alerts",
            "",
            [_mark("old.incident_id"), _mark("new.incident_id")],
        ),
        (
            "insight_incident_alerts_delete",
            "AFTER DELETE",
            "incident_alerts",
            "",
            [_mark("old.incident_id")],
        ),
        # an alert written after its incident's link (SQLite does not enforce the key)
        ("insight_alert_insert", "AFTER INSERT", "alerts", "", [_mark(_HOLDING)]),
        (
            "insight_alert_update",
            "AFTER UPDATE OF labels, annotations",
            "alerts",
            _changed(("labels", "annotations"), pg),
            [_mark(_HOLDING)],
        ),
        (
            # counted entries, and acknowledgements and pages (the interactions)
            "insight_timeline",
            "AFTER INSERT",
            "timeline",
            f"new.kind IN {_MARKED}",
            [_mark("new.incident_id")],
        ),
        (
            "insight_published",
            "AFTER INSERT",
            "postmortem_publications",
            "",
            [_mark("new.incident_id")],
        ),
    ]


# the incidents ``refresh`` computes again (every one in a back-fill)
_DIRTY = "SELECT incident_id FROM insight_dirty"


def _facts_sql(where: str = "") -> str:
    """Fact rows computed from scratch from the incidents ``where`` selects (``i``)."""
    cols = ", ".join(_FACT_COLUMNS)
    of = "ia.incident_id = i.id"
    counted = "(SELECT count(*) FROM timeline t WHERE t.incident_id = i.id AND t.kind = '{kind}')"
    return (
        f"INSERT INTO insight_facts (id, {cols}, alertname, runbook, alerts, fired, reopens, "
        f"pages, published) SELECT i.id, {', '.join(_fact_exprs('i'))}, "
        "coalesce((SELECT min(json_extract(a.labels, '$.alertname')) FROM incident_alerts ia "
        f"JOIN alerts a ON a.fingerprint = ia.fingerprint WHERE {of}), ''), "
        f"coalesce((SELECT {_RUNBOOK} FROM incident_alerts ia JOIN alerts a "
        f"ON a.fingerprint = ia.fingerprint WHERE {of}), 0), "
        f"(SELECT count(*) FROM incident_alerts ia WHERE {of}), "
        f"{counted.format(kind='alert_fired')}, {counted.format(kind='reopened')}, "
        f"{counted.format(kind='escalation_step')}, "
        "CASE WHEN EXISTS (SELECT 1 FROM postmortem_publications p WHERE p.incident_id = i.id) "
        f"THEN 1 ELSE 0 END FROM incidents i{where}"
    )


def _sums_sql(where: str = "") -> list[str]:
    """``insight_days`` and ``insight_pending`` summed from the fact rows (``f``) ``where``
    selects (whole days: a day's rows are all summed again)."""
    day_sums = ", ".join(f"sum({e})" for e in _sum_exprs("f"))
    days = (
        f"INSERT INTO insight_days (day, {', '.join(_KEY)}, {', '.join(_SUMS)}) "
        f"SELECT {_day('f')}, {', '.join('f.' + k for k in _KEY)}, {day_sums} "
        f"FROM insight_facts f WHERE f.drill = 0{where} GROUP BY {_day('f')}, "
        f"{', '.join('f.' + k for k in _KEY)}"
    )
    pending = (
        "INSERT INTO insight_pending (day, resolved_day, route, severity, n) "
        f"SELECT {_day('f')}, f.resolved_at / {DAY_NS}, f.route, f.severity, count(*) "
        f"FROM insight_facts f WHERE {_pending('f')}{where} GROUP BY {_day('f')}, "
        f"f.resolved_at / {DAY_NS}, f.route, f.severity"
    )
    return [days, pending]


def _delta_sql(sign: int, where: str) -> list[str]:
    """``insight_days`` and ``insight_pending`` moved by ``sign`` (-1, 1) times the sums of the
    fact rows (``f``) ``where`` selects: a refresh takes its incidents' old rows out and puts
    their new ones in, so that its cost follows the incidents marked, not the size of the
    days they are in (a storm's day holds every incident of the storm)."""
    day_sums = ", ".join(f"{sign} * sum({e})" for e in _sum_exprs("f"))
    added = ", ".join(f"{c} = insight_days.{c} + excluded.{c}" for c in _SUMS)
    days = (
        f"INSERT INTO insight_days (day, {', '.join(_KEY)}, {', '.join(_SUMS)}) "
        f"SELECT {_day('f')}, {', '.join('f.' + k for k in _KEY)}, {day_sums} "
        f"FROM insight_facts f WHERE f.drill = 0{where} GROUP BY {_day('f')}, "
        f"{', '.join('f.' + k for k in _KEY)} "
        f"ON CONFLICT (day, {', '.join(_KEY)}) DO UPDATE SET {added}"
    )
    pending = (
        "INSERT INTO insight_pending (day, resolved_day, route, severity, n) "
        f"SELECT {_day('f')}, f.resolved_at / {DAY_NS}, f.route, f.severity, {sign} * count(*) "
        f"FROM insight_facts f WHERE {_pending('f')}{where} GROUP BY {_day('f')}, "
        f"f.resolved_at / {DAY_NS}, f.route, f.severity "
        "ON CONFLICT (day, resolved_day, route, severity) "
        "DO UPDATE SET n = insight_pending.n + excluded.n"
    )
    return [days, pending]


def _entries_sql(pg: bool, where: str = "") -> list[str]:
    """The people paged and acknowledging, from the timeline's entries (``t``) ``where``
    selects, as one statement per kind (the entry read as the old triggers read ``new``)."""
    entries = [
        s.replace("new.", "t.").replace(
            "FROM incidents i", "FROM timeline t JOIN incidents i ON i.id = t.incident_id"
        )
        for s in (_ack_entry(), _page_entry(pg))
    ]
    entries[0] = entries[0].rstrip(";") + " AND t.kind = 'status_changed'"
    if pg:
        entries[1] = entries[1].replace(
            "FROM timeline t JOIN incidents i ON i.id = t.incident_id, ",
            "FROM timeline t JOIN incidents i ON i.id = t.incident_id CROSS JOIN LATERAL ",
        )
    entries[1] = entries[1].rstrip(";") + " AND t.kind = 'escalation_step'"
    return [e.replace("WHERE i.id = t.incident_id AND", "WHERE") + where for e in entries]


def backfill_sql(pg: bool) -> list[str]:
    """The aggregates of the incidents already stored (an upgrade keeps the insights of the
    history): the same rows as ``refresh`` computes for every incident marked."""
    return [_facts_sql(), *_sums_sql(), *_entries_sql(pg)]


def _runs(days: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted days as runs of consecutive days [first, end)."""
    out: list[tuple[int, int]] = []
    for d in days:
        if out and out[-1][1] == d:
            out[-1] = (out[-1][0], d + 1)
        else:
            out.append((d, d + 1))
    return out


def refresh(conn: sqlite3.Connection, limit: int | None = None) -> int:
    """Bring the aggregates up to the incidents the write path marked (``insight_dirty``), in
    the caller's one write transaction, set by set: their old fact rows' sums taken out of
    the days they were in, their fact rows computed again and their sums added to the days
    they are in, their interactions read again; the marks cleared. ``limit``: at most that many incidents (the lowest ids),
    so that one transaction holds the writer briefly. Returns how many were refreshed (0:
    nothing to do, nothing written)."""
    if limit is None:
        dirty, args = _DIRTY, []
    else:
        dirty, args = f"{_DIRTY} ORDER BY incident_id LIMIT ?", [limit]
    (marked,) = conn.execute(f"SELECT count(*) FROM ({dirty}) AS d", args).fetchone()
    if not marked:
        return 0
    pg = not isinstance(conn, sqlite3.Connection)
    # the days their incidents were in (the old fact rows) and are in now
    days = sorted(
        {
            int(d)
            for (d,) in conn.execute(
                f"SELECT {_day('f')} FROM insight_facts f WHERE f.id IN ({dirty}) "
                f"UNION SELECT {_day('i')} FROM incidents i WHERE i.id IN ({dirty})",
                args * 2,
            ).fetchall()
        }
    )
    marked_rows = f" AND f.id IN ({dirty})"
    for statement in _delta_sql(-1, marked_rows):  # their old rows' sums out
        conn.execute(statement, args)
    conn.execute(f"DELETE FROM insight_facts WHERE id IN ({dirty})", args)
    conn.execute(_facts_sql(f" WHERE i.id IN ({dirty})"), args)
    for statement in _delta_sql(1, marked_rows):  # and their new rows' in
        conn.execute(statement, args)
    for first, end in _runs(days):  # groups left with no incident go
        conn.execute("DELETE FROM insight_days WHERE day >= ? AND day < ? AND n = 0", [first, end])
        conn.execute(
            "DELETE FROM insight_pending WHERE day >= ? AND day < ? AND n = 0", [first, end]
        )
    conn.execute(f"DELETE FROM insight_interactions WHERE incident_id IN ({dirty})", args)
    for statement in _entries_sql(pg, f" AND t.incident_id IN ({dirty})"):
        conn.execute(statement, args)
    conn.execute(f"DELETE FROM insight_dirty WHERE incident_id IN ({dirty})", args)
    return int(marked)


def install(conn: sqlite3.Connection) -> None:
    """Migration 0024_insights on SQLite: the tables, the history summed, the triggers."""
    for statement in (*DDL, *backfill_sql(pg=False)):
        conn.execute(statement)
    for name, event, table, condition, statements in triggers(pg=False):
        when = f" WHEN {condition}" if condition else ""
        conn.execute(
            f"CREATE TRIGGER {name} {event} ON {table} FOR EACH ROW{when} BEGIN "
            f"{' '.join(statements)} END"
        )


def read_rollup(
    conn: sqlite3.Connection,
    *,
    until: int,
    span: int,
    required: Callable[[str, str], bool],
) -> Rollup:
    """The rollup of [until - span, until) and of the period before it, from the kept
    aggregates: whole UTC days from ``insight_days`` and ``insight_pending``, the partial days
    at the periods' edges summed from ``insight_facts``; the same numbers as ``read``."""
    lo, prev = until - span, until - 2 * span
    current = _summed(conn, lo, until)
    previous = _summed(conn, prev, lo)
    interactions: list[Interaction] = []
    ends: dict[int, int | None] = {}
    for person, kind, incident_id, at, ended in conn.execute(
        "SELECT person, kind, incident_id, at, ended FROM insight_interactions "
        "WHERE opened_at >= ? AND opened_at < ? AND drill = 0",
        [lo, until],
    ).fetchall():
        interactions.append(Interaction(person, kind, incident_id, at))
        ends[incident_id] = ended
    overdue, count = _overdue(conn, lo, until, required)
    return Rollup(current, previous, interactions, ends, _open_items(conn), overdue, count)


def _days(lo: int, hi: int) -> tuple[int, int, list[tuple[int, int]]]:
    """[lo, hi) as whole UTC days [first, last) and the partial days left at its edges."""
    first, last = -(-lo // DAY_NS), hi // DAY_NS
    if first >= last:
        return 0, 0, [(lo, hi)] if lo < hi else []
    edges = [(lo, first * DAY_NS), (last * DAY_NS, hi)]
    return first, last, [(a, b) for a, b in edges if a < b]


# Summed per week in SQL (a week's sums of nanoseconds stay far inside 64 bits): the Monday of
# day d (day 0, 1970-01-01, a Thursday) is d - (d + 3) % 7, as core's monday_of.
_MONDAY = "({d} - ({d} + 3) % 7)"


def _summed(conn: sqlite3.Connection, lo: int, hi: int) -> dict[Group, Sums]:
    out: dict[Group, Sums] = {}
    first, last, edges = _days(lo, hi)
    key = ", ".join(_KEY)
    queries = []
    if first < last:
        monday = _MONDAY.format(d="day")
        sums = ", ".join(f"sum({c})" for c in _SUMS)
        queries.append(
            (
                f"SELECT {monday}, {key}, {sums} FROM insight_days "
                f"WHERE day >= ? AND day < ? GROUP BY {monday}, {key}",
                [first, last],
            )
        )
    monday = _MONDAY.format(d=_day("f"))
    sums = ", ".join(f"sum({e})" for e in _sum_exprs("f"))
    for a, b in edges:  # the partial days, summed from their incidents the same way
        queries.append(
            (
                f"SELECT {monday}, {', '.join('f.' + k for k in _KEY)}, {sums} "
                "FROM insight_facts f WHERE f.opened_at >= ? AND f.opened_at < ? "
                f"AND f.drill = 0 GROUP BY {monday}, {', '.join('f.' + k for k in _KEY)}",
                [a, b],
            )
        )
    for sql, args in queries:
        for row in conn.execute(sql, args).fetchall():
            if not row[5]:
                continue  # the day's incidents all left (a drill marked late)
            group = Group(monday_of(int(row[0])), row[1], row[2], row[3], row[4])
            out.setdefault(group, Sums()).add(Sums(*(int(v) for v in row[5:])))
    return out


def _open_items(conn: sqlite3.Connection) -> list[OpenItem]:
    # from the open items to their incidents (a drill's left out): not the other way round,
    # which read every incident (CROSS JOIN keeps SQLite's order; PostgreSQL plans its own)
    rows = conn.execute(
        "SELECT f.incident_id, f.text, coalesce(f.owner, ''), f.created_at "
        "FROM followup_items f CROSS JOIN incidents i WHERE i.id = f.incident_id "
        f"AND f.state = 'open' AND f.kind = 'action' AND {_NOT_DRILL}"
    ).fetchall()
    return [OpenItem(r[0], r[1], r[2], r[3]) for r in rows]


_OVERDUE = f"FROM insight_facts WHERE {_PENDING} AND resolved_at < ?"


def _overdue(
    conn: sqlite3.Connection, lo: int, hi: int, required: Callable[[str, str], bool]
) -> tuple[list[tuple[int, str, str, int, float]], int]:
    """The postmortems overdue at ``hi`` of the incidents opened in [lo, hi), as
    ``core/insights.overdue_rows``: resolved before ``before`` (a week before ``hi``). The
    whole days opened count from ``insight_pending`` up to the day ``before`` falls in; that
    day's resolutions and the partial days opened are read incident by incident. The list
    (the ``LIST_ROWS`` resolved longest ago) reads only the resolution days it needs."""
    before = hi - POSTMORTEM_DUE_DAYS * DAY_NS
    cut = before // DAY_NS  # resolved on a day before this one: overdue
    first, last, edges = _days(lo, hi)
    per_day: dict[int, int] = {}
    exact: list[tuple[int, str, str, int]] = []
    if first < last:
        for rday, route, severity, n in conn.execute(
            "SELECT resolved_day, route, severity, sum(n) FROM insight_pending "
            "WHERE day >= ? AND day < ? AND resolved_day < ? "
            "GROUP BY resolved_day, route, severity",
            [first, last, cut],
        ).fetchall():
            if n and required(route, severity):
                per_day[int(rday)] = per_day.get(int(rday), 0) + int(n)
        # resolved on the day ``before`` falls in, before it
        exact += conn.execute(
            f"SELECT id, route, severity, resolved_at {_OVERDUE} AND resolved_at >= ? "
            "AND opened_at >= ? AND opened_at < ?",
            [before, cut * DAY_NS, first * DAY_NS, last * DAY_NS],
        ).fetchall()
    for a, b in edges:
        exact += conn.execute(
            f"SELECT id, route, severity, resolved_at {_OVERDUE} AND opened_at >= ? "
            "AND opened_at < ?",
            [before, a, b],
        ).fetchall()
    rows = [r for r in exact if required(r[1], r[2])]
    count = len(rows) + sum(per_day.values())
    if per_day:
        # the fewest days of resolutions that hold the list (the oldest first)
        days, taken = sorted(per_day), 0
        upto = days[-1]
        for d in days:
            taken += per_day[d]
            if taken >= LIST_ROWS:
                upto = d
                break
        since = [] if days[0] <= 0 else [days[0] * DAY_NS]
        rows += [
            r
            for r in conn.execute(
                f"SELECT id, route, severity, resolved_at {_OVERDUE} "
                f"{'AND resolved_at >= ? ' if since else ''}AND opened_at >= ? AND opened_at < ?",
                [(upto + 1) * DAY_NS, *since, first * DAY_NS, last * DAY_NS],
            ).fetchall()
            if required(r[1], r[2])
        ]
    rows.sort(key=lambda r: (r[3], r[0]))
    out = [(r[0], r[1], r[2], r[3], overdue_days(r[3], hi)) for r in rows[:LIST_ROWS]]
    return out, count
