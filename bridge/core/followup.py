"""The follow-up phase as pure functions: what the rules ask for once an incident is mitigated
(the checklist, the stabilization window, the PromQL checks, where tickets go), the checklist a
follow-up opens with, and people's commands on its items.

The service opens a follow-up for every incident that reaches ``mitigated`` (by its alerts or by
hand) and records its validation when the window ends (``store/followup.py``); people add, check
off, waive and reopen items through the API and CLI. No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import field, replace
from types import MappingProxyType
from typing import Any, Literal, get_args

from bridge.core.actions import MAX_TEXT, Refusal
from bridge.core.checks import Check, CheckResult
from bridge.core.incidents import Event, Incident
from bridge.core.timeutil import NS, format_ns
from bridge.core.values import immutable

# An item's kind: ``check`` a plain item someone checks off; ``validate`` the bridge's own
# validation (quiet for the window, the PromQL checks pass), checked off by the bridge;
# ``review`` did monitoring, alerts and runbooks work, with the findings the bridge saw;
# ``action`` a permanent fix, which becomes a ticket in the route's ticket target.
ItemKind = Literal["check", "validate", "review", "action"]
ITEM_KINDS: tuple[ItemKind, ...] = get_args(ItemKind)
ItemState = Literal["open", "done", "waived"]
ITEM_STATES: tuple[ItemState, ...] = get_args(ItemState)

DEFAULT_STABILIZATION_S = 1800.0
# What stands on the timeline as the actor of what the bridge does by itself.
ACTOR = "incident-bridge"


@immutable
class ChecklistItem:
    """One item of a route's checklist, as the rules give it."""

    text: str
    kind: ItemKind = "check"


# The checklist without rules, or for a route whose rules do not give one.
DEFAULT_CHECKLIST: tuple[ChecklistItem, ...] = (
    ChecklistItem("Create follow-up tickets for permanent fixes", "check"),
    ChecklistItem("Validate the production environment after recovery", "validate"),
    ChecklistItem("Review whether monitoring, alerts and runbooks worked", "review"),
)
VALIDATE_TEXT = DEFAULT_CHECKLIST[1].text
REVIEW_TEXT = DEFAULT_CHECKLIST[2].text


@immutable
class FollowUpPolicy:
    """A route's follow-up policy, after inheritance and defaults."""

    checklist: tuple[ChecklistItem, ...] = DEFAULT_CHECKLIST
    ticket_target: str | None = None
    stabilization_s: float = DEFAULT_STABILIZATION_S
    checks: tuple[Check, ...] = ()


DEFAULT_POLICY = FollowUpPolicy()
# Postmortem policy by severity without rules (the rules' defaults are the same, docs/rules.md).
DEFAULT_POSTMORTEM: Mapping[str, str] = MappingProxyType(
    {"sev1": "required", "sev2": "required", "sev3": "optional", "sev4": "none"}
)
NO_POLICIES: Mapping[str, FollowUpPolicy] = MappingProxyType({})


def opening_checklist(policy: FollowUpPolicy) -> tuple[ChecklistItem, ...]:
    """The items a follow-up opens with: the route's checklist, plus the bridge's validation
    and review items when the checklist has none (the validation checks itself off, the review
    carries the findings, so every follow-up has both)."""
    items = list(policy.checklist)
    kinds = {i.kind for i in items}
    if "validate" not in kinds:
        items.append(ChecklistItem(VALIDATE_TEXT, "validate"))
    if "review" not in kinds:
        items.append(ChecklistItem(REVIEW_TEXT, "review"))
    return tuple(items)


# --- the follow-up's items and people's commands on them -------------------------------------


@immutable
class Item:
    """A checklist item as stored. ``id`` is None for an item not written yet; ``detail`` is
    JSON (the review's findings, the validation's results)."""

    id: int | None
    kind: ItemKind
    text: str
    state: ItemState = "open"
    owner: str | None = None
    reason: str | None = None
    detail: str = "{}"


@immutable
class FollowUp:
    """An incident's follow-up as the store holds it (for a command or a validation)."""

    incident_id: int
    ticket_target: str | None
    items: tuple[Item, ...] = ()


@immutable
class AddItem:
    """Add an item: a plain one (``check``) or a permanent fix (``action``), which becomes a
    ticket when the route has a ticket target."""

    actor: str
    text: str
    kind: Literal["check", "action"] = "check"
    owner: str | None = None


