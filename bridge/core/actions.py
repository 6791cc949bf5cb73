"""People's actions on an incident, as pure commands: (incident, command, now) -> the changed
incident with its timeline events, or a refusal that says why and what is allowed.

The API, the CLI (through the API), the web page and chat commands all send these commands; the
store applies the outcome in one transaction with its outbox rows (``store/actions.py``). No I/O
here: ``decide`` is deterministic given its inputs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal, get_args

from bridge.core import jsontext
from bridge.core.incidents import Event, Incident
from bridge.core.policy import ROLES, SEVERITIES, severity_rank
from bridge.core.status import link_change_text
from bridge.core.timeutil import NS, format_ns
from bridge.core.values import immutable

# The longest text a note, decision, action item, status update or reason may have.
MAX_TEXT = 10_000
# Roles one person holds at a time; ``responders`` are many.
SINGLE_ROLES = ("commander", "scribe", "liaison")
ROLE_NAMES = {
    "commander": "commander",
    "scribe": "scribe",
    "liaison": "liaison",
    "responders": "responder",
}

Move = Literal["acknowledge", "mitigate", "resolve", "close"]
MOVES: tuple[Move, ...] = get_args(Move)
EntryKind = Literal["note", "decision", "action"]
ENTRY_KINDS: tuple[EntryKind, ...] = get_args(EntryKind)
# Entries a correction may refer to: what people wrote, not what the bridge recorded.
CORRECTABLE = (*ENTRY_KINDS, "status_update")


@immutable
class Transition:
    """acknowledge, mitigate, resolve or close, by hand."""

    actor: str
    move: Move
    reason: str = ""


@immutable
class AssignRole:
    """Give ``person`` the role: for commander, scribe and liaison a hand-over from whoever
    held it; responders are added."""

    actor: str
    role: str
    person: str


@immutable
class ReleaseRole:
    """``person`` (or, for a one-person role, whoever holds it) gives the role up."""

    actor: str
    role: str
    person: str | None = None


@immutable
class AddEntry:
    """A note, a decision or an action item (with an optional owner); ``corrects`` names an
    earlier entry of the same kind that this one corrects."""

    actor: str
    kind: EntryKind
    text: str
    owner: str | None = None
    corrects: int | None = None


@immutable
class PostUpdate:
    """The liaison's status update for stakeholders, with the time of the next one."""

    actor: str
    text: str
    next_update_at: int | None = None
    next_update_in_s: int | None = None  # or: this long after the update
    # Shown on the public status page (docs/status-page.md): only when marked public, and only
    # the public text (the update's text when none is given) and the public title.
    public: bool = False
    public_text: str | None = None
    public_title: str | None = None


@immutable
class LinkComponents:
    """Components of the status page linked to or unlinked from the incident by hand (ids the
    caller checked against the rules)."""

    actor: str
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


@immutable
class ChangeSeverity:
    actor: str
    severity: str
    reason: str


@immutable
class Dismiss:
    """A false alarm or a test: the incident is closed at once, with the reason, without a
    postmortem and without the milestones of real work (no ``mitigated_at``, no
    ``resolved_at``), so that it adds nothing to the times to mitigate and resolve."""

    actor: str
    reason: str


# Where a dismissal may come from: any open status. A resolved incident was worked on to the end;
# it is closed (with its postmortem when the route requires one), not dismissed.
DISMISSIBLE = ("triggered", "acknowledged", "mitigated")

Command = (
    Transition
    | AssignRole
    | ReleaseRole
    | AddEntry
    | PostUpdate
    | ChangeSeverity
    | Dismiss
    | LinkComponents
)


@immutable
class Entry:
    """An earlier timeline entry, as a correction needs it."""

    id: int
    kind: str
    text: str


@immutable
class Guards:
    """What the after-incident phase asks of a status move, as the store found it: a follow-up
    with open items is resolved by hand only with a reason; a route whose postmortem policy is
    ``required`` closes only once the postmortem is published."""

    open_items: int = 0
    postmortem_missing: bool = False
    # The incident was dismissed already: dismissing it again changes nothing.
    dismissed: bool = False


