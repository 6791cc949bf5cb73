"""What the rules decide for a group of alerts, and the built-in policy used without rules.

The store and the incident state machine only see ``Decision`` objects; the rule engine
(``bridge.rules``) is one ``Policy``, the built-in default below is another. Both are pure.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from bridge.core import drills, jsontext
from bridge.core.alertmanager import WebhookPayload
from bridge.core.values import immutable

Severity = Literal["sev1", "sev2", "sev3", "sev4"]
SEVERITIES: tuple[Severity, ...] = ("sev1", "sev2", "sev3", "sev4")
Role = Literal["commander", "scribe", "liaison", "responders"]
ROLES: tuple[Role, ...] = ("commander", "scribe", "liaison", "responders")
DEFAULT_REOPEN_WINDOW_S = 3600.0


def severity_rank(sev: str) -> int:
    """1 for sev1 (worst) .. 4 for sev4; unknown sorts last."""
    return SEVERITIES.index(sev) + 1 if sev in SEVERITIES else 5


@immutable
class Tiers:
    """Notification tiers: target names per tier (targets are declared in the rules)."""

    general: tuple[str, ...] = ()
    # The lowest severity announced in the general channel: "sev4" = every incident.
    general_min_severity: Severity = "sev4"
    incident: str | None = None
    stakeholders: tuple[str, ...] = ()
    # The lowest severity that still alerts stakeholders: "sev1" = only sev1, "sev2" = sev1+sev2.
    stakeholder_min_severity: Severity = "sev1"


@functools.lru_cache(maxsize=256)  # a rule set has a handful of tiers; every new incident asks
def tiers_json(tiers: Tiers) -> str:
    """``tiers`` as the JSON kept on the incident: people's actions notify the same channels
    as the alerts that opened it."""
    return jsontext.dumps(
        {
            "general": list(tiers.general),
            "general_min_severity": tiers.general_min_severity,
            "incident": tiers.incident,
            "stakeholders": list(tiers.stakeholders),
            "stakeholder_min_severity": tiers.stakeholder_min_severity,
        }
    )


def tiers_from_json(text: str | None) -> Tiers:
    """The tiers kept on an incident; ``{}`` (an incident from before they were kept): none."""
    data = json.loads(text or "{}")
    return Tiers(
        general=tuple(data.get("general") or ()),
        general_min_severity=data.get("general_min_severity") or "sev4",
        incident=data.get("incident"),
        stakeholders=tuple(data.get("stakeholders") or ()),
        stakeholder_min_severity=data.get("stakeholder_min_severity") or "sev1",
    )


@immutable
class Decision:
    """One incident's worth of alerts from a webhook, and what the policy decided for it."""

    key: str
    severity: Severity
    title: str
    fingerprints: tuple[str, ...]
    route: str = "default"
    team: str | None = None
    service: str | None = None
    reopen_window_s: float = DEFAULT_REOPEN_WINDOW_S
    tiers: Tiers = field(default_factory=Tiers)
    # role -> names of the people holding it at evaluation time (empty: left for a human)
    roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # follow-up, postmortem and status-update policies as plain data for later stages
    policies: Mapping[str, Any] = field(default_factory=dict)
    # what could not be rendered (a template that raised), one short line each, e.g.
    # "title: ZeroDivisionError: division by zero"; the decision used its fallback instead
    render_errors: tuple[str, ...] = ()
    # a drill's incident (core/drills.py): stored with the flag, kept apart in the metrics
    drill: bool = False


def drill_decision(decision: Decision, labels: Mapping[str, str]) -> Decision:
    """The decision for a drill's alert (``labels`` carry ``drill="true"``): marked as a drill,
    ``DRILL:`` first in its title, the severity the drill names, the stakeholders left out unless
    the drill asks for them. Anything else: unchanged."""
    if not drills.is_drill(labels):
        return decision
    tiers = decision.tiers
    if tiers.stakeholders and not drills.wants_stakeholders(labels):
        tiers = replace(tiers, stakeholders=())
    severity = drills.severity_of(labels) or decision.severity
    return replace(
        decision,
        drill=True,
        title=drills.title(decision.title),
        severity=severity,  # type: ignore[arg-type]  # drills.SEVERITIES are the Severity values
        tiers=tiers,
    )


class Policy(Protocol):
    def evaluate(self, payload: WebhookPayload, now_ns: int) -> list[Decision]:
        """Split a webhook's alerts into incidents and decide for each. Pure."""
        ...


_SEVERITY_LABEL: dict[str, Severity] = {
    "critical": "sev1",
    "error": "sev2",
    "high": "sev2",
    "warning": "sev3",
}


def severity_from_label(value: str | None) -> Severity:
    return _SEVERITY_LABEL.get((value or "").strip().lower(), "sev4")


@dataclass(frozen=True)
class BuiltinPolicy:
    """The default without rule files: one incident per Alertmanager group (``groupKey``)."""

    reopen_window_s: float = DEFAULT_REOPEN_WINDOW_S
    general: tuple[str, ...] = ("console",)

    def evaluate(self, payload: WebhookPayload, now_ns: int) -> list[Decision]:
        if not payload.alerts:
            return []
        labels = payload.common_labels
        severities = [severity_from_label(a.labels.get("severity")) for a in payload.alerts]
        severity = min(severities, key=severity_rank)
        first = payload.alerts[0].labels
        title = (
            payload.common_annotations.get("summary")
            or labels.get("alertname")
            or first.get("alertname")
            or payload.group_key
        )
        return [
            drill_decision(
                Decision(
                    key=payload.group_key,
                    severity=severity,
                    title=title,
                    fingerprints=tuple(a.fingerprint for a in payload.alerts),
                    team=labels.get("team"),
                    service=labels.get("service"),
                    reopen_window_s=self.reopen_window_s,
                    tiers=Tiers(general=self.general),
                ),
                first,
            )
        ]