@immutable
class SetItem:
    """Check an item off (``done``), waive it (with a reason) or open it again."""

    actor: str
    item: int
    to: ItemState
    reason: str = ""


FollowUpCommand = AddItem | SetItem


@immutable
class ItemOutcome:
    """The incident after the command (resolved when the checklist is done), the timeline
    events, and the items to write (``id`` None: new, given ``first_id`` onwards)."""

    incident: Incident
    events: tuple[Event, ...] = ()
    items: tuple[Item, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.events)


def _verb(state: ItemState) -> str:
    return {"done": "done", "waived": "waived", "open": "opened again"}[state]


def _item_event(item_id: int, item: Item, action: str, actor: str, reason: str = "") -> Event:
    text = f"Follow-up item {action}: {item.text}"
    if reason:
        text += f" ({reason})"
    data: dict[str, Any] = {"item": item_id, "action": action, "kind": item.kind, "text": item.text}
    if item.owner:
        data["owner"] = item.owner
    if reason:
        data["reason"] = reason
    return Event("followup_item", text, data, actor)


def ticket_event(item_id: int, item: Item, actor: str) -> Event:
    """The event that opens a ticket for ``item`` in the route's ticket target."""
    data: dict[str, Any] = {"item": item_id, "text": item.text, "owner": item.owner}
    return Event("ticket_requested", f"Ticket requested: {item.text}", data, actor)


def decide_item(
    incident: Incident,
    followup: FollowUp | None,
    command: FollowUpCommand,
    now: int,
    first_id: int,
) -> ItemOutcome | Refusal:
    """Apply a person's command to the follow-up's checklist. ``first_id``: the id the store
    gives the next new item. Checking off or waiving the last open item resolves a mitigated
    incident (the bridge does, on the timeline)."""
    if followup is None:
        moment = (
            "is not mitigated yet"
            if incident.status in ("triggered", "acknowledged")
            else ("has no follow-up (it was resolved without one)")
        )
        return Refusal(409, f"incident {incident.id} {moment}: its follow-up opens when mitigated")
    if isinstance(command, AddItem):
        text = command.text.strip()
        if not text:
            return Refusal(400, "must not be empty", "text")
        if len(command.text) > MAX_TEXT:
            return Refusal(400, f"at most {MAX_TEXT} characters", "text")
        item = Item(None, command.kind, text, owner=command.owner)
        events = [_item_event(first_id, item, "added", command.actor)]
        if item.kind == "action" and followup.ticket_target:
            events.append(ticket_event(first_id, item, command.actor))
        return ItemOutcome(incident, tuple(events), (item,))
    found = next((i for i in followup.items if i.id == command.item), None)
    if found is None:
        return Refusal(404, f"no follow-up item {command.item} on incident {incident.id}", "item")
    reason = command.reason.strip()
    if len(command.reason) > MAX_TEXT:
        return Refusal(400, f"at most {MAX_TEXT} characters", "reason")
    if command.to == "waived" and not reason:
        return Refusal(400, "a waived item needs a reason", "reason")
    if found.state == command.to:
        return ItemOutcome(incident)  # a retried check-off changes nothing
    changed = replace(found, state=command.to, reason=reason or None)
    events = [_item_event(command.item, found, _verb(command.to), command.actor, reason)]
    items = tuple(changed if i.id == found.id else i for i in followup.items)
    incident, done = resolve_when_done(incident, items, now)
    return ItemOutcome(incident, (*events, *done), (changed,))


def blocks(item: Item) -> bool:
    """Whether ``item`` keeps the follow-up from being done."""
    return item.state == "open" and item.kind != "action"


def resolve_when_done(
    incident: Incident, items: Sequence[Item], now: int
) -> tuple[Incident, tuple[Event, ...]]:
    """A mitigated incident whose checklist is done (every item done or waived) is resolved.
    Action items do not hold it: they are permanent fixes, tracked in their tickets and the
    postmortem beyond the incident (the checklist's "create follow-up tickets" is the gate)."""
    if incident.status != "mitigated" or any(blocks(i) for i in items):
        return incident, ()
    resolved = replace(incident, status="resolved", resolved_at=now)
    event = Event(
        "status_changed",
        "Resolved: the follow-up checklist is done",
        {"from": "mitigated", "to": "resolved", "reason": "the follow-up checklist is done"},
        ACTOR,
    )
    return resolved, (event,)


