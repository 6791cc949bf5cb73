"""The public status page's decisions (docs/status-page.md), pure: which components an incident
is linked to, each component's state from the open incidents linked to it, and what of a
public update may be shown.

Nothing here sees an incident's title, labels' values, people or links on the way out: the
page and the feed are built only from the records below, whose fields are public by
construction (a component's name and description come from the rules, an update's text and
title are what the liaison marked public).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, get_args

from bridge.core.values import immutable

State = Literal["operational", "degraded", "outage"]
STATES: tuple[State, ...] = get_args(State)
# An incident still hurting people: triggered or acknowledged. A mitigated one has stopped the
# impact (the follow-up only watches), so it no longer darkens a component.
HURTING = ("triggered", "acknowledged")
# The severities that make an outage; the others degrade.
OUTAGE_SEVERITIES = ("sev1", "sev2")
# The timeline kind of a link changed by hand (core/events.py has it in the vocabulary).
LINK_KIND = "components_changed"


@immutable
class Component:
    """A component of the rules' ``components``: its id (the key), what the page shows, and
    what links an incident to it automatically."""

    id: str
    name: str
    description: str = ""
    routes: tuple[str, ...] = ()
    labels: Mapping[str, str] | None = None

    def matches(self, route: str, label_sets: Sequence[Mapping[str, str]]) -> bool:
        """By its route, or by its labels (all of them, on one of the incident's alerts or
        its declared labels). A component with neither matches nothing by itself."""
        if route in self.routes:
            return True
        wanted = dict(self.labels or {})
        if not wanted:
            return False
        return any(all(s.get(k) == v for k, v in wanted.items()) for s in label_sets)


@immutable
class LinkChange:
    """A link changed by hand: the components added and removed, in the timeline's order."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


@immutable
class IncidentFacts:
    """What the store gives of an incident for the status page. Its labels are used only to
    match components here; they never reach the page."""

    id: int
    severity: str
    status: str
    route: str
    label_sets: tuple[Mapping[str, str], ...] = ()
    changes: tuple[LinkChange, ...] = ()


@immutable
class PublicUpdate:
    """A status update its author marked public: only the public text and the public title."""

    entry_id: int
    incident_id: int
    at: int  # ns
    text: str
    title: str | None = None


@immutable
class ComponentState:
    component: Component
    state: State


@immutable
class ShownUpdate:
    """A public update as the page and the feed show it: its title (its own public title, else
    the newest public title given earlier for the same incident, else a neutral one) and the
    names of the components it concerns."""

    entry_id: int
    at: int
    title: str
    text: str
    components: tuple[str, ...]


NEUTRAL_TITLE = "Service disruption"


def linked(incident: IncidentFacts, components: Mapping[str, Component]) -> tuple[str, ...]:
    """The ids of the components ``incident`` is linked to: those its route or labels match
    at open, then each change by hand applied in order; ids no longer in the rules dropped."""
    ids = [c.id for c in components.values() if c.matches(incident.route, incident.label_sets)]
    for change in incident.changes:
        ids = [i for i in ids if i not in change.remove]
        ids += [i for i in change.add if i not in ids]
    return tuple(i for i in ids if i in components)


def _worst(a: State, b: State) -> State:
    return a if STATES.index(a) >= STATES.index(b) else b


def incident_state(incident: IncidentFacts) -> State:
    if incident.status not in HURTING:
        return "operational"
    return "outage" if incident.severity in OUTAGE_SEVERITIES else "degraded"


def states(
    components: Mapping[str, Component], incidents: Iterable[IncidentFacts]
) -> list[ComponentState]:
    """Each component (in the rules' order) with the worst state of the open incidents linked
    to it; operational with none."""
    worst: dict[str, State] = {cid: "operational" for cid in components}
    for incident in incidents:
        state = incident_state(incident)
        for cid in linked(incident, components):
            worst[cid] = _worst(worst[cid], state)
    return [ComponentState(c, worst[c.id]) for c in components.values()]


def shown_updates(
    updates: Sequence[PublicUpdate],
    incidents: Mapping[int, IncidentFacts],
    components: Mapping[str, Component],
) -> list[ShownUpdate]:
    """``updates`` (any order) newest first, titled and with their components' names."""
    titles: dict[int, str] = {}
    titled: dict[int, str] = {}
    for u in sorted(updates, key=lambda u: (u.at, u.entry_id)):
        if u.title:
            titles[u.incident_id] = u.title
        titled[u.entry_id] = titles.get(u.incident_id, NEUTRAL_TITLE)
    shown = []
    for u in sorted(updates, key=lambda u: (u.at, u.entry_id), reverse=True):
        facts = incidents.get(u.incident_id)
        ids = linked(facts, components) if facts is not None else ()
        names = tuple(components[i].name for i in ids)
        shown.append(ShownUpdate(u.entry_id, u.at, titled[u.entry_id], u.text, names))
    return shown


def link_change_text(add: Sequence[str], remove: Sequence[str]) -> str:
    """The timeline text of a change by hand."""
    parts = []
    if add:
        parts.append("linked to " + ", ".join(add))
    if remove:
        parts.append("unlinked from " + ", ".join(remove))
    return "Components: " + "; ".join(parts)
