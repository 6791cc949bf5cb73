"""Escalation policies' steps: pure, with plain values (no store, no clock)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.core import jsontext
from bridge.core.escalation import (
    NO_ESCALATION,
    STEP_KIND,
    EscalationPolicy,
    Level,
    Reach,
    Recipient,
    Step,
    due_steps,
    started_at,
    step_event,
    steps,
)
from bridge.core.events import event_kind
from bridge.core.incidents import Event, Incident
from bridge.core.notify import plan_notifications
from bridge.core.policy import Tiers, tiers_json
from bridge.core.timeutil import NS

T0 = 1_795_752_400 * NS  # 2026-11-27T04:06:40Z
MIN = 60 * NS
TIERS = Tiers(general=("general",), incident="room", stakeholders=("boss",))
# 5 min: the primary's holder; 10 min later: the next holder and the pager; twice more.
POLICY = EscalationPolicy(
    levels=(
        Level(300.0, (Recipient("rotation", "primary"),)),
        Level(600.0, (Recipient("next", "primary"), Recipient("target", "pager"))),
    ),
    repeat=2,
)


def incident(**changes: object) -> Incident:
    base = Incident(
        id=7,
        key="k",
        title="Checkout errors",
        severity="sev1",
        status="triggered",
        started_at=T0,
        opened_at=T0,
        roles=jsontext.dumps({"commander": ["amara"]}),
        tiers=tiers_json(TIERS),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_every_step_of_a_policy_levels_then_repeats() -> None:
    assert steps(POLICY, T0) == (
        Step(1, 1, T0 + 5 * MIN),
        Step(2, 1, T0 + 15 * MIN),
        Step(1, 2, T0 + 20 * MIN),
        Step(2, 2, T0 + 30 * MIN),
        Step(1, 3, T0 + 35 * MIN),
        Step(2, 3, T0 + 45 * MIN),
    )
    assert POLICY.cycle_ns == 15 * MIN
    assert Step(2, 3, 0).key == "escalation/2/3"


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        (0, []),
        (4, []),
        (5, [(1, 1, 5)]),
        (14, [(1, 1, 5)]),
        (15, [(1, 1, 5), (2, 1, 15)]),
        # a new repetition supersedes the last one's steps
        (20, [(1, 2, 20)]),
        (31, [(1, 2, 20), (2, 2, 30)]),
        (44, [(1, 3, 35)]),
        (45, [(1, 3, 35), (2, 3, 45)]),
        # past the last step: the last repetition's stay due (sent once: the store's key)
        (600, [(1, 3, 35), (2, 3, 45)]),
    ],
)
def test_which_steps_are_due_when(minutes: int, expected: list[tuple[int, int, int]]) -> None:
    got = due_steps(incident(), POLICY, T0 + minutes * MIN)
    assert [(s.level, s.repetition, (s.due_at - T0) // MIN) for s in got] == expected


def test_the_same_answer_on_every_tick_whatever_the_tick_times() -> None:
    """Due times come from stored values only: ticks at different instants name the same steps."""
    seen = set()
    for seconds in range(0, 50 * 60, 7):
        seen.update(due_steps(incident(), POLICY, T0 + seconds * NS))
    assert seen == set(steps(POLICY, T0))


def test_no_repeat_runs_the_levels_once() -> None:
    once = replace(POLICY, repeat=0)
    assert due_steps(incident(), once, T0 + 1000 * MIN) == (
        Step(1, 1, T0 + 5 * MIN),
        Step(2, 1, T0 + 15 * MIN),
    )


def test_a_first_level_at_once() -> None:
    policy = EscalationPolicy((Level(0.0, (Recipient("target", "pager"),)),))
    assert due_steps(incident(), policy, T0) == (Step(1, 1, T0),)
    assert due_steps(incident(), policy, T0 - 1) == ()


def test_no_levels_nothing_is_due() -> None:
    assert due_steps(incident(), NO_ESCALATION, T0 + 10**6 * MIN) == ()


@pytest.mark.parametrize("status", ["acknowledged", "mitigated", "resolved", "closed"])
def test_only_a_triggered_incident_escalates(status: str) -> None:
    moved = incident(status=status, acknowledged_at=T0 + MIN if status != "mitigated" else None)
    assert due_steps(moved, POLICY, T0 + 20 * MIN) == ()


def test_acknowledgement_stops_it() -> None:
    acked = incident(status="acknowledged", acknowledged_at=T0 + 7 * MIN)
    assert due_steps(acked, POLICY, T0 + 60 * MIN) == ()


def test_a_reopen_starts_it_again_from_the_first_level() -> None:
    """Acknowledged, mitigated, reopened at +40 min: the levels again, waits from the reopen."""
    reopened = T0 + 40 * MIN
    again = incident(status="triggered", acknowledged_at=T0 + 2 * MIN)
    assert started_at(again, reopened) == reopened
    assert due_steps(again, POLICY, reopened + 4 * MIN, reopened_at=reopened) == ()
    assert due_steps(again, POLICY, reopened + 5 * MIN, reopened_at=reopened) == (
        Step(1, 1, reopened + 5 * MIN),
    )
    # without the reopen, the old acknowledgement would stop it
    assert due_steps(again, POLICY, reopened + 5 * MIN) == ()


def test_an_acknowledgement_after_the_reopen_stops_it_again() -> None:
    reopened = T0 + 40 * MIN
    acked = incident(status="acknowledged", acknowledged_at=reopened + MIN)
    assert due_steps(acked, POLICY, reopened + 30 * MIN, reopened_at=reopened) == ()


def test_a_reopen_never_acknowledged_before_also_starts_over() -> None:
    reopened = T0 + 100 * MIN
    assert due_steps(incident(), POLICY, reopened + 6 * MIN, reopened_at=reopened) == (
        Step(1, 1, reopened + 5 * MIN),
    )


def test_an_older_reopen_than_the_opening_is_ignored() -> None:
    assert started_at(incident(), T0 - MIN) == T0


def test_ns_instants_no_wall_clock() -> None:
    """Across Europe's DST change (2026-10-25 01:00Z) a 1 h wait is 3600 s, not a wall hour."""
    t = 1_792_888_800 * NS  # 2026-10-25T00:40:00Z
    policy = EscalationPolicy((Level(3600.0, (Recipient("target", "pager"),)),))
    assert steps(policy, t) == (Step(1, 1, t + 3600 * NS),)


