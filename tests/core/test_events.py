"""The one vocabulary: every timeline event maps to exactly one notification event, the same
for the planner, the templates and the messages."""

from __future__ import annotations

import pytest

from bridge.core.events import EVENTS, TIMELINE_KINDS, event_kind
from bridge.core.incidents import Event
from bridge.delivery.protocol import Notification


@pytest.mark.parametrize(
    ("kind", "data", "expected"),
    [
        ("opened", {}, "opened"),
        ("reopened", {"from": "mitigated", "to": "triggered"}, "reopened"),
        ("severity_changed", {"from": "sev3", "to": "sev1"}, "severity_changed"),
        ("postmortem_published", {}, "postmortem_published"),
        ("status_changed", {"to": "acknowledged"}, "acknowledged"),
        ("status_changed", {"to": "mitigated"}, "mitigated"),
        ("status_changed", {"to": "resolved"}, "resolved"),
        ("status_changed", {"to": "closed"}, "closed"),
        # back to triggered by hand is a reopen, for every tier and every template
        ("status_changed", {"from": "mitigated", "to": "triggered"}, "reopened"),
        ("status_changed", {"to": "nonsense"}, "timeline"),
        ("status_changed", {}, "timeline"),
        ("alert_fired", {"fingerprint": "f"}, "timeline"),
        ("alert_resolved", {"fingerprint": "f"}, "timeline"),
        ("truncated_alerts", {"truncated_alerts": 3}, "timeline"),
        ("note", {}, "timeline"),
    ],
)
def test_event_kind(kind: str, data: dict[str, str], expected: str) -> None:
    assert event_kind(kind, data) == expected


def test_every_timeline_kind_maps_to_a_notification_event() -> None:
    assert {event_kind(k, {"to": "mitigated"}) for k in TIMELINE_KINDS} <= set(EVENTS)


def test_the_planner_and_the_messages_agree() -> None:
    """What a message says it covers is what the planner planned it for."""
    from bridge.core.incidents import Incident
    from bridge.core.notify import plan_notifications
    from bridge.core.policy import Tiers

    before = Incident(1, "k", "t", "sev2", "mitigated", 0, 0, mitigated_at=5)
    after = Incident(1, "k", "t", "sev2", "triggered", 0, 0)
    event = Event("status_changed", "reopened by hand", {"from": "mitigated", "to": "triggered"})
    (entry,) = plan_notifications(
        before=before, after=after, events=[(9, event)], tiers=Tiers(general=("chat",))
    )
    assert (entry.tier, entry.event) == ("general", "reopened")
    message = Notification(
        id=1,
        idempotency_key=entry.idempotency_key,
        target="chat",
        tier=entry.tier,
        event=entry.event,
        incident={},
        events=({"kind": event.kind, "data": dict(event.data)},),
    )
    assert message.kinds == (entry.event,)
