"""The facts the insights aggregate (``core/insights.py``, docs/insights.md): kept by the write
path (migration 0024_insights) and read in one look, or read incident by incident.

The kept aggregates (``install``; triggers on both backends, in the write's transaction):

- ``insight_facts``: one row per incident with what the insights need of it (its milestones,
  team, service, route, the smallest alertname of its alerts and whether one has a runbook, its
  alerts, alerts fired, reopenings, escalation steps, whether a postmortem is published, whether
  it is a drill), kept from ``incidents``, ``incident_alerts``, ``alerts``, ``timeline`` and
  ``postmortem_publications``;
- ``insight_days``: those rows summed per UTC day opened and (team, service, route, alertname),
  drills left out (``core/insights.Sums``: counts and nanosecond sums), kept from
  ``insight_facts`` (the old row subtracted, the new one added);
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

TABLES = ("insight_facts", "insight_days", "insight_pending", "insight_interactions")
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


# A fact row changed within its day and group (a milestone, a page, a runbook: nearly every
# change): one UPDATE by the difference, not the old row's sums taken out and the new one's
# added (two writes of the same row: PostgreSQL keeps every version until the commit).
_SAME = (
    f"{_day('old')} = {_day('new')} AND "
    + " AND ".join(f"old.{k} = new.{k}" for k in _KEY)
    + " AND old.drill = 0 AND new.drill = 0"
)


def _add_day(unless_same: bool = False) -> str:
    cols = ", ".join(("day", *_KEY, *_SUMS))
    sets = ", ".join(f"{c} = insight_days.{c} + excluded.{c}" for c in _SUMS)
    unless = f" AND NOT ({_SAME})" if unless_same else ""
    return (
        f"INSERT INTO insight_days ({cols}) SELECT {_day('new')}, "
        f"{', '.join('new.' + k for k in _KEY)}, {', '.join(_sum_exprs('new'))} "
        f"WHERE new.drill = 0{unless} "
        f"ON CONFLICT (day, {', '.join(_KEY)}) DO UPDATE SET {sets};"
    )


def _subtract_day(unless_same: bool = False) -> str:
    # the row is there: the same values were added when this fact row was written
    sets = ", ".join(f"{c} = {c} - ({e})" for c, e in zip(_SUMS, _sum_exprs("old"), strict=True))
    where = " AND ".join(f"{k} = old.{k}" for k in _KEY)
    unless = f" AND NOT ({_SAME})" if unless_same else ""
    return (
        f"UPDATE insight_days SET {sets} WHERE day = {_day('old')} AND {where} "
        f"AND old.drill = 0{unless};"
    )


def _change_day() -> str:
    """A fact row's change within its day and group, as one difference."""
    diff = zip(_SUMS, _sum_exprs("new"), _sum_exprs("old"), strict=True)
    sets = ", ".join(f"{c} = {c} + ({a}) - ({b})" for c, a, b in diff)
    where = " AND ".join(f"{k} = new.{k}" for k in _KEY)
    # nothing summed moved (an alert fired once more without flapping yet): no write
    moved = " OR ".join(
        f"({a}) <> ({b})" for a, b in zip(_sum_exprs("new"), _sum_exprs("old"), strict=True)
    )
    return (
        f"UPDATE insight_days SET {sets} WHERE day = {_day('new')} AND {where} AND {_SAME} "
        f"AND ({moved});"
    )


_RUNBOOK = (
    "max(CASE WHEN coalesce(json_extract(a.annotations, '$.runbook_url'), '') <> '' "
    "THEN 1 ELSE 0 END)"
)


def _pending(r: str) -> str:
    return " AND ".join(f"{r}.{c.strip()}" for c in _PENDING.split(" AND "))


def _pending_same() -> str:
    """Pending before and after, on the same day, day resolved, route and severity: the
    count stays (no write at all)."""
    return (
        f"({_pending('old')} AND {_pending('new')} AND {_day('old')} = {_day('new')} "
        f"AND old.resolved_at / {DAY_NS} = new.resolved_at / {DAY_NS} "
        "AND old.route = new.route AND old.severity = new.severity)"
    )


