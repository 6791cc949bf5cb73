"""What is due for an incident: pure, with plain values (no store, no clock)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.core import jsontext
from bridge.core.events import event_kind
from bridge.core.incidents import Incident
from bridge.core.notify import plan_notifications
from bridge.core.policy import Tiers, tiers_json
from bridge.core.reminders import (
    DEFAULT_REMINDERS,
    NO_REMINDERS,
    Due,
    LastUpdate,
    ReminderPolicy,
    default_policy,
    due,
    duration_text,
    escalation_event,
    reminder_event,
)
from bridge.core.timeutil import NS

T0 = 1_795_752_400 * NS  # 2026-11-27T04:06:40Z
MIN = 60 * NS
SEV1 = ReminderPolicy(update_every_s=1800.0, acknowledge_within_s=300.0)
TIERS = Tiers(general=("general",), incident="room", stakeholders=("pager",))


def incident(**changes: object) -> Incident:
    base = Incident(
        id=7,
        key="k",
        title="Checkout errors",
        severity="sev1",
        status="triggered",
        started_at=T0,
        opened_at=T0,
        roles=jsontext.dumps({"commander": ["amara"], "liaison": ["dana"]}),
        tiers=tiers_json(TIERS),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_defaults() -> None:
    assert default_policy("sev1") == ReminderPolicy(1800.0, 300.0)
    assert default_policy("sev2") == ReminderPolicy(3600.0, 900.0)
    assert default_policy("sev3") == ReminderPolicy(14400.0, None)
    assert default_policy("sev4") == NO_REMINDERS == ReminderPolicy()
    assert default_policy("unknown") == NO_REMINDERS
    assert set(DEFAULT_REMINDERS) == {"sev1", "sev2", "sev3", "sev4"}
    assert not any(p.escalate_to_next_commander for p in DEFAULT_REMINDERS.values())


def test_the_first_update_is_due_update_every_after_the_incident_opened() -> None:
    acked = incident(status="acknowledged", acknowledged_at=T0 + MIN)
    assert due(acked, SEV1, T0 + 30 * MIN - 1) == ()
    assert due(acked, SEV1, T0 + 30 * MIN) == (Due("reminder", T0 + 30 * MIN),)
    assert due(acked, SEV1, T0 + 59 * MIN) == (Due("reminder", T0 + 30 * MIN),)


def test_while_no_update_comes_another_is_due_every_period_the_latest_only() -> None:
    acked = incident(status="acknowledged", acknowledged_at=T0 + MIN)
    assert due(acked, SEV1, T0 + 60 * MIN) == (Due("reminder", T0 + 60 * MIN),)
    # After a long stop, one reminder (the latest due time), not one per missed period.
    assert due(acked, SEV1, T0 + 200 * MIN) == (Due("reminder", T0 + 180 * MIN),)


def test_after_an_update_the_next_is_due_update_every_later_or_when_it_said() -> None:
    acked = incident(status="acknowledged", acknowledged_at=T0 + MIN)
    last = LastUpdate(at=T0 + 20 * MIN)
    assert due(acked, SEV1, T0 + 49 * MIN, last_update=last) == ()
    assert due(acked, SEV1, T0 + 50 * MIN, last_update=last) == (Due("reminder", T0 + 50 * MIN),)
    promised = LastUpdate(at=T0 + 20 * MIN, next_update_at=T0 + 35 * MIN)
    assert due(acked, SEV1, T0 + 34 * MIN, last_update=promised) == ()
    assert due(acked, SEV1, T0 + 35 * MIN, last_update=promised) == (
        Due("reminder", T0 + 35 * MIN),
    )
    # ... and every update_every after the promised time while none comes.
    assert due(acked, SEV1, T0 + 66 * MIN, last_update=promised) == (
        Due("reminder", T0 + 65 * MIN),
    )


def test_the_due_time_is_the_same_at_every_tick_of_a_period() -> None:
    """What makes "once per due time" work: every tick (and every process) computes the same
    due time until the next period begins."""
    acked = incident(status="acknowledged", acknowledged_at=T0 + MIN)
    seen = {due(acked, SEV1, T0 + 30 * MIN + s * 15 * NS) for s in range(120)}
    assert seen == {(Due("reminder", T0 + 30 * MIN),)}


@pytest.mark.parametrize("status", ["mitigated", "resolved", "closed"])
def test_no_reminder_unless_the_incident_is_being_worked(status: str) -> None:
    done = incident(status=status, acknowledged_at=T0 + MIN, mitigated_at=T0 + 2 * MIN)
    assert due(done, SEV1, T0 + 300 * MIN) == ()


def test_no_update_every_no_reminders_no_acknowledge_within_no_escalation() -> None:
    assert due(incident(), NO_REMINDERS, T0 + 1000 * MIN) == ()
    only_updates = ReminderPolicy(update_every_s=1800.0)
    assert due(incident(), only_updates, T0 + 31 * MIN) == (Due("reminder", T0 + 30 * MIN),)


def test_escalation_once_when_still_unacknowledged_past_the_target() -> None:
    triggered = incident()
    assert due(triggered, SEV1, T0 + 5 * MIN - 1) == ()
    assert due(triggered, SEV1, T0 + 5 * MIN) == (Due("escalated", T0 + 5 * MIN),)
    # due at the same time however late the tick
    assert due(triggered, SEV1, T0 + 6 * MIN) == (Due("escalated", T0 + 5 * MIN),)
    assert due(triggered, SEV1, T0 + 6 * MIN, escalated=True) == ()
    # both due: oldest first
    assert due(triggered, SEV1, T0 + 31 * MIN) == (
        Due("escalated", T0 + 5 * MIN),
        Due("reminder", T0 + 30 * MIN),
    )


def test_no_escalation_once_acknowledged_mitigated_or_reopened() -> None:
    late = T0 + 60 * MIN
    acked = incident(status="acknowledged", acknowledged_at=T0 + MIN)
    assert [d.kind for d in due(acked, SEV1, late)] == ["reminder"]
    # Its alerts resolved before anyone acknowledged it: it ended by itself.
    mitigated = incident(status="mitigated", mitigated_at=T0 + MIN)
    assert due(mitigated, SEV1, late) == ()
    # Reopened after an acknowledgement: escalation is once per incident.
    reopened = incident(status="triggered", acknowledged_at=T0 + MIN)
    assert [d.kind for d in due(reopened, SEV1, late)] == ["reminder"]


def test_a_reminder_names_the_liaison_and_the_last_update() -> None:
    inc = incident(status="acknowledged", acknowledged_at=T0 + MIN)
    item = Due("reminder", T0 + 50 * MIN)
    event = reminder_event(inc, item, T0 + 51 * MIN, LastUpdate(at=T0 + 20 * MIN))
    assert event.kind == "reminder" and event.actor == "incident-bridge"
    assert event.text == "Status update due: liaison dana (last update 31 min ago)"
    # what the message templates read
    assert event.data == {"due_at": "2026-11-27T04:56:40Z", "liaison": ["dana"]}
    nobody = replace(inc, roles="{}")
    event = reminder_event(nobody, Due("reminder", T0 + 30 * MIN), T0 + 30 * MIN, None)
    assert event.text == "Status update due: no liaison assigned (no update yet; opened 30 min ago)"
    assert event.data["liaison"] == []


def test_an_escalation_says_the_target_and_who_hears_of_it() -> None:
    inc = incident()
    event = escalation_event(inc, SEV1, T0 + 5 * MIN + 20 * NS, stakeholders=True)
    assert event.kind == "escalated" and event.actor == "incident-bridge"
    assert event.text == "Not acknowledged within 5 min: escalated to the stakeholders"
    assert event.data == {"after_s": 320, "target_s": 300}
    event = escalation_event(inc, SEV1, T0 + 5 * MIN, stakeholders=True, commander="bjorn")
    assert event.text == (
        "Not acknowledged within 5 min: escalated to the stakeholders and to bjorn, "
        "the next commander"
    )
    assert event.data["commander"] == "bjorn"
    alone = escalation_event(inc, SEV1, T0 + 5 * MIN, stakeholders=False)
    assert alone.text == "Not acknowledged within 5 min (no stakeholders to escalate to)"


def test_who_hears_of_them() -> None:
    """The reminder goes to the dedicated channel only; the escalation to the stakeholders
    (whatever the severity) and the dedicated channel."""
    inc = incident(severity="sev4")
    reminder = reminder_event(inc, Due("reminder", T0), T0, None)
    escalated = escalation_event(inc, SEV1, T0, stakeholders=True)
    assert event_kind(reminder.kind) == "reminder"
    assert event_kind(escalated.kind) == "escalated"
    entries = plan_notifications(
        before=inc, after=inc, events=[(1, reminder), (2, escalated)], tiers=TIERS
    )
    assert [(e.tier, e.target, e.event) for e in entries] == [
        ("incident", "room", "reminder"),
        ("incident", "room", "escalated"),
        ("stakeholders", "pager", "escalated"),
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (45, "45 s"),
        (60, "1 min"),
        (1860, "31 min"),
        (3600, "1 h"),
        (5400, "1 h 30 min"),
    ],
)
def test_durations_read_as_in_the_messages(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text