NO_GUARDS = Guards()


@immutable
class Refusal:
    """The command cannot apply: 400 (bad argument), 404 (no such entry), 409 (not now)."""

    status: int
    message: str
    field: str | None = None


@immutable
class Outcome:
    """The incident after the command and what the timeline records; no events: nothing to do
    (a retried acknowledge, a role given to the person who holds it)."""

    incident: Incident
    events: tuple[Event, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.events)


def allowed_moves(incident: Incident) -> tuple[Move, ...]:
    """The status moves a person can make now."""
    status = incident.status
    if status == "triggered":
        return ("acknowledge", "mitigate", "resolve")
    if status == "acknowledged":
        return ("mitigate", "resolve")
    if status == "mitigated":
        return ("resolve",) if incident.acknowledged_at is not None else ("acknowledge", "resolve")
    if status == "resolved":
        return ("close",)
    return ()


def _refuse_move(incident: Incident, move: str) -> Refusal:
    allowed = allowed_moves(incident)
    now = f"allowed now: {', '.join(allowed)}" if allowed else "no status change is allowed now"
    return Refusal(409, f"cannot {move}: the incident is {incident.status}; {now}")


def _text(value: str, field: str, *, required: bool = True) -> Refusal | None:
    if required and not value.strip():
        return Refusal(400, "must not be empty", field)
    if len(value) > MAX_TEXT:
        return Refusal(400, f"at most {MAX_TEXT} characters", field)
    return None


def _with_reason(text: str, reason: str) -> str:
    return f"{text}: {reason}" if reason.strip() else text


def _roles(incident: Incident) -> dict[str, list[str]]:
    return {k: list(v) for k, v in json.loads(incident.roles or "{}").items()}


