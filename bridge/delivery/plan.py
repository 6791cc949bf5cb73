"""Which notifications a timeline event calls for: the tier rules, as a pure function.

``store.apply`` calls ``plan_notifications`` for every timeline event of a change and writes
one outbox row per answer, in the same transaction.

- ``general``: opened, reopened, acknowledged, severity changed, mitigated, resolved, closed
  and postmortem published (for incidents at or above the general threshold, if any).
- ``incident`` (dedicated channel): every event; events without a kind of their own
  (alert fired, alert resolved, notes...) go as ``timeline``.
- ``stakeholders``: at or above the stakeholder threshold. An incident escalated into that
  range is announced to them as ``opened`` (so PagerDuty triggers and Opsgenie creates);
  once they were notified, they also hear how it ends even if it was de-escalated since.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.policy import Tiers, severity_rank
from bridge.targets.base import EventKind, Tier, event_kind

__all__ = ["Planned", "event_kind", "plan_notifications"]

GENERAL: frozenset[str] = frozenset(
    {
        "opened",
        "reopened",
        "acknowledged",
        "severity_changed",
        "mitigated",
        "resolved",
        "closed",
        "postmortem_published",
    }
)
STAKEHOLDERS: frozenset[str] = frozenset(
    {"opened", "reopened", "acknowledged", "severity_changed", "mitigated", "resolved", "closed"}
)
_ENDINGS = frozenset({"acknowledged", "mitigated", "resolved", "closed"})


@dataclass(frozen=True)
class Planned:
    tier: Tier
    target: str
    event: EventKind


def _at_or_above(severity: str | None, threshold: str) -> bool:
    return severity is not None and severity_rank(severity) <= severity_rank(threshold)


def plan_notifications(
    kind: str,
    data: Mapping[str, Any] | None,
    tiers: Tiers,
    severity: str,
    *,
    general_min_severity: str | None = None,
    stakeholders_notified: bool = False,
) -> list[Planned]:
    """Outbox rows (tier, target, event) for one timeline event of an incident whose
    severity is now ``severity``."""
    event = event_kind(kind, data)
    out: list[Planned] = []
    if event in GENERAL and (
        general_min_severity is None or _at_or_above(severity, general_min_severity)
    ):
        out.extend(Planned("general", t, event) for t in tiers.general)
    if tiers.incident:
        out.append(Planned("incident", tiers.incident, event))
    if tiers.stakeholders:
        stake = _stakeholder_event(event, data, tiers, severity, stakeholders_notified)
        if stake is not None:
            out.extend(Planned("stakeholders", t, stake) for t in tiers.stakeholders)
    return out


def _stakeholder_event(
    event: EventKind,
    data: Mapping[str, Any] | None,
    tiers: Tiers,
    severity: str,
    notified: bool,
) -> EventKind | None:
    threshold = tiers.stakeholder_min_severity
    if event not in STAKEHOLDERS:
        return None
    if _at_or_above(severity, threshold):
        if event == "severity_changed" and not notified:
            before = (data or {}).get("from")
            if not _at_or_above(before if isinstance(before, str) else None, threshold):
                return "opened"  # escalated into their range: news to them
        return event
    if notified and event in _ENDINGS:
        return event
    return None
