"""Reminders and escalation as a pure function: (an incident, its last status update, the
policy of its route and severity, now) -> what is due.

The scheduler (``store/reminders.fire_due``, ticked by the service) asks this for every incident
being worked and records each item once per (incident, kind, due time): the due times are
computed from stored values only, so every tick, every process and every restart computes the
same ones.

- **reminder**: a status update is due, for the liaison, in the incident's dedicated channel.
  The first is due ``update_every`` after the incident opened; after a status update, at the
  ``next_update_at`` it gave, else ``update_every`` after it. While no update comes, another
  is due every ``update_every`` after that. Only the latest due time that has passed is
  returned: after a long stop the liaison gets one reminder, not one per missed period.
  Reminders run while the incident is ``triggered`` or ``acknowledged``; a ``mitigated``
  incident gets none (its impact stopped and the stakeholders heard of that milestone), and a
  reopened one gets them again at once if an update is overdue.
- **escalated**: the incident is still ``triggered`` and was never acknowledged
  ``acknowledge_within`` after it opened. Once per incident: a reopen (back to ``triggered``
  from ``mitigated``) does not escalate again, and an incident whose alerts resolved before
  anyone acknowledged it (``mitigated``) is not escalated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Literal

from bridge.core.incidents import ACTIVE_STATUSES, Event, Incident, Status
from bridge.core.timeutil import NS, format_ns
from bridge.core.values import immutable

ReminderKind = Literal["reminder", "escalated"]
# Who the timeline names as the actor of what the scheduler records.
ACTOR = "incident-bridge"
# The statuses in which anything can be due: the incidents the scheduler looks at.
SCHEDULED_STATUSES: tuple[Status, ...] = ACTIVE_STATUSES


@immutable
class ReminderPolicy:
    """What the rules say for one route and severity. None: no reminders / no escalation."""

    update_every_s: float | None = None
    acknowledge_within_s: float | None = None
    # On escalation, hand the commander role to the next member of the route's commander
    # rotation (after whoever holds it).
    escalate_to_next_commander: bool = False


NO_REMINDERS = ReminderPolicy()
# The defaults, for the built-in policy and for whatever a route's rules do not say
# (docs/rules.md).
DEFAULT_REMINDERS: Mapping[str, ReminderPolicy] = MappingProxyType(
    {
        "sev1": ReminderPolicy(update_every_s=1800.0, acknowledge_within_s=300.0),
        "sev2": ReminderPolicy(update_every_s=3600.0, acknowledge_within_s=900.0),
        "sev3": ReminderPolicy(update_every_s=14400.0),
        "sev4": NO_REMINDERS,
    }
)


def default_policy(severity: str) -> ReminderPolicy:
    return DEFAULT_REMINDERS.get(severity, NO_REMINDERS)


@immutable
class LastUpdate:
    """The incident's newest status update (timeline kind ``status_update``)."""

    at: int
    next_update_at: int | None = None


@immutable
class Due:
    kind: ReminderKind
    due_at: int


def due(
    incident: Incident,
    policy: ReminderPolicy,
    now: int,
    *,
    last_update: LastUpdate | None = None,
    escalated: bool = False,
) -> tuple[Due, ...]:
    """What is due for ``incident`` at ``now``, oldest first. ``escalated``: the incident was
    escalated already (escalation happens once per incident)."""
    out: list[Due] = []
    every = policy.update_every_s
    if every is not None and every > 0 and incident.status in SCHEDULED_STATUSES:
        step = int(every * NS)
        if last_update is None:
            first = incident.opened_at + step
        elif last_update.next_update_at is not None:
            first = last_update.next_update_at
        else:
            first = last_update.at + step
        if now >= first:
            out.append(Due("reminder", first + (now - first) // step * step))
    within = policy.acknowledge_within_s
    if (
        within is not None
        and not escalated
        and incident.status == "triggered"
        and incident.acknowledged_at is None
    ):
        at = incident.opened_at + int(within * NS)
        if now >= at:
            out.append(Due("escalated", at))
    return tuple(sorted(out, key=lambda d: d.due_at))


def duration_text(seconds: float) -> str:
    """``45 s``, ``31 min``, ``2 h``, ``1 h 30 min``: as the message templates write them."""
    s = int(seconds)
    if s < 60:
        return f"{max(s, 0)} s"
    minutes = (s + 30) // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def holders(incident: Incident, role: str) -> list[str]:
    names: Sequence[str] = json.loads(incident.roles or "{}").get(role) or []
    return list(names)


def reminder_event(
    incident: Incident, item: Due, now: int, last_update: LastUpdate | None
) -> Event:
    """The timeline entry of a reminder: for the liaison, with how long since the last update.
    Its data (``due_at``, ``liaison``) is what the message templates read."""
    liaison = holders(incident, "liaison")
    who = f"liaison {', '.join(liaison)}" if liaison else "no liaison assigned"
    if last_update is None:
        since = f"no update yet; opened {duration_text((now - incident.opened_at) / NS)} ago"
    else:
        since = f"last update {duration_text((now - last_update.at) / NS)} ago"
    return Event(
        "reminder",
        f"Status update due: {who} ({since})",
        {"due_at": format_ns(item.due_at), "liaison": liaison},
        ACTOR,
    )


def escalation_event(
    incident: Incident,
    policy: ReminderPolicy,
    now: int,
    *,
    stakeholders: bool,
    commander: str | None = None,
) -> Event:
    """The timeline entry of an escalation. ``stakeholders``: the incident has a stakeholders
    tier to alert; ``commander``: who the commander role is handed to (the hand-over itself is
    a ``role_changed`` entry of its own). Its data (``after_s``, ``target_s``) is what the
    message templates read."""
    target_s = int(policy.acknowledge_within_s or 0)
    after_s = max(0, (now - incident.opened_at) // NS)
    whom = ["the stakeholders"] if stakeholders else []
    if commander is not None:
        whom.append(f"{commander}, the next commander")
    missed = f"Not acknowledged within {duration_text(target_s)}"
    text = (
        f"{missed}: escalated to {' and to '.join(whom)}"
        if whom
        else f"{missed} (no stakeholders to escalate to)"
    )
    data: dict[str, object] = {"after_s": after_s, "target_s": target_s}
    if commander is not None:
        data["commander"] = commander
    return Event("escalated", text, data, ACTOR)
