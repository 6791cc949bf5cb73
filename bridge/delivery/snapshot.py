"""The incident as targets and templates see it: one typed shape, built in one place.

The outbox worker turns the store's incident (its alert counts and at most ``MAX_ALERTS`` of
its newest alerts) into an ``IncidentSnapshot`` for every message; templates see it as
``incident`` after ``normalized`` filled in what a caller left out. docs/targets.md lists the
same keys (a test compares them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NotRequired, TypedDict

from bridge.core.policy import ROLES

# Alerts a message's snapshot carries at most: the incident's newest (by start). The counts say
# how many there are in all; targets cut further to their own limits (``max_alerts``).
MAX_ALERTS = 100


class AlertSnapshot(TypedDict):
    """One alert, in Alertmanager's spelling (``startsAt``, ``generatorURL``)."""

    fingerprint: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: str | None
    endsAt: str | None
    generatorURL: str | None


class IncidentSnapshot(TypedDict):
    """The incident; milestones are RFC 3339 text or None."""

    id: int
    key: str
    title: str
    severity: str
    status: str
    team: str | None
    service: str | None
    route: str
    started_at: str | None
    opened_at: str | None
    acknowledged_at: str | None
    mitigated_at: str | None
    resolved_at: str | None
    closed_at: str | None
    url: str | None
    roles: dict[str, list[str]]
    # name -> handles from the rotations ({"slack": "U123", "email": "..."}), for invites and
    # mentions
    people: dict[str, dict[str, str]]
    alerts: list[AlertSnapshot]
    # Known to the store, absent from samples and previews. ``alerts`` holds at most
    # MAX_ALERTS of them, the newest; these count them all.
    truncated_alerts: NotRequired[int]
    previous_id: NotRequired[int | None]
    alert_count: NotRequired[int]
    firing_count: NotRequired[int]
    resolved_count: NotRequired[int]
    # a drill's incident (core/drills.py): every title and message starts with DRILL:
    drill: NotRequired[bool]


# Keys a template may always use (None, empty or counted when unknown), in the documented order.
INCIDENT_KEYS: tuple[str, ...] = tuple(IncidentSnapshot.__annotations__)
ALERT_KEYS: tuple[str, ...] = tuple(AlertSnapshot.__annotations__)
_SCALAR_INCIDENT_KEYS = tuple(k for k in INCIDENT_KEYS if k not in ("roles", "people", "alerts"))
_SCALAR_ALERT_KEYS = tuple(k for k in ALERT_KEYS if k not in ("labels", "annotations"))


def from_store(
    incident: Mapping[str, Any], url: Callable[[int], str] | None = None
) -> IncidentSnapshot:
    """The snapshot of an incident as the store reads it (``bridge.store.queries``)."""
    out: dict[str, Any] = dict(incident)
    out["alerts"] = [
        {
            "fingerprint": a["fingerprint"],
            "status": a["status"],
            "labels": a["labels"],
            "annotations": a["annotations"],
            "startsAt": a["starts_at"],
            "endsAt": a["ends_at"],
            "generatorURL": a["generator_url"],
        }
        for a in incident.get("alerts", [])
    ]
    out.setdefault("roles", {})
    out.setdefault("people", {})
    if url is not None:
        out["url"] = url(int(incident["id"]))
    return out  # type: ignore[return-value]


def alert_count(incident: Mapping[str, Any]) -> int:
    """All of the incident's alerts, also those its snapshot leaves out."""
    count = incident.get("alert_count")
    return int(count) if count is not None else len(incident.get("alerts") or [])


def normalized(incident: Mapping[str, Any]) -> dict[str, Any]:
    """The documented shape, whatever the caller left out: a missing optional value is None
    (or empty), so a template's strict undefined only catches names that are not documented."""
    out: dict[str, Any] = dict.fromkeys(_SCALAR_INCIDENT_KEYS)
    out.update(incident)
    roles = dict(out.get("roles") or {})
    out["roles"] = {**{r: [] for r in ROLES}, **roles}
    out["people"] = dict(out.get("people") or {})
    out["alerts"] = [
        {
            **dict.fromkeys(_SCALAR_ALERT_KEYS),
            **a,
            "labels": dict(a.get("labels") or {}),
            "annotations": dict(a.get("annotations") or {}),
        }
        for a in (out.get("alerts") or [])
    ]
    # The counts of all alerts, for "...and N more": a snapshot carries at most MAX_ALERTS.
    statuses = [a["status"] for a in out["alerts"]]
    counted = {
        "alert_count": len(statuses),
        "firing_count": statuses.count("firing"),
        "resolved_count": statuses.count("resolved"),
    }
    for key, value in counted.items():
        if out.get(key) is None:
            out[key] = value
    return out
