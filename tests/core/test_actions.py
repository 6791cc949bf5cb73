"""People's actions as pure commands: every move, every refusal, no I/O."""

from __future__ import annotations

import json

import pytest

from bridge.core.actions import (
    MAX_TEXT,
    AddEntry,
    AssignRole,
    ChangeSeverity,
    Dismiss,
    Entry,
    Guards,
    Outcome,
    PostUpdate,
    Refusal,
    ReleaseRole,
    Transition,
    allowed_moves,
    decide,
)
from bridge.core.events import event_kind
from bridge.core.incidents import Incident
from bridge.core.timeutil import NS

T = 1_795_752_400 * NS


def incident(status: str = "triggered", **kw: object) -> Incident:
    base: dict[str, object] = {
        "id": 7,
        "key": "k",
        "title": "Checkout down",
        "severity": "sev2",
        "status": status,
        "started_at": T - 60 * NS,
        "opened_at": T - 30 * NS,
    }
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


def outcome(result: Outcome | Refusal) -> Outcome:
    assert isinstance(result, Outcome), result
    return result


def refusal(result: Outcome | Refusal) -> Refusal:
    assert isinstance(result, Refusal), result
    return result


@pytest.mark.parametrize(
    ("status", "acked", "allowed"),
    [
        ("triggered", False, ("acknowledge", "mitigate", "resolve")),
        ("acknowledged", True, ("mitigate", "resolve")),
        ("mitigated", False, ("acknowledge", "resolve")),
        ("mitigated", True, ("resolve",)),
        ("resolved", True, ("close",)),
        ("closed", True, ()),
    ],
)
def test_allowed_moves(status: str, acked: bool, allowed: tuple[str, ...]) -> None:
    inc = incident(status, acknowledged_at=T if acked else None)
    assert allowed_moves(inc) == allowed


def test_every_move_from_every_status_is_allowed_refused_or_a_no_op() -> None:
    for status in ("triggered", "acknowledged", "mitigated", "resolved", "closed"):
        for acked in (False, True):
            inc = incident(status, acknowledged_at=T if acked else None)
            for move in ("acknowledge", "mitigate", "resolve", "close"):
                result = decide(inc, Transition("alice", move), T)  # type: ignore[arg-type]
                if move in allowed_moves(inc):
                    assert isinstance(result, Outcome) and result.changed, (status, move)
                elif isinstance(result, Refusal):
                    assert result.status == 409 and status in result.message
                else:
                    assert not result.changed, (status, acked, move)  # already there


def test_acknowledge_sets_the_milestone_once() -> None:
    first = outcome(decide(incident(), Transition("alice", "acknowledge", "on it"), T))
    assert first.incident.status == "acknowledged" and first.incident.acknowledged_at == T
    (event,) = first.events
    assert (event.kind, event.actor, event.text) == (
        "status_changed",
        "alice",
        "Acknowledged by alice: on it",
    )
    assert event.data == {"from": "triggered", "to": "acknowledged", "reason": "on it"}
    again = outcome(decide(first.incident, Transition("bob", "acknowledge"), T + NS))
    assert not again.changed and again.incident == first.incident


def test_acknowledging_a_mitigated_incident_keeps_its_status() -> None:
    result = outcome(
        decide(incident("mitigated", mitigated_at=T), Transition("a", "acknowledge"), T)
    )
    assert result.incident.status == "mitigated" and result.incident.acknowledged_at == T
    assert result.events[0].kind == "acknowledged"


def test_resolve_passes_through_mitigation() -> None:
    result = outcome(decide(incident("acknowledged"), Transition("a", "resolve"), T))
    assert result.incident.mitigated_at == T and result.incident.resolved_at == T
    kept = outcome(
        decide(incident("mitigated", mitigated_at=T - NS), Transition("a", "resolve"), T)
    )
    assert kept.incident.mitigated_at == T - NS


def test_close_before_resolve_names_the_allowed_moves() -> None:
    r = refusal(decide(incident("acknowledged"), Transition("a", "close"), T))
    assert r.status == 409
    assert r.message == "cannot close: the incident is acknowledged; allowed now: mitigate, resolve"


