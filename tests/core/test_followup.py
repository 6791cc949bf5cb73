"""The follow-up phase's pure decisions: the opening checklist, the findings, people's commands
on items, the validation and the resolve when the checklist is done."""

from __future__ import annotations

import json

from bridge.core.actions import Refusal
from bridge.core.checks import CheckResult, Sample
from bridge.core.followup import (
    DEFAULT_CHECKLIST,
    AddItem,
    Check,
    ChecklistItem,
    Evidence,
    FollowUp,
    FollowUpPolicy,
    Item,
    ItemOutcome,
    PastIncident,
    SetItem,
    decide_item,
    findings,
    open_followup,
    opening_checklist,
    validate,
)
from bridge.core.incidents import Incident
from bridge.core.timeutil import NS

T = 1_795_752_400 * NS


def incident(status: str = "mitigated", **kw: object) -> Incident:
    base: dict[str, object] = {
        "id": 7,
        "key": "k",
        "title": "Checkout down",
        "severity": "sev2",
        "status": status,
        "started_at": T - 120 * NS,
        "opened_at": T - 60 * NS,
        "acknowledged_at": T - 30 * NS,
        "mitigated_at": T,
    }
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


def outcome(result: ItemOutcome | Refusal) -> ItemOutcome:
    assert isinstance(result, ItemOutcome), result
    return result


def test_a_route_checklist_always_gets_validation_and_review() -> None:
    assert opening_checklist(FollowUpPolicy()) == DEFAULT_CHECKLIST
    own = FollowUpPolicy(checklist=(ChecklistItem("Tell the payments team"),))
    assert [i.kind for i in opening_checklist(own)] == ["check", "validate", "review"]
    explicit = FollowUpPolicy(
        checklist=(ChecklistItem("Dashboards green", "validate"), ChecklistItem("Retro", "review"))
    )
    assert [i.text for i in opening_checklist(explicit)] == ["Dashboards green", "Retro"]


def test_findings_name_their_evidence() -> None:
    late = incident(acknowledged_at=T - 60 * NS + 20 * 60 * NS, started_at=T - 3600 * NS)
    evidence = Evidence(
        incident=late,
        alerts=(
            ({"alertname": "HighErrorRate"}, {"runbook_url": "https://rb/x"}),
            ({"alertname": "Latency"}, {}),
        ),
        recurrences={
            "alertname=HighErrorRate": (PastIncident(3, "Checkout down", T - 86400 * NS),)
        },
        acknowledge_within_s=900.0,
        dead=(("pager", "401 Unauthorized"),),
        reopened=1,
    )
    found = {f.kind: f for f in findings(evidence, "https://bridge.example")}
    assert list(found) == [
        "no_runbook",
        "recurrence",
        "late_acknowledgement",
        "dead_letter",
        "reopened",
        "detection_delay",
    ]
    assert found["no_runbook"].evidence == {"alertnames": ["Latency"]}
    assert (
        found["recurrence"].evidence["incidents"][0]["url"] == "https://bridge.example/incidents/3"
    )
    assert found["late_acknowledgement"].text == (
        "Acknowledged after 20 min, later than the sev2 target of 15 min"
    )
    assert found["detection_delay"].evidence["delay_s"] == 3540.0
    # A clean response has nothing to say.
    assert findings(Evidence(incident=incident(), acknowledge_within_s=900.0)) == ()


def test_opening_makes_items_and_tickets_for_action_items() -> None:
    evidence = Evidence(incident=incident(), actions=(("Add a canary", "bob"),))
    policy = FollowUpPolicy(
        ticket_target="jira", checks=(Check("errors", "error_ratio", "< 0.01"),)
    )
    opening = open_followup(evidence, policy, T, first_id=40)
    assert [(i.kind, i.owner) for i in opening.items] == [
        ("check", None),
        ("validate", None),
        ("review", None),
        ("action", "bob"),
    ]
    assert json.loads(opening.items[1].detail)["checks"][0]["expect"] == "< 0.01"
    kinds = [e.kind for e in opening.events]
    assert kinds == ["followup_opened", "ticket_requested"]
    assert opening.events[1].data == {"item": 43, "text": "Add a canary", "owner": "bob"}
    assert opening.stabilize_until == T + 1800 * NS
    no_target = open_followup(evidence, FollowUpPolicy(), T, first_id=40)
    assert [e.kind for e in no_target.events] == ["followup_opened"]


def _followup(*states: str) -> FollowUp:
    kinds = ["check", "validate", "review"]
    return FollowUp(
        7,
        "jira",
        tuple(Item(i + 1, kinds[i % 3], f"item {i + 1}", state) for i, state in enumerate(states)),  # type: ignore[arg-type]
    )


def test_commands_on_items() -> None:
    inc = incident()
    added = outcome(decide_item(inc, _followup("open"), AddItem("al", "Fix it", "action"), T, 9))
    assert [e.kind for e in added.events] == ["followup_item", "ticket_requested"]
    assert added.items[0].id is None and added.events[0].data["item"] == 9
    refused = decide_item(inc, _followup("open"), AddItem("al", "  "), T, 9)
    assert isinstance(refused, Refusal) and refused.field == "text"
    refused = decide_item(inc, _followup("open"), SetItem("al", 1, "waived"), T, 9)
    assert isinstance(refused, Refusal) and (refused.status, refused.field) == (400, "reason")
    refused = decide_item(inc, _followup("open"), SetItem("al", 5, "done"), T, 9)
    assert isinstance(refused, Refusal) and refused.status == 404
    refused = decide_item(incident("triggered"), None, SetItem("al", 1, "done"), T, 9)
    assert isinstance(refused, Refusal) and refused.status == 409
    assert not outcome(decide_item(inc, _followup("done"), SetItem("al", 1, "done"), T, 9)).changed
    # The last open item done resolves the mitigated incident.
    last = outcome(decide_item(inc, _followup("done", "open"), SetItem("al", 2, "done"), T, 9))
    assert last.incident.status == "resolved" and last.incident.resolved_at == T
    assert [e.kind for e in last.events] == ["followup_item", "status_changed"]
    # Not when the incident is already resolved by hand.
    by_hand = incident("resolved", resolved_at=T)
    assert (
        outcome(
            decide_item(by_hand, _followup("open"), SetItem("al", 1, "done"), T, 9)
        ).incident.status
        == "resolved"
    )


def test_validation_passes_only_when_quiet_and_every_check_passes() -> None:
    inc = incident()
    good = CheckResult("errors", "e", "< 0.01", True, (Sample({}, 0.001),), "0.001 < 0.01")
    bad = CheckResult("errors", "e", "< 0.01", False, (Sample({}, 0.2),), "0.2 is not < 0.01")
    rejected = CheckResult(
        "p99", "p", "< 1", False, error="Prometheus rejected the query: bad_data"
    )
    passed = validate(
        inc, _followup("done", "open", "done"), quiet=True, window_s=1800, checks=[good], now=T
    )
    assert passed.events[0].text == "Validation passed: quiet for 30 min, 1 check(s) passed"
    assert passed.items[0].state == "done" and passed.incident.status == "resolved"
    failed = validate(
        inc,
        _followup("done", "open", "done"),
        quiet=False,
        window_s=1800,
        checks=[bad, rejected],
        now=T,
    )
    assert failed.events[0].text == (
        "Validation failed: an alert fired again within the 30 min window; check errors: "
        "0.2 is not < 0.01; check p99: Prometheus rejected the query: bad_data"
    )
    assert failed.items[0].state == "open" and failed.incident.status == "mitigated"
    assert json.loads(failed.items[0].detail)["validation"]["passed"] is False