def _names(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "nobody"


def decide(
    incident: Incident,
    command: Command,
    now: int,
    *,
    corrected: Entry | None = None,
    directory: Mapping[str, Mapping[str, str]] | None = None,
    guards: Guards = NO_GUARDS,
) -> Outcome | Refusal:
    """Apply ``command`` to ``incident`` at ``now``.

    ``corrected`` is the entry an ``AddEntry`` with ``corrects`` refers to (the store looks it
    up; None when it is not on this incident). ``directory`` maps people's names to their chat
    handles and addresses (the rules' rotations), so that a person given a role can be invited
    and mentioned. ``guards``: what the follow-up and the postmortem ask of a status move."""
    if isinstance(command, Transition):
        return _transition(incident, command, now, guards)
    if isinstance(command, AssignRole | ReleaseRole):
        return _role(incident, command, directory or {})
    if isinstance(command, AddEntry):
        return _entry(incident, command, corrected)
    if isinstance(command, PostUpdate):
        return _update(incident, command, now)
    if isinstance(command, Dismiss):
        return _dismiss(incident, command, now, guards)
    if isinstance(command, LinkComponents):
        return _components(incident, command)
    return _severity(incident, command)


def _components(incident: Incident, command: LinkComponents) -> Outcome | Refusal:
    if not command.add and not command.remove:
        return Refusal(400, "give a component to add or remove", "add")
    both = sorted(set(command.add) & set(command.remove))
    if both:
        return Refusal(400, f"both added and removed: {', '.join(both)}", "remove")
    data = {"add": list(command.add), "remove": list(command.remove)}
    text = link_change_text(command.add, command.remove)
    return Outcome(incident, (Event("components_changed", text, data, command.actor),))


def _dismiss(incident: Incident, command: Dismiss, now: int, guards: Guards) -> Outcome | Refusal:
    bad = _text(command.reason, "reason")
    if bad:
        return bad
    status = incident.status
    if status == "closed" and guards.dismissed:
        return Outcome(incident)  # a retry: dismissed already
    if status not in DISMISSIBLE:
        return Refusal(
            409,
            f"cannot dismiss: the incident is {status}; only an open incident "
            f"({', '.join(DISMISSIBLE)}) is dismissed"
            + ("; close it instead" if status == "resolved" else ""),
        )
    data = {"from": status, "to": "closed", "reason": command.reason}
    text = f"Dismissed by {command.actor}: {command.reason}"
    changed = replace(incident, status="closed", closed_at=now)
    return Outcome(changed, (Event("dismissed", text, data, command.actor),))


def _transition(
    incident: Incident, command: Transition, now: int, guards: Guards = NO_GUARDS
) -> Outcome | Refusal:
    bad = _text(command.reason, "reason", required=False)
    if bad:
        return bad
    move, status = command.move, incident.status
    data: dict[str, Any] = {"from": status}
    if command.reason.strip():
        data["reason"] = command.reason
    by = f" by {command.actor}"
    if move == "acknowledge":
        if incident.acknowledged_at is not None and status in ("acknowledged", "mitigated"):
            return Outcome(incident)  # clients retry: a second acknowledge changes nothing
        if status == "mitigated":
            # The alerts resolved before anyone acknowledged: the milestone is still worth
            # having (time to acknowledge), the status stays.
            data["to"] = status
            changed = replace(incident, acknowledged_at=now)
            text = _with_reason(f"Acknowledged{by}", command.reason)
            return Outcome(changed, (Event("acknowledged", text, data, command.actor),))
        if status != "triggered":
            return _refuse_move(incident, move)
        changed = replace(incident, status="acknowledged", acknowledged_at=now)
    elif move == "mitigate":
        if status == "mitigated":
            return Outcome(incident)
        if status not in ("triggered", "acknowledged"):
            return _refuse_move(incident, move)
        changed = replace(incident, status="mitigated", mitigated_at=now)
    elif move == "resolve":
        if status == "resolved":
            return Outcome(incident)
        if status not in ("triggered", "acknowledged", "mitigated"):
            return _refuse_move(incident, move)
        if guards.open_items and not command.reason.strip():
            items = "item is" if guards.open_items == 1 else "items are"
            return Refusal(
                409,
                f"cannot resolve: {guards.open_items} follow-up {items} still open; check them "
                "off or waive them (the incident then resolves by itself), or resolve with a "
                "reason",
                "reason",
            )
        # Resolving passes through mitigation: the incident stopped hurting by then at the latest.
        changed = replace(
            incident, status="resolved", mitigated_at=incident.mitigated_at or now, resolved_at=now
        )
    else:
        if status == "closed":
            return Outcome(incident)
        if status != "resolved":
            return _refuse_move(incident, move)
        if guards.postmortem_missing:
            return Refusal(
                409,
                f"cannot close: a postmortem is required for {incident.severity} incidents of "
                f"route {incident.route!r}; publish it first "
                f"(incident-bridge postmortem publish {incident.id})",
            )
        changed = replace(incident, status="closed", closed_at=now)
    data["to"] = changed.status
    text = _with_reason(f"{changed.status.capitalize()}{by}", command.reason)
    return Outcome(changed, (Event("status_changed", text, data, command.actor),))


def _role(
    incident: Incident,
    command: AssignRole | ReleaseRole,
    directory: Mapping[str, Mapping[str, str]],
) -> Outcome | Refusal:
    role = command.role
    if role not in ROLES:
        return Refusal(400, f"unknown role {role!r}; roles: {', '.join(ROLES)}", "role")
    if incident.status == "closed":
        return Refusal(409, "the incident is closed; its roles can no longer change")
    roles = _roles(incident)
    holders = roles.get(role, [])
    name = ROLE_NAMES[role]
    actor = command.actor
    if isinstance(command, AssignRole):
        person = command.person.strip()
        if not person or len(person) > 200:
            return Refusal(400, "a name of 1 to 200 characters", "person")
        if person in holders and (role == "responders" or holders == [person]):
            return Outcome(incident)
        if role == "responders":
            after, action = [*holders, person], "assign"
            text = f"{person} joined as {name}" + ("" if actor == person else f" (by {actor})")
        else:
            after = [person]
            action = "handover" if holders else "assign"
            if holders:
                text = f"{name.capitalize()} handed over from {_names(holders)} to {person}"
            else:
                text = f"{person} is {name}"
            if actor != person and actor not in holders:
                text += f" (by {actor})"
    else:
        person = (command.person or "").strip()
        if person and person not in holders:
            return Refusal(409, f"{person} does not hold the role {role} ({_names(holders)} do)")
        if not holders:
            return Outcome(incident)
        after = [h for h in holders if h != person] if person else []
        if role in SINGLE_ROLES:
            after = []
        action = "release"
        gone = [h for h in holders if h not in after]
        text = f"{_names(gone)} released the role {name}"
        if role in SINGLE_ROLES:
            text += f"; {name} is unassigned"
        if actor not in gone:
            text += f" (by {actor})"
    if after:
        roles[role] = after
    else:
        roles.pop(role, None)
    people = json.loads(incident.people or "{}")
    for person_name in after:
        handles = directory.get(person_name)
        if handles and person_name not in people:
            people[person_name] = dict(handles)
    changed = replace(
        incident,
        roles=jsontext.dumps(roles) if roles else "{}",
        people=jsontext.dumps(people) if people else "{}",
    )
    data = {"role": role, "from": holders, "to": after, "action": action}
    return Outcome(changed, (Event("role_changed", text, data, actor),))


def _entry(incident: Incident, command: AddEntry, corrected: Entry | None) -> Outcome | Refusal:
    bad = _text(command.text, "text")
    if bad:
        return bad
    data: dict[str, Any] = {"text": command.text}
    owner = (command.owner or "").strip()
    if owner:
        if command.kind != "action":
            return Refusal(400, "only an action item has an owner", "owner")
        data["owner"] = owner
    label = {"note": "Note", "decision": "Decision", "action": "Action item"}[command.kind]
    if command.corrects is not None:
        if corrected is None:
            return Refusal(404, f"entry {command.corrects} is not on this incident's timeline")
        if corrected.kind != command.kind:
            return Refusal(
                400,
                f"entry {corrected.id} is a {corrected.kind}; a correction keeps its kind",
                "corrects",
            )
        data["corrects"] = corrected.id
        label = f"{label} (corrects #{corrected.id})"
    text = f"{label}: {command.text}"
    if owner:
        text += f" (owner: {owner})"
    return Outcome(incident, (Event(command.kind, text, data, command.actor),))


def _update(incident: Incident, command: PostUpdate, now: int) -> Outcome | Refusal:
    bad = _text(command.text, "text")
    if bad:
        return bad
    data: dict[str, Any] = {"text": command.text}
    due = command.next_update_at
    if due is None and command.next_update_in_s is not None:
        due = now + command.next_update_in_s * NS
    if due is not None:
        if due <= now:
            return Refusal(400, "must be in the future", "next_update_at")
        data["next_update_at"] = format_ns(due)
    if command.public:
        public_text = command.public_text if command.public_text is not None else command.text
        bad = _text(public_text, "public_text") or _text(
            command.public_title or "", "public_title", required=False
        )
        if bad:
            return bad
        data["public"] = True
        data["public_text"] = public_text
        if command.public_title:
            data["public_title"] = command.public_title
    elif command.public_text is not None or command.public_title is not None:
        return Refusal(400, "a public text or title needs public: true", "public")
    return Outcome(
        incident,
        (Event("status_update", f"Status update: {command.text}", data, command.actor),),
    )


def _severity(incident: Incident, command: ChangeSeverity) -> Outcome | Refusal:
    if command.severity not in SEVERITIES:
        return Refusal(
            400,
            f"unknown severity {command.severity!r}; one of {', '.join(SEVERITIES)}",
            "severity",
        )
    bad = _text(command.reason, "reason")
    if bad:
        return bad
    if incident.status == "closed":
        return Refusal(409, "the incident is closed; its severity can no longer change")
    before, after = incident.severity, command.severity
    if before == after:
        return Outcome(incident)
    way = "raised" if severity_rank(after) < severity_rank(before) else "lowered"
    text = f"Severity {way} from {before} to {after} by {command.actor}: {command.reason}"
    data = {"from": before, "to": after, "reason": command.reason}
    return Outcome(
        replace(incident, severity=after),
        (Event("severity_changed", text, data, command.actor),),
    )