def test_role_hand_over_assign_and_release() -> None:
    inc = incident(roles=json.dumps({"commander": ["amara"]}))
    handed = outcome(decide(inc, AssignRole("amara", "commander", "bob"), T))
    assert json.loads(handed.incident.roles) == {"commander": ["bob"]}
    assert handed.events[0].text == "Commander handed over from amara to bob"
    assert handed.events[0].data["action"] == "handover"
    same = outcome(decide(handed.incident, AssignRole("x", "commander", "bob"), T))
    assert not same.changed
    taken = outcome(decide(incident(), AssignRole("carol", "scribe", "carol"), T))
    assert taken.events[0].text == "carol is scribe"
    by_other = outcome(decide(incident(), AssignRole("dave", "liaison", "lee"), T))
    assert by_other.events[0].text == "lee is liaison (by dave)"
    released = outcome(decide(handed.incident, ReleaseRole("bob", "commander"), T))
    assert json.loads(released.incident.roles) == {}
    assert released.events[0].text == "bob released the role commander; commander is unassigned"
    not_holder = refusal(decide(handed.incident, ReleaseRole("x", "commander", "zoe"), T))
    assert not_holder.status == 409 and "zoe does not hold" in not_holder.message
    nobody = outcome(decide(incident(), ReleaseRole("x", "scribe"), T))
    assert not nobody.changed


def test_responders_are_many() -> None:
    one = outcome(decide(incident(), AssignRole("a", "responders", "p1"), T))
    two = outcome(decide(one.incident, AssignRole("a", "responders", "p2"), T))
    assert json.loads(two.incident.roles) == {"responders": ["p1", "p2"]}
    dup = outcome(decide(two.incident, AssignRole("a", "responders", "p1"), T))
    assert not dup.changed
    out = outcome(decide(two.incident, ReleaseRole("p1", "responders", "p1"), T))
    assert json.loads(out.incident.roles) == {"responders": ["p2"]}


def test_a_person_given_a_role_brings_their_handles() -> None:
    directory = {"bob": {"slack": "U0BOB"}}
    result = outcome(
        decide(incident(), AssignRole("a", "commander", "bob"), T, directory=directory)
    )
    assert json.loads(result.incident.people) == {"bob": {"slack": "U0BOB"}}


def test_unknown_role_and_closed_incident() -> None:
    r = refusal(decide(incident(), AssignRole("a", "captain", "b"), T))
    assert (
        r.status == 400
        and r.field == "role"
        and "commander, scribe, liaison, responders" in r.message
    )
    closed = refusal(decide(incident("closed"), AssignRole("a", "scribe", "b"), T))
    assert closed.status == 409


def test_entries_and_corrections() -> None:
    note = outcome(decide(incident(), AddEntry("sam", "note", "db at 90%"), T))
    assert note.events[0].text == "Note: db at 90%" and note.events[0].data == {"text": "db at 90%"}
    fixed = outcome(
        decide(
            incident(),
            AddEntry("sam", "note", "db at 95%", corrects=3),
            T,
            corrected=Entry(3, "note", "Note: db at 90%"),
        )
    )
    assert fixed.events[0].text == "Note (corrects #3): db at 95%"
    assert fixed.events[0].data["corrects"] == 3
    wrong_kind = refusal(
        decide(
            incident(),
            AddEntry("s", "decision", "x", corrects=3),
            T,
            corrected=Entry(3, "note", "n"),
        )
    )
    assert wrong_kind.status == 400 and wrong_kind.field == "corrects"
    missing = refusal(decide(incident(), AddEntry("s", "note", "x", corrects=99), T))
    assert missing.status == 404
    item = outcome(decide(incident(), AddEntry("c", "action", "add index", owner="bob"), T))
    assert item.events[0].text == "Action item: add index (owner: bob)"
    owner_on_note = refusal(decide(incident(), AddEntry("c", "note", "x", owner="bob"), T))
    assert owner_on_note.field == "owner"
    assert refusal(decide(incident(), AddEntry("c", "note", "  "), T)).field == "text"
    assert (
        refusal(decide(incident(), AddEntry("c", "note", "x" * (MAX_TEXT + 1)), T)).field == "text"
    )