def test_step_event_names_level_people_and_targets() -> None:
    reach = Reach(people=(("amara", {"twilio": "+15550100"}),), targets=("sms", "pager"))
    event = step_event(incident(), POLICY, Step(2, 2, T0 + 30 * MIN), reach, start=T0)
    assert event.kind == STEP_KIND
    assert event_kind(event.kind) == "escalated"
    assert event.text == (
        "Escalation level 2 of 2 (repeat 1 of 2): not acknowledged after 30 min, "
        "notifying amara via sms, pager"
    )
    assert event.data["level"] == 2
    assert event.data["repetition"] == 2
    assert event.data["notify"] == ["next: primary", "target: pager"]
    assert event.data["handles"] == {"amara": {"twilio": "+15550100"}}
    assert event.data["targets"] == ["sms", "pager"]
    assert event.data["after_s"] == 1800
    assert event.data["due_at"] == "2026-11-27T04:36:40Z"


def test_step_event_that_reaches_nobody_says_so() -> None:
    event = step_event(incident(), POLICY, Step(1, 1, T0 + 5 * MIN), Reach(), start=T0)
    assert "notifying nobody by name (no target reaches them)" in event.text


def test_a_step_notifies_its_targets_and_the_dedicated_channel_not_the_tiers() -> None:
    reach = Reach(people=(("amara", {}),), targets=("pager", "pager", "room"))
    event = step_event(incident(), POLICY, Step(1, 1, T0 + 5 * MIN), reach, start=T0)
    entries = plan_notifications(
        before=incident(), after=incident(), events=[(41, event)], tiers=TIERS
    )
    assert [(e.target, e.tier, e.event) for e in entries] == [
        ("room", "incident", "escalated"),
        ("pager", "stakeholders", "escalated"),
    ]
    assert entries[1].idempotency_key == "incident-7/stakeholders/pager/escalated/41"


def test_the_one_off_escalation_still_goes_to_the_stakeholders() -> None:
    event = Event("escalated", "Not acknowledged", {}, "incident-bridge")
    entries = plan_notifications(
        before=incident(), after=incident(), events=[(3, event)], tiers=TIERS
    )
    assert ("boss", "stakeholders") in [(e.target, e.tier) for e in entries]