def _add_pending(unless_same: bool = False) -> str:
    unless = f" AND NOT {_pending_same()}" if unless_same else ""
    return (
        "INSERT INTO insight_pending (day, resolved_day, route, severity, n) "
        f"SELECT {_day('new')}, new.resolved_at / {DAY_NS}, new.route, new.severity, 1 "
        f"WHERE {_pending('new')}{unless} ON CONFLICT (day, resolved_day, route, severity) "
        "DO UPDATE SET n = insight_pending.n + 1;"
    )


def _subtract_pending(unless_same: bool = False) -> str:
    unless = f" AND NOT {_pending_same()}" if unless_same else ""
    return (
        f"UPDATE insight_pending SET n = n - 1 WHERE day = {_day('old')} "
        f"AND resolved_day = old.resolved_at / {DAY_NS} AND route = old.route "
        f"AND severity = old.severity AND {_pending('old')}{unless};"
    )


def _refresh_alerts(where: str) -> str:
    """The alerts' part of the fact rows ``where`` selects, counted again from their alerts."""
    of = "ia.incident_id = insight_facts.id"
    return (
        f"UPDATE insight_facts SET alerts = (SELECT count(*) FROM incident_alerts ia WHERE {of}), "
        "alertname = coalesce((SELECT min(json_extract(a.labels, '$.alertname')) "
        f"FROM incident_alerts ia JOIN alerts a ON a.fingerprint = ia.fingerprint WHERE {of}), ''), "
        f"runbook = coalesce((SELECT {_RUNBOOK} FROM incident_alerts ia JOIN alerts a "
        f"ON a.fingerprint = ia.fingerprint WHERE {of}), 0) WHERE {where};"
    )


def _one_more_alert() -> str:
    """An alert joined its incident: one more alert, the smaller alertname, a runbook if it
    has one, from that alert alone (counting every alert again on each join would cost a
    group of 1,000 alerts half a million reads). An alertname of '' is none: Prometheus
    reads an empty label as an absent one."""
    this = "FROM alerts a WHERE a.fingerprint = new.fingerprint"
    name = "insight_facts.alertname"
    return (
        "UPDATE insight_facts SET alerts = alerts + 1, alertname = coalesce((SELECT CASE "
        f"WHEN x.n IS NULL THEN {name} WHEN {name} = '' OR x.n < {name} THEN x.n "
        f"ELSE {name} END FROM (SELECT json_extract(a.labels, '$.alertname') AS n {this}) "
        f"AS x), {name}), runbook = CASE WHEN runbook > 0 THEN 1 ELSE coalesce((SELECT "
        "CASE WHEN coalesce(json_extract(a.annotations, '$.runbook_url'), '') <> '' THEN 1 "
        f"ELSE 0 END {this}), 0) END WHERE id = new.incident_id;"
    )


_COUNTED = "('reopened', 'alert_fired', 'escalation_step')"


def _count_entry() -> str:
    def one(kind: str) -> str:
        return f"CASE WHEN new.kind = '{kind}' THEN 1 ELSE 0 END"

    return (
        f"UPDATE insight_facts SET reopens = reopens + {one('reopened')}, "
        f"fired = fired + {one('alert_fired')}, pages = pages + {one('escalation_step')} "
        "WHERE id = new.incident_id;"
    )


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