def test_updates_and_their_next_time() -> None:
    result = outcome(
        decide(incident(), PostUpdate("lee", "rolling back", next_update_in_s=1800), T)
    )
    assert result.events[0].kind == "status_update"
    assert result.events[0].data["next_update_at"] == "2026-11-27T04:36:40Z"
    past = refusal(decide(incident(), PostUpdate("lee", "x", next_update_at=T - NS), T))
    assert past.field == "next_update_at"


def test_severity_raised_lowered_and_unchanged() -> None:
    raised = outcome(decide(incident(), ChangeSeverity("bob", "sev1", "revenue"), T))
    assert raised.incident.severity == "sev1"
    assert raised.events[0].text == "Severity raised from sev2 to sev1 by bob: revenue"
    lowered = outcome(decide(incident(), ChangeSeverity("bob", "sev4", "contained"), T))
    assert lowered.events[0].text.startswith("Severity lowered from sev2 to sev4")
    assert not outcome(decide(incident(), ChangeSeverity("b", "sev2", "same"), T)).changed
    assert refusal(decide(incident(), ChangeSeverity("b", "sev9", "x"), T)).field == "severity"
    assert refusal(decide(incident(), ChangeSeverity("b", "sev1", ""), T)).field == "reason"
    assert refusal(decide(incident("closed"), ChangeSeverity("b", "sev1", "x"), T)).status == 409


def test_resolving_with_open_follow_up_items_needs_a_reason() -> None:
    inc = incident("mitigated", mitigated_at=T, acknowledged_at=T)
    refused = decide(inc, Transition("alice", "resolve"), T, guards=Guards(open_items=2))
    assert isinstance(refused, Refusal) and refused.status == 409 and refused.field == "reason"
    assert "2 follow-up items are still open" in refused.message
    done = outcome(decide(inc, Transition("alice", "resolve", "in OPS-1"), T, guards=Guards(2)))
    assert done.incident.status == "resolved"
    assert outcome(decide(inc, Transition("alice", "resolve"), T, guards=Guards(0))).changed


def test_closing_needs_the_required_postmortem() -> None:
    inc = incident("resolved", resolved_at=T, mitigated_at=T)
    refused = decide(inc, Transition("alice", "close"), T, guards=Guards(postmortem_missing=True))
    assert isinstance(refused, Refusal) and refused.status == 409
    assert "a postmortem is required for sev2 incidents" in refused.message
    assert outcome(decide(inc, Transition("alice", "close"), T)).incident.status == "closed"


@pytest.mark.parametrize("status", ["triggered", "acknowledged", "mitigated"])
def test_dismissing_closes_an_open_incident_without_the_milestones_of_work(status: str) -> None:
    inc = incident(status, mitigated_at=T - NS if status == "mitigated" else None)
    # The postmortem the route requires is not asked of a false alarm.
    done = outcome(
        decide(inc, Dismiss("alice", "a test"), T, guards=Guards(postmortem_missing=True))
    )
    assert (done.incident.status, done.incident.closed_at) == ("closed", T)
    assert done.incident.resolved_at is None
    assert done.incident.mitigated_at == inc.mitigated_at
    (event,) = done.events
    assert (event.kind, event.text, event.actor) == (
        "dismissed",
        "Dismissed by alice: a test",
        "alice",
    )
    assert event.data == {"from": status, "to": "closed", "reason": "a test"}
    assert event_kind(event.kind, event.data) == "closed"


def test_dismissing_needs_a_reason_and_an_open_incident() -> None:
    assert refusal(decide(incident(), Dismiss("a", " "), T)).field == "reason"
    resolved = refusal(decide(incident("resolved", resolved_at=T), Dismiss("a", "x"), T))
    assert resolved.status == 409 and "close it instead" in resolved.message
    closed = incident("closed", closed_at=T)
    assert refusal(decide(closed, Dismiss("a", "x"), T)).status == 409
    # Dismissed already: a retry changes nothing.
    assert not outcome(decide(closed, Dismiss("a", "x"), T, guards=Guards(dismissed=True))).changed
