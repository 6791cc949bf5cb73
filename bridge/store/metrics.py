"""The incident metrics' aggregates (migration 0011): small tables SQLite's triggers keep in the
transaction that writes the milestone, read whole at each scrape (``read``).

- ``metric_histograms`` (metric, severity, team, bucket, n, sum): the MTTx histograms, one row
  per non-empty bucket (not cumulative; ``metrics.py`` adds them up), ``sum`` in seconds.
- ``metric_counters`` (metric, severity, team, n): incidents opened, reopened.
- ``metric_reopened`` (incident_id): the incidents reopened in place, so that mitigating one
  again does not observe ``time_to_mitigate`` a second time.
- ``metric_postmortems`` (route, severity, n): incidents resolved or closed without a published
  postmortem; whether their route requires one is the rules' answer, asked at the scrape.
- ``metric_gauges`` (name, n): ``followup_items_open``, the checklist items in state ``open``.
- ``incidents.dismissed_at`` (0014): the dismissed incidents, counted as ``dismissed`` and left out
  of ``metric_postmortems``; a dismissal observes no time to mitigate or resolve.

Raw team values are kept (an incident without a team as ``''``); ``read`` bounds them to the
active rules' teams and sums in SQL. One observation per incident per milestone, the first time the milestone
is set: a milestone overwritten later (acknowledged again after a reopen) is not observed again.
Durations are measured from ``started_at`` and never below 0.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass, field

from bridge.core import mttx
from bridge.core.mttx import BUCKETS, HISTOGRAMS

DONE = "('resolved', 'closed')"
# the team of the drills' rows (store/drills.metric_moves): never a team of the rules (a name),
# nor a usual label value
DRILL_TEAM = "#drill"


def seconds_sql(column: str, base: str, row: str = "new") -> str:
    return f"max(0.0, ({row}.{column} - {row}.{base}) / 1e9)"


def bucket_sql(d: str) -> str:
    whens = " ".join(f"WHEN {d} <= {bound} THEN {i}" for i, bound in enumerate(BUCKETS))
    return f"CASE {whens} ELSE {len(BUCKETS)} END"


def observe_sql(metric: str) -> str:
    """One observation of ``metric`` for the row ``new`` (a trigger's statement)."""
    _, column, base, _ = HISTOGRAMS[metric]
    return (
        "INSERT INTO metric_histograms (metric, severity, team, bucket, n, sum) "
        f"SELECT '{metric}', new.severity, coalesce(new.team, ''), {bucket_sql('d')}, 1, d "
        f"FROM (SELECT {seconds_sql(column, base)} AS d) WHERE true "
        "ON CONFLICT (metric, severity, team, bucket) DO UPDATE SET n = n + 1, "
        "sum = sum + excluded.sum;"
    )


def count_sql(metric: str) -> str:
    return (
        "INSERT INTO metric_counters (metric, severity, team, n) "
        f"VALUES ('{metric}', new.severity, coalesce(new.team, ''), 1) "
        "ON CONFLICT (metric, severity, team) DO UPDATE SET n = n + 1;"
    )


UNPUBLISHED = "NOT EXISTS (SELECT 1 FROM postmortem_publications p WHERE p.incident_id = new.id)"
PENDING_ADD = (
    "INSERT INTO metric_postmortems (route, severity, n) "
    f"SELECT coalesce(new.route, ''), new.severity, 1 WHERE new.status IN {DONE} "
    "ON CONFLICT (route, severity) DO UPDATE SET n = n + 1;"
)


def install(conn: sqlite3.Connection) -> None:
    """Create the aggregates, fill them from the incidents already stored, add the triggers."""
    conn.execute(
        "CREATE TABLE metric_histograms (metric TEXT NOT NULL, severity TEXT NOT NULL, "
        "team TEXT NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL, sum REAL NOT NULL, "
        "PRIMARY KEY (metric, severity, team, bucket)) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE metric_counters (metric TEXT NOT NULL, severity TEXT NOT NULL, "
        "team TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (metric, severity, team)) "
        "WITHOUT ROWID"
    )
    conn.execute("CREATE TABLE metric_reopened (incident_id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TABLE metric_postmortems (route TEXT NOT NULL, severity TEXT NOT NULL, "
        "n INTEGER NOT NULL, PRIMARY KEY (route, severity)) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE metric_gauges (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID"
    )
    backfill(conn)
    _triggers(conn)


def backfill(conn: sqlite3.Connection) -> None:
    """The aggregates of the incidents stored before this migration, with their current severity
    and team; an incident reopened and mitigated again is observed at its latest mitigation
    (the first is not kept anywhere)."""
    for metric, (_, column, base, _) in HISTOGRAMS.items():
        conn.execute(
            "INSERT INTO metric_histograms (metric, severity, team, bucket, n, sum) "
            f"SELECT '{metric}', severity, team, {bucket_sql('d')}, count(*), sum(d) FROM "
            f"(SELECT severity, coalesce(team, '') AS team, {seconds_sql(column, base, 'i')} AS d "
            f"FROM incidents i WHERE {column} IS NOT NULL) AS observed GROUP BY 1, 2, 3, 4"
        )
    conn.execute(
        "INSERT INTO metric_counters (metric, severity, team, n) "
        "SELECT 'opened', severity, coalesce(team, ''), count(*) FROM incidents GROUP BY 2, 3"
    )
    conn.execute(
        "INSERT INTO metric_reopened (incident_id) "
        "SELECT DISTINCT incident_id FROM timeline WHERE kind = 'reopened'"
    )
    conn.execute(
        "INSERT INTO metric_counters (metric, severity, team, n) "
        "SELECT 'reopened', i.severity, coalesce(i.team, ''), count(*) FROM timeline t "
        "JOIN incidents i ON i.id = t.incident_id WHERE t.kind = 'reopened' GROUP BY 2, 3"
    )
    conn.execute(
        "INSERT INTO metric_postmortems (route, severity, n) "
        "SELECT coalesce(route, ''), severity, count(*) FROM incidents i "
        f"WHERE status IN {DONE} AND NOT EXISTS "
        "(SELECT 1 FROM postmortem_publications p WHERE p.incident_id = i.id) GROUP BY 1, 2"
    )
    conn.execute(
        "INSERT INTO metric_gauges (name, n) "
        "SELECT 'followup_items_open', count(*) FROM followup_items WHERE state = 'open'"
    )


def _triggers(conn: sqlite3.Connection) -> None:
    # A new incident: opened, its detection delay, and any milestone it already has.
    inserted = [count_sql("opened"), observe_sql("detect")]
    for metric in ("ack", "mitigate", "resolve"):
        column = HISTOGRAMS[metric][1]
        inserted.append(
            observe_sql(metric).replace("WHERE true", f"WHERE new.{column} IS NOT NULL", 1)
        )
    conn.execute(
        f"CREATE TRIGGER metric_incident_insert AFTER INSERT ON incidents BEGIN "
        f"{' '.join(inserted)} {PENDING_ADD.replace('WHERE', f'WHERE {UNPUBLISHED} AND', 1)} "
        "END"
    )
    # A milestone set for the first time (an UPDATE OF fires whenever the column is assigned,
    # changed or not: the WHEN clause is the test).
    for metric in ("ack", "resolve"):
        column = HISTOGRAMS[metric][1]
        conn.execute(
            f"CREATE TRIGGER metric_incident_{metric} AFTER UPDATE OF {column} ON incidents "
            f"WHEN old.{column} IS NULL AND new.{column} IS NOT NULL BEGIN {observe_sql(metric)} END"
        )
    conn.execute(
        "CREATE TRIGGER metric_incident_mitigate AFTER UPDATE OF mitigated_at ON incidents "
        "WHEN old.mitigated_at IS NULL AND new.mitigated_at IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM metric_reopened r WHERE r.incident_id = new.id) "
        f"BEGIN {observe_sql('mitigate')} END"
    )
    conn.execute(
        "CREATE TRIGGER metric_incident_reopen AFTER UPDATE OF status ON incidents "
        "WHEN old.status = 'mitigated' AND new.status = 'triggered' BEGIN "
        f"{count_sql('reopened')} "
        "INSERT OR IGNORE INTO metric_reopened (incident_id) VALUES (new.id); END"
    )
    # Resolved or closed without a publication: counted under its (route, severity).
    conn.execute(
        "CREATE TRIGGER metric_incident_postmortem AFTER UPDATE OF status, severity, route "
        "ON incidents WHEN (old.status IS NOT new.status OR old.severity IS NOT new.severity "
        "OR old.route IS NOT new.route) "
        f"AND (old.status IN {DONE} OR new.status IN {DONE}) AND {UNPUBLISHED} BEGIN "
        "UPDATE metric_postmortems SET n = n - 1 WHERE route = coalesce(old.route, '') "
        f"AND severity = old.severity AND old.status IN {DONE}; {PENDING_ADD} END"
    )
    conn.execute(
        "CREATE TRIGGER metric_postmortem_published AFTER INSERT ON postmortem_publications "
        "WHEN NOT EXISTS (SELECT 1 FROM postmortem_publications p "
        "WHERE p.incident_id = new.incident_id AND p.id <> new.id) BEGIN "
        "UPDATE metric_postmortems SET n = n - 1 WHERE (route, severity) = "
        "(SELECT coalesce(route, ''), severity FROM incidents "
        f"WHERE id = new.incident_id AND status IN {DONE}); END"
    )
    # Follow-up checklist items open.
    item_delta = "(new.state = 'open') - (old.state = 'open')"
    open_items = "UPDATE metric_gauges SET n = n + {} WHERE name = 'followup_items_open';"
    conn.execute(
        "CREATE TRIGGER metric_followup_item_insert AFTER INSERT ON followup_items "
        f"WHEN new.state = 'open' BEGIN {open_items.format(1)} END"
    )
    conn.execute(
        "CREATE TRIGGER metric_followup_item_update AFTER UPDATE OF state ON followup_items "
        "WHEN old.state IS NOT new.state AND (old.state = 'open' OR new.state = 'open') BEGIN "
        f"{open_items.format(item_delta)} END"
    )
    conn.execute(
        "CREATE TRIGGER metric_followup_item_delete AFTER DELETE ON followup_items "
        f"WHEN old.state = 'open' BEGIN {open_items.format(-1)} END"
    )


def install_dismiss(conn: sqlite3.Connection) -> None:
    """Migration 0014: ``incidents.dismissed_at``, set (before the status) when a person dismisses
    an incident as a false alarm or a test; the ``dismissed`` counter; and the postmortem trigger
    again, leaving dismissed incidents out (they need none). A dismissal sets neither
    ``mitigated_at`` nor ``resolved_at``, so it observes no time to mitigate or resolve; what
    was observed before it (detection, an acknowledgement) stays: the histograms' buckets are
    counters, and taking one back would read as a counter reset to ``rate()``."""
    conn.execute("ALTER TABLE incidents ADD COLUMN dismissed_at INTEGER")
    conn.execute(
        "CREATE TRIGGER metric_incident_dismissed AFTER UPDATE OF dismissed_at ON incidents "
        f"WHEN old.dismissed_at IS NULL AND new.dismissed_at IS NOT NULL BEGIN "
        f"{count_sql('dismissed')} END"
    )
    conn.execute("DROP TRIGGER metric_incident_postmortem")
    conn.execute(
        "CREATE TRIGGER metric_incident_postmortem AFTER UPDATE OF status, severity, route "
        "ON incidents WHEN (old.status IS NOT new.status OR old.severity IS NOT new.severity "
        "OR old.route IS NOT new.route) "
        f"AND (old.status IN {DONE} OR new.status IN {DONE}) AND {UNPUBLISHED} "
        "AND new.dismissed_at IS NULL BEGIN "
        "UPDATE metric_postmortems SET n = n - 1 WHERE route = coalesce(old.route, '') "
        f"AND severity = old.severity AND old.status IN {DONE}; {PENDING_ADD} END"
    )


@dataclass(frozen=True)
class Aggregates:
    """The aggregates as read at one scrape (one read transaction)."""

    # (metric, severity, team label, bucket index, n, sum)
    histograms: list[tuple[str, str, str, int, int, float]]
    # (metric, severity, team label, n)
    counters: list[tuple[str, str, str, int]]
    # (route, severity, n)
    postmortems: list[tuple[str, str, int]]
    followup_items_open: int
    # the drills' (store/drills.py): (metric, severity, bucket index, n, sum), (metric,
    # severity, n)
    drill_histograms: list[tuple[str, str, int, int, float]] = field(default_factory=list)
    drill_counters: list[tuple[str, str, int]] = field(default_factory=list)


def read(conn: sqlite3.Connection, teams: Collection[str] = ()) -> Aggregates:
    """The aggregates in one read transaction, teams bounded to ``teams`` (``mttx.team_label``:
    no team ``none``, any other ``other``) and summed in SQL, so that the rows returned stay few
    however many raw team values the incidents carried."""
    names = sorted(teams)
    bounded = (
        f"CASE WHEN team = '' THEN '{mttx.NO_TEAM}' "
        f"WHEN team IN ({', '.join('?' * len(names))}) THEN team ELSE '{mttx.OTHER}' END"
    )
    conn.execute("BEGIN")
    try:
        # drills' rows (store/drills.py) are their own families, never a team's
        histograms = conn.execute(
            f"SELECT metric, severity, {bounded} AS t, bucket, sum(n), sum(sum) "
            "FROM metric_histograms WHERE team <> ? GROUP BY metric, severity, t, bucket",
            [*names, DRILL_TEAM],
        ).fetchall()
        counters = conn.execute(
            f"SELECT metric, severity, {bounded} AS t, sum(n) FROM metric_counters "
            "WHERE team <> ? GROUP BY metric, severity, t",
            [*names, DRILL_TEAM],
        ).fetchall()
        drill_histograms, drill_counters = read_drill_metrics(conn)
        postmortems = conn.execute(
            "SELECT route, severity, n FROM metric_postmortems WHERE n > 0"
        ).fetchall()
        row = conn.execute(
            "SELECT n FROM metric_gauges WHERE name = 'followup_items_open'"
        ).fetchone()
    finally:
        conn.execute("COMMIT")
    return Aggregates(
        histograms,
        counters,
        postmortems,
        int(row[0]) if row else 0,
        drill_histograms,
        drill_counters,
    )


def read_drill_metrics(
    conn: sqlite3.Connection,
) -> tuple[list[tuple[str, str, int, int, float]], list[tuple[str, str, int]]]:
    """The drills' rows of the aggregates: (metric, severity, bucket, n, sum) and (metric,
    severity, n), in the caller's read transaction."""
    histograms = conn.execute(
        "SELECT metric, severity, bucket, sum(n), sum(sum) FROM metric_histograms "
        "WHERE team = ? GROUP BY metric, severity, bucket",
        (DRILL_TEAM,),
    ).fetchall()
    counters = conn.execute(
        "SELECT metric, severity, sum(n) FROM metric_counters WHERE team = ? "
        "GROUP BY metric, severity",
        (DRILL_TEAM,),
    ).fetchall()
    return [tuple(r) for r in histograms], [tuple(r) for r in counters]