def triggers(pg: bool) -> list[tuple[str, str, str, str, list[str]]]:
    """(name, event, table, condition or '', statements) of every trigger, in the backend's
    spelling (SQLite's and PostgreSQL's differ only in how a change and JSON are spelled)."""
    cols = ", ".join(_FACT_COLUMNS)
    values = _fact_exprs("new")
    updates = ", ".join(f"{c} = {v}" for c, v in zip(_FACT_COLUMNS, values, strict=True))
    return [
        (
            "insight_incident_insert",
            "AFTER INSERT",
            "incidents",
            "",
            [
                f"INSERT INTO insight_facts (id, {cols}) VALUES (new.id, {', '.join(_fact_exprs('new'))});"
            ],
        ),
        (
            "insight_incident_update",
            f"AFTER UPDATE OF {', '.join(_INCIDENT_COLUMNS)}",
            "incidents",
            _changed(_INCIDENT_COLUMNS, pg),
            [
                f"UPDATE insight_facts SET {updates} WHERE id = new.id;",
                "UPDATE insight_interactions SET opened_at = new.opened_at, "
                "ended = coalesce(new.mitigated_at, new.resolved_at), "
                "drill = coalesce(new.drill, 0) WHERE incident_id = new.id;",
            ],
        ),
        (
            "insight_incident_alerts_insert",
            "AFTER INSERT",
            "incident_alerts",
            "",
            [_one_more_alert()],
        ),
        (
            "insight_incident_alerts_update",
            "AFTER UPDATE",
            "incident_alerts",
            "",
            [_refresh_alerts("id IN (old.incident_id, new.incident_id)")],
        ),
        (
            "insight_incident_alerts_delete",
            "AFTER DELETE",
            "incident_alerts",
            "",
            [_refresh_alerts("id = old.incident_id")],
        ),
        (
            # an alert written after its incident's link (SQLite does not enforce the key)
            "insight_alert_insert",
            "AFTER INSERT",
            "alerts",
            "",
            [
                _refresh_alerts(
                    "id IN (SELECT h.incident_id FROM incident_alerts h "
                    "WHERE h.fingerprint = new.fingerprint)"
                )
            ],
        ),
        (
            "insight_alert_update",
            "AFTER UPDATE OF labels, annotations",
            "alerts",
            _changed(("labels", "annotations"), pg),
            [
                _refresh_alerts(
                    "id IN (SELECT h.incident_id FROM incident_alerts h "
                    "WHERE h.fingerprint = new.fingerprint)"
                )
            ],
        ),
        (
            "insight_timeline_count",
            "AFTER INSERT",
            "timeline",
            f"new.kind IN {_COUNTED}",
            [_count_entry()],
        ),
        (
            "insight_timeline_ack",
            "AFTER INSERT",
            "timeline",
            "new.kind = 'status_changed'",
            [_ack_entry()],
        ),
        (
            "insight_timeline_page",
            "AFTER INSERT",
            "timeline",
            "new.kind = 'escalation_step'",
            [_page_entry(pg)],
        ),
        (
            "insight_published",
            "AFTER INSERT",
            "postmortem_publications",
            "",
            ["UPDATE insight_facts SET published = 1 WHERE id = new.incident_id;"],
        ),
        (
            "insight_facts_insert",
            "AFTER INSERT",
            "insight_facts",
            "",
            [_add_day(), _add_pending()],
        ),
        (
            "insight_facts_update",
            "AFTER UPDATE",
            "insight_facts",
            "",
            [
                _change_day(),
                _subtract_day(unless_same=True),
                _add_day(unless_same=True),
                _subtract_pending(unless_same=True),
                _add_pending(unless_same=True),
            ],
        ),
        (
            "insight_facts_delete",
            "AFTER DELETE",
            "insight_facts",
            "",
            [_subtract_day(), _subtract_pending()],
        ),
    ]


def backfill_sql(pg: bool) -> list[str]:
    """The aggregates of the incidents already stored (an upgrade keeps the insights of the
    history): the statements' results equal what the triggers would have kept."""
    cols = ", ".join(_FACT_COLUMNS)
    of = "ia.incident_id = i.id"
    counted = "(SELECT count(*) FROM timeline t WHERE t.incident_id = i.id AND t.kind = '{kind}')"
    facts = (
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
        "THEN 1 ELSE 0 END FROM incidents i"
    )
    day_sums = ", ".join(f"sum({e})" for e in _sum_exprs("f"))
    days = (
        f"INSERT INTO insight_days (day, {', '.join(_KEY)}, {', '.join(_SUMS)}) "
        f"SELECT {_day('f')}, {', '.join('f.' + k for k in _KEY)}, {day_sums} "
        f"FROM insight_facts f WHERE f.drill = 0 GROUP BY {_day('f')}, "
        f"{', '.join('f.' + k for k in _KEY)}"
    )
    pending = (
        "INSERT INTO insight_pending (day, resolved_day, route, severity, n) "
        f"SELECT {_day('f')}, f.resolved_at / {DAY_NS}, f.route, f.severity, count(*) "
        f"FROM insight_facts f WHERE {_pending('f')} GROUP BY {_day('f')}, "
        f"f.resolved_at / {DAY_NS}, f.route, f.severity"
    )
    # the timeline's entries as the triggers read them, one by one (new = the entry)
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
    entries = [e.replace("WHERE i.id = t.incident_id AND", "WHERE") for e in entries]
    return [facts, days, pending, *entries]


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
