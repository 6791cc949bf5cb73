"""The tier rules as a table: timeline event -> outbox rows."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.delivery.plan import event_kind, plan_notifications
from bridge.policy import Tiers

TIERS = Tiers(
    general=("chat",), incident="slack", stakeholders=("pager",), stakeholder_min_severity="sev2"
)


def rows(kind: str, severity: str, data: dict[str, Any] | None = None, **kw: Any) -> list[str]:
    return [
        f"{p.tier}:{p.target}:{p.event}"
        for p in plan_notifications(kind, data, TIERS, severity, **kw)
    ]


CASES = [
    (
        "sev1 opened pages",
        "opened",
        "sev1",
        None,
        {},
        ["general:chat:opened", "incident:slack:opened", "stakeholders:pager:opened"],
    ),
    (
        "sev3 opened does not page",
        "opened",
        "sev3",
        None,
        {},
        ["general:chat:opened", "incident:slack:opened"],
    ),
    (
        "alert fired is a timeline event",
        "alert_fired",
        "sev1",
        None,
        {},
        ["incident:slack:timeline"],
    ),
    (
        "status to mitigated",
        "status_changed",
        "sev2",
        {"to": "mitigated"},
        {},
        ["general:chat:mitigated", "incident:slack:mitigated", "stakeholders:pager:mitigated"],
    ),
    (
        "status to triggered is reopened",
        "status_changed",
        "sev2",
        {"to": "triggered"},
        {},
        ["general:chat:reopened", "incident:slack:reopened", "stakeholders:pager:reopened"],
    ),
    (
        "escalation into range is opened for stakeholders",
        "severity_changed",
        "sev2",
        {"from": "sev3", "to": "sev2"},
        {},
        [
            "general:chat:severity_changed",
            "incident:slack:severity_changed",
            "stakeholders:pager:opened",
        ],
    ),
    (
        "escalation within range",
        "severity_changed",
        "sev1",
        {"from": "sev2", "to": "sev1"},
        {"stakeholders_notified": True},
        [
            "general:chat:severity_changed",
            "incident:slack:severity_changed",
            "stakeholders:pager:severity_changed",
        ],
    ),
    (
        "de-escalated but notified: they hear the end",
        "resolved",
        "sev4",
        None,
        {"stakeholders_notified": True},
        ["general:chat:resolved", "incident:slack:resolved", "stakeholders:pager:resolved"],
    ),
    (
        "postmortem not for stakeholders",
        "postmortem_published",
        "sev1",
        None,
        {},
        ["general:chat:postmortem_published", "incident:slack:postmortem_published"],
    ),
    (
        "general threshold",
        "opened",
        "sev4",
        None,
        {"general_min_severity": "sev3"},
        ["incident:slack:opened"],
    ),
]


@pytest.mark.parametrize(
    ("kind", "severity", "data", "kw", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_plan(
    kind: str, severity: str, data: dict[str, Any] | None, kw: dict[str, Any], expected: list[str]
) -> None:
    assert rows(kind, severity, data, **kw) == expected


@pytest.mark.parametrize(
    ("kind", "data", "expected"),
    [
        ("opened", None, "opened"),
        ("note", None, "timeline"),
        ("truncated_alerts", None, "timeline"),
        ("status_changed", {"to": "closed"}, "closed"),
        ("status_changed", {"to": "weird"}, "timeline"),
    ],
)
def test_event_kind(kind: str, data: dict[str, Any] | None, expected: str) -> None:
    assert event_kind(kind, data) == expected
