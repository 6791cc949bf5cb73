"""Incidents that people start: declared by hand, Alertmanager groups linked into them, and two
incidents merged into one. Pure: the store loads what these need and writes what they return.

A declared incident is an incident like any other once it is open: the rules decide its route,
tiers, roles and policies as they would for an alert group of its labels (``Decision``), so it
is announced, reminded, escalated, followed up and written up exactly as one opened by a webhook.
What differs is where it came from (``source``, kept beside it) and its key: a fresh one that no
Alertmanager group has, so that only a link sends a group's alerts to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import field, replace
from typing import Any

from bridge.core import jsontext
from bridge.core.actions import AssignRole, Outcome, Refusal, decide
from bridge.core.incidents import Event, Incident
from bridge.core.policy import Decision, Severity, Tiers, tiers_json
from bridge.core.values import immutable

SOURCE_DECLARED = "declared"
# What an incident without a row of its source came from: a webhook (or the reconciler).
SOURCE_ALERTMANAGER = "alertmanager"
KEY_PREFIX = "declared:"
# A declared incident has no alert to start from: the labels stand in for one (routing), and
# are bounded like a body's other fields.
MAX_LABELS = 64


@immutable
class Declaration:
    """What a person asks for when declaring an incident."""

    actor: str
    title: str
    severity: str
    description: str = ""
    commander: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


def link_lookup_group(group_key: str) -> str:
    """The lookup under which a linked Alertmanager group finds its incident."""
    return f"group:{group_key}"


def link_lookup_key(key: str) -> str:
    """The lookup under which a merged incident's key finds the incident it was merged into."""
    return f"key:{key}"


def _people(decision: Decision) -> str:
    """The role holders' handles the rules gave (``role_handles``), as the incident keeps them."""
    found: dict[str, dict[str, str]] = {}
    for holders in (decision.policies.get("role_handles") or {}).values():
        for person in holders:
            handles = {k: str(v) for k, v in person.items() if k != "name"}
            if handles:
                found.setdefault(str(person["name"]), {}).update(handles)
    return jsontext.dumps(found) if found else "{}"


def declare_incident(
    decision: Decision,
    declaration: Declaration,
    *,
    new_id: int,
    now: int,
    directory: Mapping[str, Mapping[str, str]],
) -> Outcome | Refusal:
    """The new incident (``new_id``) and its first entries: ``opened`` (who declared it, from
    which source, the description) and, with a commander named, the role given to them as a
    person's action gives it (``role_changed``, their handles from ``directory``)."""
    incident = Incident(
        id=new_id,
        key=decision.key,
        title=declaration.title,
        severity=declaration.severity,
        status="triggered",
        started_at=now,
        opened_at=now,
        route=decision.route,
        team=decision.team,
        service=decision.service,
        roles=jsontext.dumps({role: list(names) for role, names in decision.roles.items()})
        if decision.roles
        else "{}",
        people=_people(decision),
        tiers=tiers_json(decision.tiers),
    )
    data: dict[str, Any] = {
        "severity": declaration.severity,
        "route": decision.route,
        "source": SOURCE_DECLARED,
        "declared_by": declaration.actor,
    }
    if declaration.description:
        data["description"] = declaration.description
    if declaration.labels:
        data["labels"] = dict(declaration.labels)
    events = [
        Event(
            "opened",
            f"Incident declared by {declaration.actor}: {declaration.title}",
            data,
            declaration.actor,
        )
    ]
    if declaration.commander:
        given = decide(
            incident,
            AssignRole(declaration.actor, "commander", declaration.commander),
            now,
            directory=directory,
        )
        if isinstance(given, Refusal):
            return Refusal(given.status, given.message, "commander")
        incident = given.incident
        events += given.events
    return Outcome(incident, tuple(events))