# --- opening the follow-up: the checklist and the findings ----------------------------------

# Detection delay worth a finding: the first alert started this long before the incident opened.
DETECTION_DELAY_S = 600.0
# A recurrence: the same alertname and service opened other incidents in this many days.
RECURRENCE_DAYS = 30
MAX_FINDING_LINKS = 10


@immutable
class PastIncident:
    id: int
    title: str
    opened_at: int


@immutable
class Evidence:
    """What the store found for an incident when its follow-up opens."""

    incident: Incident
    # each alert's labels and annotations (all of them; bounded by the store)
    alerts: tuple[tuple[Mapping[str, str], Mapping[str, str]], ...] = ()
    # alertname, service -> other incidents opened with them in the last RECURRENCE_DAYS days
    recurrences: Mapping[str, tuple[PastIncident, ...]] = field(default_factory=dict)
    acknowledge_within_s: float | None = None
    # (target, last error) of the incident's dead-lettered notifications
    dead: tuple[tuple[str, str], ...] = ()
    reopened: int = 0
    # the incident's action items recorded while it was worked: (text, owner), corrections applied
    actions: tuple[tuple[str, str | None], ...] = ()


@immutable
class Finding:
    """Something the review should look at, with its evidence (links, values)."""

    kind: str
    text: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


def _minutes(seconds: float) -> str:
    # Under a minute in seconds: a 30 s window (or a 20 s late acknowledgement) is not "0 min".
    if seconds < 59.5:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def findings(evidence: Evidence, base_url: str | None = None) -> tuple[Finding, ...]:
    """The findings the bridge sees itself: alerts without a runbook, recurrences, a late
    acknowledgement, dead-lettered notifications, a reopened incident, a late detection."""
    inc = evidence.incident
    out: list[Finding] = []
    no_runbook = sorted(
        {
            labels.get("alertname", "?")
            for labels, notes in evidence.alerts
            if not notes.get("runbook_url")
        }
    )
    if no_runbook:
        out.append(
            Finding(
                "no_runbook",
                f"No runbook_url on {len(no_runbook)} alert(s): {', '.join(no_runbook[:MAX_FINDING_LINKS])}",
                {"alertnames": no_runbook[:MAX_FINDING_LINKS]},
            )
        )
    for key, past in sorted(evidence.recurrences.items()):
        if not past:
            continue
        links = [
            {
                "id": p.id,
                "title": p.title,
                "opened_at": format_ns(p.opened_at),
                **({"url": f"{base_url}/incidents/{p.id}"} if base_url else {}),
            }
            for p in past[:MAX_FINDING_LINKS]
        ]
        ids = ", ".join(f"#{p.id}" for p in past[:MAX_FINDING_LINKS])
        out.append(
            Finding(
                "recurrence",
                f"{key} opened {len(past)} other incident(s) in the last {RECURRENCE_DAYS} days: {ids}",
                {"key": key, "count": len(past), "incidents": links},
            )
        )
    target = evidence.acknowledge_within_s
    if target is not None:
        acked = inc.acknowledged_at
        if acked is None:
            out.append(
                Finding(
                    "late_acknowledgement",
                    f"Never acknowledged (the {inc.severity} target is {_minutes(target)})",
                    {"target_s": target, "acknowledged": False},
                )
            )
        elif (late_s := (acked - inc.opened_at) / NS) > target:
            out.append(
                Finding(
                    "late_acknowledgement",
                    f"Acknowledged after {_minutes(late_s)}, later than the {inc.severity} "
                    f"target of {_minutes(target)}",
                    {"target_s": target, "after_s": late_s},
                )
            )
    for target_name, error in evidence.dead[:MAX_FINDING_LINKS]:
        out.append(
            Finding(
                "dead_letter",
                f"A notification to {target_name} was dead-lettered: {error}",
                {"target": target_name, "error": error},
            )
        )
    if evidence.reopened:
        out.append(
            Finding(
                "reopened",
                f"The incident was reopened {evidence.reopened} time(s)",
                {"count": evidence.reopened},
            )
        )
    delay_s = (inc.opened_at - inc.started_at) / NS
    if delay_s > DETECTION_DELAY_S:
        out.append(
            Finding(
                "detection_delay",
                f"Detected {_minutes(delay_s)} after the first alert started (threshold "
                f"{_minutes(DETECTION_DELAY_S)})",
                {"delay_s": delay_s, "threshold_s": DETECTION_DELAY_S},
            )
        )
    return tuple(out)


