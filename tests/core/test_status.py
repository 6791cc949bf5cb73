"""core/status.py: which components an incident is linked to, their states, and the public
updates as shown (titles carried over, newest first)."""

from __future__ import annotations

from bridge.core.status import (
    Component,
    IncidentFacts,
    LinkChange,
    PublicUpdate,
    linked,
    shown_updates,
    states,
)

COMPONENTS = {
    "checkout": Component("checkout", "Checkout", routes=("payments",)),
    "search": Component("search", "Search", labels={"service": "search", "env": "prod"}),
    "mail": Component("mail", "Mail"),
}


def _incident(
    id: int = 1,
    severity: str = "sev3",
    status: str = "triggered",
    route: str = "root",
    labels: tuple[dict[str, str], ...] = (),
    changes: tuple[LinkChange, ...] = (),
) -> IncidentFacts:
    return IncidentFacts(id, severity, status, route, labels, changes)


def test_linked_by_route_by_all_labels_of_one_alert_then_by_hand() -> None:
    assert linked(_incident(route="payments"), COMPONENTS) == ("checkout",)
    # every label of the component on one alert; split over two alerts is no match
    both = ({"service": "search", "env": "prod", "pod": "x"},)
    assert linked(_incident(labels=both), COMPONENTS) == ("search",)
    split = ({"service": "search"}, {"env": "prod"})
    assert linked(_incident(labels=split), COMPONENTS) == ()
    # a component with neither routes nor labels matches nothing by itself
    assert linked(_incident(route="mail"), COMPONENTS) == ()
    changes = (
        LinkChange(add=("mail", "gone")),
        LinkChange(remove=("checkout",)),
        LinkChange(add=("checkout",), remove=("mail",)),
    )
    # applied in order; an id the rules no longer have is dropped
    assert linked(_incident(route="payments", changes=changes), COMPONENTS) == ("checkout",)


def test_a_component_takes_the_worst_hurting_incident() -> None:
    incidents = [
        _incident(1, "sev3", "acknowledged", "payments"),
        _incident(2, "sev1", "mitigated", "payments"),  # the impact stopped: nothing
        _incident(3, "sev2", "triggered", labels=({"service": "search", "env": "prod"},)),
        _incident(4, "sev4", "triggered", labels=({"service": "search", "env": "prod"},)),
    ]
    got = {s.component.id: s.state for s in states(COMPONENTS, incidents)}
    assert got == {"checkout": "degraded", "search": "outage", "mail": "operational"}
    assert [s.component.id for s in states(COMPONENTS, [])] == ["checkout", "search", "mail"]


def test_updates_newest_first_with_the_titles_carried_over() -> None:
    updates = [
        PublicUpdate(10, 1, 100, "first", "Payments failing"),
        PublicUpdate(30, 1, 300, "third"),
        PublicUpdate(20, 2, 200, "other incident"),
        PublicUpdate(40, 1, 400, "fourth", "Payments recovered"),
    ]
    facts = {1: _incident(1, route="payments"), 2: _incident(2)}
    shown = shown_updates(updates, facts, COMPONENTS)
    assert [(u.entry_id, u.title, u.components) for u in shown] == [
        (40, "Payments recovered", ("Checkout",)),
        (30, "Payments failing", ("Checkout",)),
        (20, "Service disruption", ()),
        (10, "Payments failing", ("Checkout",)),
    ]
