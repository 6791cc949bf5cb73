"""Which notifications an incident change calls for. Pure: the store writes the result into the
outbox in the same transaction as the change itself.

Tiers: ``general`` hears of the milestones (and the liaison's updates) of every incident at or
above its threshold; the ``incident`` target (the dedicated channel) hears of every timeline
event, reminders included; ``stakeholders`` are alerted directly once the severity reaches their
threshold or the incident is escalated, and then hear of its milestones and updates until it
ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from bridge.core.escalation import STEP_KIND, step_targets
from bridge.core.events import EventKind, Tier, event_kind
from bridge.core.incidents import Event, Incident
from bridge.core.policy import Tiers, severity_rank
from bridge.core.values import immutable


@immutable
class OutboxEntry:
    target: str
    tier: Tier
    event: EventKind
    event_id: int
    idempotency_key: str


def _qualifies(severity: str, threshold: str) -> bool:
    return severity_rank(severity) <= severity_rank(threshold)


def plan_notifications(
    *,
    before: Incident | None,
    after: Incident,
    events: Sequence[tuple[int, Event]],
    tiers: Tiers,
    ticket_target: str | None = None,
) -> list[OutboxEntry]:
    """Outbox entries for ``events`` (with their timeline ids) of one incident change.
    ``ticket_target`` receives the ``ticket`` events (follow-up items to open as tickets), and
    nothing else does."""
    assert after.id is not None
    general_threshold = tiers.general_min_severity
    stakeholder_threshold = tiers.stakeholder_min_severity
    # Stakeholders were alerted already if the incident qualified before this change.
    alerted = before is not None and _qualifies(before.severity, stakeholder_threshold)
    out: list[OutboxEntry] = []

    def add(target: str, tier: Tier, kind: EventKind, event_id: int) -> None:
        key = f"incident-{after.id}/{tier}/{target}/{kind}/{event_id}"
        out.append(OutboxEntry(target, tier, kind, event_id, key))

    for event_id, event in events:
        kind = event_kind(event.kind, event.data)
        if kind == "ticket":
            if ticket_target:
                add(ticket_target, "tickets", kind, event_id)
            continue
        if tiers.incident:
            add(tiers.incident, "incident", kind, event_id)
        if kind in ("timeline", "reminder"):
            continue
        if event.kind == STEP_KIND:
            # A level of an escalation policy: only the targets it names (a pager, the
            # people's own targets), not the tiers; the dedicated channel heard of it above.
            for target in dict.fromkeys(step_targets(event.data)):
                if target != tiers.incident:
                    add(target, "stakeholders", kind, event_id)
            continue
        if kind == "escalated":
            # Not acknowledged in time: the stakeholders hear of it whatever the severity, and
            # of the incident's milestones from then on.
            alerted = True
            for target in tiers.stakeholders:
                add(target, "stakeholders", kind, event_id)
            continue
        if _qualifies(after.severity, general_threshold):
            for target in tiers.general:
                add(target, "general", kind, event_id)
        if not tiers.stakeholders:
            continue
        if alerted:
            for target in tiers.stakeholders:
                add(target, "stakeholders", kind, event_id)
        elif kind in ("opened", "severity_changed", "reopened") and _qualifies(
            after.severity, stakeholder_threshold
        ):
            # The first stakeholder alert: on open, or when escalated into their threshold.
            alerted = True
            for target in tiers.stakeholders:
                add(target, "stakeholders", kind, event_id)
    return out
