"""The incident metrics' vocabulary: MTTx histograms, their buckets and bounded labels.

The aggregates live in the store (``store/metrics.py``, kept by SQLite triggers in the
milestone's transaction); ``metrics.py`` exposes them. Both read these definitions. No I/O.
"""

from __future__ import annotations

from collections.abc import Collection

# 30 s to 7 days, so that the severities' targets (5 min, 15 min, 1 h, 4 h, 1 day...) fall on
# bucket boundaries; +Inf is implied after the last one.
BUCKETS: tuple[float, ...] = (
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    14400,
    28800,
    43200,
    86400,
    172800,
    345600,
    604800,
)

# histogram key (as kept in the store) -> (metric name without prefix, the milestone column
# observed, the column it is measured from, help)
HISTOGRAMS: dict[str, tuple[str, str, str, str]] = {
    "ack": (
        "time_to_acknowledge_seconds",
        "acknowledged_at",
        "started_at",
        "Time from the first alert's startsAt to the acknowledgement, one observation per "
        "incident, the first time it is acknowledged.",
    ),
    "mitigate": (
        "time_to_mitigate_seconds",
        "mitigated_at",
        "started_at",
        "Time from the first alert's startsAt to mitigation, one observation per incident, "
        "the first time it is mitigated (a reopen does not observe again).",
    ),
    "resolve": (
        "time_to_resolve_seconds",
        "resolved_at",
        "started_at",
        "Time from the first alert's startsAt to resolution, one observation per incident.",
    ),
    "detect": (
        "detection_delay_seconds",
        "opened_at",
        "started_at",
        "Time from the first alert's startsAt to the bridge opening the incident, one "
        "observation per incident.",
    ),
}

# counter key (as kept in the store) -> (metric name without prefix and _total, help)
COUNTERS: dict[str, tuple[str, str]] = {
    "opened": ("incidents_opened", "Incidents opened, by severity at opening and team."),
    "reopened": (
        "incidents_reopened",
        "Incidents reopened in place (mitigated, then an alert fired again within the reopen "
        "window), by severity and team.",
    ),
    "dismissed": (
        "incidents_dismissed",
        "Incidents dismissed as a false alarm or a test (closed without a postmortem, no time "
        "to mitigate or resolve observed), by severity and team.",
    ),
}

NO_TEAM = "none"
OTHER = "other"


def team_label(team: str | None, teams: Collection[str]) -> str:
    """The bounded ``team`` label: a team of the active rules as is, no team ``none``, anything
    else (a team taken from an alert's labels, a team since removed from the rules) ``other``."""
    if not team:
        return NO_TEAM
    return team if team in teams else OTHER


def severity_label(severity: str, severities: Collection[str]) -> str:
    return severity if severity in severities else OTHER


def bucket_index(seconds: float) -> int:
    """The index of the first bucket whose upper bound holds ``seconds`` (len(BUCKETS): +Inf)."""
    for i, bound in enumerate(BUCKETS):
        if seconds <= bound:
            return i
    return len(BUCKETS)