@immutable
class Opening:
    """A follow-up as it opens: its items (ids from ``first_id``) and timeline events."""

    items: tuple[Item, ...]
    events: tuple[Event, ...]
    stabilize_until: int


def open_followup(
    evidence: Evidence,
    policy: FollowUpPolicy,
    now: int,
    first_id: int,
    base_url: str | None = None,
) -> Opening:
    """The follow-up of a newly mitigated incident: the route's checklist (the validation and
    review items always), the findings on the review item, the action items recorded while the
    incident was worked as items of their own (tickets, when the route has a ticket target)."""
    found = findings(evidence, base_url)
    items: list[Item] = []
    for entry in opening_checklist(policy):
        detail = "{}"
        if entry.kind == "review":
            detail = json.dumps(
                {
                    "findings": [
                        {"kind": f.kind, "text": f.text, "evidence": dict(f.evidence)}
                        for f in found
                    ]
                }
            )
        elif entry.kind == "validate":
            detail = json.dumps(
                {
                    "stabilization_s": policy.stabilization_s,
                    "checks": [
                        {"name": c.name, "expr": c.expr, "expect": c.expect} for c in policy.checks
                    ],
                }
            )
        items.append(Item(None, entry.kind, entry.text, detail=detail))
    for text, owner in evidence.actions:
        items.append(Item(None, "action", text, owner=owner))
    window = f"{_minutes(policy.stabilization_s)}" if policy.stabilization_s else "no window"
    summary = (
        f"Follow-up opened: {len(items)} item(s), stabilization {window}"
        + (f", {len(policy.checks)} PromQL check(s)" if policy.checks else "")
        + (f", {len(found)} finding(s)" if found else "")
    )
    events = [
        Event(
            "followup_opened",
            summary,
            {
                "items": [
                    {"item": first_id + n, "kind": i.kind, "text": i.text}
                    for n, i in enumerate(items)
                ],
                "findings": [{"kind": f.kind, "text": f.text} for f in found],
                "stabilize_until": format_ns(now + int(policy.stabilization_s * NS)),
                "ticket_target": policy.ticket_target,
            },
            ACTOR,
        )
    ]
    if policy.ticket_target:
        for n, item in enumerate(items):
            if item.kind == "action":
                events.append(ticket_event(first_id + n, item, ACTOR))
    return Opening(tuple(items), tuple(events), now + int(policy.stabilization_s * NS))


# --- validation at the end of the stabilization window ------------------------------------


def validate(
    incident: Incident,
    followup: FollowUp,
    *,
    quiet: bool,
    window_s: float,
    checks: Sequence[CheckResult],
    now: int,
) -> ItemOutcome:
    """Record the validation: the validate item is done when the incident stayed quiet for the
    window and every check passed, and stays open with the reasons when not; the incident is
    resolved when that completes the checklist."""
    reasons: list[str] = []
    if not quiet:
        reasons.append(f"an alert fired again within the {_minutes(window_s)} window")
    for c in checks:
        if not c.passed:
            reasons.append(f"check {c.name}: {c.error or c.reason}")
    passed = not reasons
    quiet_text = f"quiet for {_minutes(window_s)}" if window_s else "no stabilization window"
    if passed:
        text = f"Validation passed: {quiet_text}" + (
            f", {len(checks)} check(s) passed" if checks else ""
        )
    else:
        text = "Validation failed: " + "; ".join(reasons)
    data: dict[str, Any] = {
        "passed": passed,
        "quiet": quiet,
        "window_s": window_s,
        "checks": [c.record() for c in checks],
    }
    if reasons:
        data["reasons"] = reasons
    events: list[Event] = [Event("validated", text, data, ACTOR)]
    item = next((i for i in followup.items if i.kind == "validate"), None)
    changed_items: list[Item] = []
    items = list(followup.items)
    if item is not None:
        detail = {**json.loads(item.detail or "{}"), "validation": data}
        new = replace(
            item,
            state="done" if passed and item.state == "open" else item.state,
            detail=json.dumps(detail),
        )
        changed_items.append(new)
        items = [new if i.id == item.id else i for i in items]
        if new.state != item.state:
            assert item.id is not None
            events.append(_item_event(item.id, item, "done", ACTOR))
    incident, done = resolve_when_done(incident, items, now)
    return ItemOutcome(incident, (*events, *done), tuple(changed_items))