def link_group(
    incident: Incident, group_key: str, actor: str, linked_to: int | None
) -> Outcome | Refusal:
    """Link an Alertmanager group into ``incident``: its next webhooks update this incident.
    ``linked_to``: the incident the group is linked to now, if any (a link moves it)."""
    if incident.status == "closed":
        return Refusal(409, "the incident is closed; link the group into an open incident")
    if linked_to == incident.id:
        return Outcome(incident)  # a retry: linked already
    text = f"Alertmanager group {group_key} linked by {actor}"
    data: dict[str, Any] = {"group_key": group_key}
    if linked_to is not None:
        text += f" (moved from incident {linked_to})"
        data["moved_from"] = linked_to
    return Outcome(incident, (Event("linked", text, data, actor),))


def merge(
    duplicate: Incident,
    survivor: Incident,
    *,
    entries: Sequence[int],
    actor: str,
    reason: str,
    now: int,
    merged_into: int | None,
) -> tuple[Outcome, Outcome] | Refusal:
    """Merge ``duplicate`` into ``survivor``: the duplicate is closed with a pointer to the
    survivor (``merged``, announced as a close), the survivor's timeline gets one entry that
    names the duplicate's ``entries`` by id (they stay where they are: nothing is copied).
    ``merged_into``: where the duplicate was merged before, if it was (a retry changes nothing)."""
    assert duplicate.id is not None and survivor.id is not None
    if duplicate.id == survivor.id:
        return Refusal(400, "an incident cannot be merged into itself", "into")
    if merged_into == survivor.id:
        return Outcome(duplicate), Outcome(survivor)
    if merged_into is not None:
        return Refusal(409, f"the incident was merged into incident {merged_into} already")
    if duplicate.status == "closed":
        return Refusal(409, "the incident is closed; only an open or resolved one is merged")
    if survivor.status == "closed":
        return Refusal(409, f"incident {survivor.id} is closed; merge into an open one", "into")
    because = f": {reason}" if reason.strip() else ""
    closed_data: dict[str, Any] = {"from": duplicate.status, "to": "closed", "into": survivor.id}
    merged_data: dict[str, Any] = {
        "duplicate": duplicate.id,
        "duplicate_title": duplicate.title,
        "entries": list(entries),
    }
    if reason.strip():
        closed_data["reason"] = merged_data["reason"] = reason
    closed = replace(duplicate, status="closed", closed_at=now)
    return (
        Outcome(
            closed,
            (
                Event(
                    "merged",
                    f"Merged into incident {survivor.id} by {actor}{because}",
                    closed_data,
                    actor,
                ),
            ),
        ),
        Outcome(
            survivor,
            (
                Event(
                    "merged_in",
                    f"Incident {duplicate.id} ({duplicate.title}) merged into this one by "
                    f"{actor}: its {len(entries)} timeline entries stay on it{because}",
                    merged_data,
                    actor,
                ),
            ),
        ),
    )


def source_view(row: Sequence[Any] | None, merged_into: int | None) -> dict[str, Any]:
    """Where an incident came from, as the API and the page show it: ``row`` is its kept
    source (source, declared_by, description, labels as JSON), None for a webhook's."""
    view: dict[str, Any]
    if row is None:
        view = {"source": SOURCE_ALERTMANAGER}
    else:
        source, by, description, labels = row
        view = {
            "source": source,
            "declared_by": by,
            "description": description,
            "labels": json.loads(labels or "{}"),
        }
    view["merged_into"] = merged_into
    return view


class DeclareError(ValueError):
    """A declaration the rules cannot route: ``field`` names what is wrong (a 400)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def builtin_decision(
    *,
    key: str,
    title: str,
    severity: Severity,
    labels: Mapping[str, str],
    route: str | None,
    team: str | None,
    general: tuple[str, ...],
    reopen_window_s: float,
) -> Decision:
    """What the built-in policy (no rule files) decides for a declared incident: its one
    route, ``default``, and the general tier, as ``BuiltinPolicy.evaluate`` does for a group."""
    if route is not None and route != "default":
        raise DeclareError(
            "route", f"unknown route {route!r}; without rules the one route is default"
        )
    return Decision(
        key=key,
        severity=severity,
        title=title,
        fingerprints=(),
        team=team or labels.get("team"),
        service=labels.get("service"),
        reopen_window_s=reopen_window_s,
        tiers=Tiers(general=general),
    )
