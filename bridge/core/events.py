"""The one vocabulary of events: what the timeline records, what notifications announce, the
tiers they go to, and the mapping from the first to the second.

The state machine writes timeline events (``TimelineKind``); targets, templates and the outbox
speak of notification events (``EventKind``). ``event_kind`` is the only translation between
them: the planner, the templates and the messages all use it, so a change of status can never
be one event for the planner and another for a template.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

# What the incident state machine (and, later, people) write on the timeline.
TimelineKind = Literal[
    "opened",
    "reopened",
    "alert_fired",
    "alert_resolved",
    "alert_time_clamped",
    "severity_changed",
    "truncated_alerts",
    "rule_render_failed",
    "status_changed",
    "postmortem_published",
    # people's actions (core/actions.py)
    "acknowledged",  # acknowledged after the alerts had already mitigated it
    "role_changed",
    "note",
    "decision",
    "action",
    "status_update",
    "dismissed",  # closed as a false alarm or a test, with the reason (no postmortem)
    # the scheduler (reminders and escalation)
    "reminder",
    "escalated",
    "escalation_step",  # a level of an escalation policy (core/escalation.py)
    # the indexer: similar past incidents, linked when an incident opens (core/similar.py)
    "similar_incidents",
    # after the incident: the follow-up phase (core/followup.py) and the postmortem
    "followup_opened",  # the checklist and the findings, when the incident is mitigated
    "followup_item",  # an item added, checked off, waived or opened again
    "validated",  # the stabilization window and the PromQL checks, with their results
    "ticket_requested",  # an item becomes a ticket in the route's ticket target (Jira, GitHub)
    "postmortem_saved",  # a version of the postmortem's narrative saved
    # what the reconciler learned from Alertmanager's API (core/reconcile.py), and the silence
    # made on acknowledge (bridge/silences.py)
    "alert_silenced",  # an alert of the incident is silenced: by which silence, who, until when
    "alert_inhibited",  # an alert of the incident is inhibited: by which alert
    "alert_unsuppressed",  # silenced or inhibited before, active again
    "silence",  # a silence made (or expired) in Alertmanager for the incident, with its id
    # incidents people start and join (core/declare.py)
    "linked",  # an Alertmanager group linked into the incident: its webhooks update it
    "merged",  # closed as a duplicate of another incident, with a pointer to it
    "merged_in",  # a duplicate merged into this incident: its entries named by id, not copied
    # the public status page (core/status.py)
    "components_changed",  # components linked to or unlinked from the incident by hand
]
TIMELINE_KINDS: tuple[TimelineKind, ...] = get_args(TimelineKind)

# What a notification is about: the milestones, and "timeline" for everything else.
EventKind = Literal[
    "opened",
    "acknowledged",
    "severity_changed",
    "mitigated",
    "resolved",
    "closed",
    "reopened",
    "postmortem_published",
    "update",  # the liaison's status update: general, stakeholders and the dedicated channel
    "reminder",  # a status update is due: the dedicated channel, to the liaison
    "escalated",  # not acknowledged in time: the stakeholders, whatever the severity
    "ticket",  # a follow-up item to open as a ticket: the ticket target only
    "timeline",
]
EVENTS: tuple[EventKind, ...] = get_args(EventKind)

# Notification tiers: the general incident channel, the incident's dedicated channel, and the
# stakeholders alerted directly; "tickets" is the route's ticket target (follow-up items), one
# more destination of the same outbox rather than a tier people are notified in.
Tier = Literal["general", "incident", "stakeholders", "tickets"]
TIERS: tuple[Tier, ...] = get_args(Tier)

# A status change announces its new status; back to "triggered" is a reopen.
_BY_STATUS: dict[str, EventKind] = {
    "triggered": "reopened",
    "acknowledged": "acknowledged",
    "mitigated": "mitigated",
    "resolved": "resolved",
    "closed": "closed",
}
_SAME_NAME: dict[str, EventKind] = {e: e for e in EVENTS if e != "timeline"}
_SAME_NAME["status_update"] = "update"
_SAME_NAME["ticket_requested"] = "ticket"
# A dismissal closes the incident: the channels hear of it as a close, whose text says why.
_SAME_NAME["dismissed"] = "closed"
# A level of an escalation policy is an escalation to whom it reaches (its own targets).
_SAME_NAME["escalation_step"] = "escalated"
# So does a merge, for the duplicate: its text names the incident it was merged into.
_SAME_NAME["merged"] = "closed"


def event_kind(kind: str, data: Mapping[str, Any] | None = None) -> EventKind:
    """The notification event of a timeline event: a milestone keeps its name, a status change
    names its new status (``triggered`` again is ``reopened``), the rest is ``timeline``."""
    if kind == "status_changed":
        return _BY_STATUS.get(str((data or {}).get("to")), "timeline")
    return _SAME_NAME.get(kind, "timeline")
