"""Which notifications an incident change calls for, as a table of named cases."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.core.incidents import Event, Incident
from bridge.core.notify import plan_notifications
from bridge.core.policy import Tiers

INC = Incident(
    id=5, key="k", title="t", severity="sev2", status="triggered", started_at=1, opened_at=2
)
TIERS = Tiers(
    general=("general",), incident="room", stakeholders=("pager",), stakeholder_min_severity="sev1"
)
OPENED = Event("opened", "Incident opened")
FIRED = Event("alert_fired", "Alert fired")
MITIGATED = Event("status_changed", "mitigated", {"from": "triggered", "to": "mitigated"})
RAISED = Event("severity_changed", "raised", {"from": "sev2", "to": "sev1"})


def sent(
    before: Incident | None, after: Incident, events: list[Event], tiers: Tiers = TIERS
) -> list[str]:
    entries = plan_notifications(
        before=before, after=after, events=list(enumerate(events, start=100)), tiers=tiers
    )
    return [f"{e.tier}:{e.target}:{e.event}" for e in entries]


@pytest.mark.parametrize(
    ("name", "before", "after", "events", "expected"),
    [
        (
            "sev2 opens: general and the room, not the pager",
            None,
            INC,
            [OPENED, FIRED],
            ["incident:room:opened", "general:general:opened", "incident:room:timeline"],
        ),
        (
            "sev1 opens: the pager too",
            None,
            replace(INC, severity="sev1"),
            [OPENED],
            ["incident:room:opened", "general:general:opened", "stakeholders:pager:opened"],
        ),
        (
            "escalated into the pager's threshold later",
            INC,
            replace(INC, severity="sev1"),
            [FIRED, RAISED],
            [
                "incident:room:timeline",
                "incident:room:severity_changed",
                "general:general:severity_changed",
                "stakeholders:pager:severity_changed",
            ],
        ),
        (
            "paged incident mitigates: the pager hears it",
            replace(INC, severity="sev1"),
            replace(INC, severity="sev1", status="mitigated"),
            [MITIGATED],
            [
                "incident:room:mitigated",
                "general:general:mitigated",
                "stakeholders:pager:mitigated",
            ],
        ),
        (
            "unpaged incident mitigates: the pager does not",
            INC,
            replace(INC, status="mitigated"),
            [MITIGATED],
            ["incident:room:mitigated", "general:general:mitigated"],
        ),
        (
            "plain timeline events only go to the room",
            INC,
            INC,
            [FIRED],
            ["incident:room:timeline"],
        ),
        ("no dedicated channel configured", INC, INC, [FIRED], []),
    ],
)
def test_tiers(
    name: str, before: Incident | None, after: Incident, events: list[Event], expected: list[str]
) -> None:
    tiers = TIERS if "no dedicated" not in name else replace(TIERS, incident=None)
    assert sent(before, after, events, tiers) == expected, name


def test_idempotency_keys_are_stable_and_distinct() -> None:
    a = plan_notifications(before=None, after=INC, events=[(7, OPENED)], tiers=TIERS)
    b = plan_notifications(before=None, after=INC, events=[(7, OPENED)], tiers=TIERS)
    assert [e.idempotency_key for e in a] == [e.idempotency_key for e in b]
    assert len({e.idempotency_key for e in a}) == len(a)


def test_same_target_in_two_tiers_gets_two_rows() -> None:
    tiers = Tiers(general=("console",), incident="console")
    assert sent(None, INC, [OPENED], tiers) == ["incident:console:opened", "general:console:opened"]


def test_general_channel_threshold() -> None:
    quiet = replace(TIERS, general_min_severity="sev2", stakeholders=())
    assert sent(None, replace(INC, severity="sev3"), [OPENED], quiet) == ["incident:room:opened"]
    assert sent(None, INC, [OPENED], quiet) == ["incident:room:opened", "general:general:opened"]
