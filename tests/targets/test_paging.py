"""PagerDuty and Opsgenie: actions per event, dedup by the incident key, coalescing."""

from __future__ import annotations

import hashlib

from bridge.targets.pagerduty import actions_for
from tests.fakes.paging import GENIE_KEY, ROUTING_KEY, OpsgenieFake, PagerDutyFake
from tests.targets.conftest import MakeTarget, incident, make_notification


def _pd(make_target: MakeTarget, fake: PagerDutyFake):  # type: ignore[no-untyped-def]
    return make_target("pagerduty", routing_key=ROUTING_KEY, api_url=fake.url + "/v2/enqueue")


async def test_pagerduty_lifecycle(pagerduty: PagerDutyFake, make_target: MakeTarget) -> None:
    target = _pd(make_target, pagerduty)
    key = incident()["key"]
    for event in ("opened", "acknowledged", "timeline", "mitigated"):
        await target.send(make_notification(event, tier="stakeholders"))
    actions = [e["event_action"] for e in pagerduty.events]
    assert actions == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in pagerduty.events} == {key}
    assert pagerduty.incidents[key] == "resolved"
    trigger = pagerduty.events[0]
    assert trigger["payload"]["severity"] == "error"
    assert trigger["payload"]["summary"] == "[sev2] #42 High error rate on checkout"
    assert trigger["links"][0]["href"] == incident()["url"]


async def test_pagerduty_skips_events_it_has_no_action_for(
    pagerduty: PagerDutyFake, make_target: MakeTarget
) -> None:
    result = await _pd(make_target, pagerduty).send(make_notification("postmortem_published"))
    assert result.skipped and pagerduty.requests == []


async def test_pagerduty_long_key_is_hashed(
    pagerduty: PagerDutyFake, make_target: MakeTarget
) -> None:
    long_key = "{}/{" + "x" * 300 + "}"
    await _pd(make_target, pagerduty).send(make_notification(inc=incident(key=long_key)))
    assert pagerduty.events[0]["dedup_key"] == hashlib.sha256(long_key.encode()).hexdigest()


async def test_pagerduty_coalesced_events_send_each_action_in_order(
    pagerduty: PagerDutyFake, make_target: MakeTarget
) -> None:
    events = tuple(
        {"kind": k, "text": k} for k in ("opened", "timeline", "acknowledged", "mitigated")
    )
    await _pd(make_target, pagerduty).send(make_notification("mitigated", events=events))
    assert [e["event_action"] for e in pagerduty.events] == ["trigger", "acknowledge", "resolve"]


def test_actions_for_collapses_repeats() -> None:
    assert actions_for(("opened", "severity_changed", "resolved", "closed")) == [
        "trigger",
        "resolve",
    ]
    assert actions_for(("timeline",)) == []


async def test_opsgenie_lifecycle_and_dedup(
    opsgenie: OpsgenieFake, make_target: MakeTarget
) -> None:
    target = make_target("opsgenie", api_key=GENIE_KEY, api_url=opsgenie.url, tags=["bridge"])
    key = incident()["key"]
    await target.send(make_notification("opened"))
    await target.send(make_notification("opened"))  # a resend: Opsgenie dedups by alias
    await target.send(
        make_notification(
            "severity_changed", events=({"kind": "severity_changed", "text": "sev3 -> sev2"},)
        )
    )
    await target.send(make_notification("acknowledged"))
    result = await target.send(make_notification("mitigated"))
    alert = opsgenie.alerts[key]
    assert alert["count"] == 2 and alert["status"] == "closed"
    assert alert["priority"] == "P2" and alert["tags"] == ["bridge", "checkout", "checkout-api"]
    assert len(alert["message"]) <= 130
    assert "sev3 -> sev2" in alert["notes"][0]
    assert [a[0] for a in opsgenie.actions] == ["notes", "acknowledge", "close"]
    assert result.provider_ids["alias"] == key
    assert all(r.query.get("identifierType") == "alias" for r in opsgenie.requests[2:])


async def test_store_shaped_timeline_rows_map_to_actions(
    pagerduty: PagerDutyFake, make_target: MakeTarget
) -> None:
    """Rows as the store gives them: state-machine kinds, "time", "data"."""
    rows = (
        {
            "id": 7,
            "time": "2026-11-27T05:50:00Z",
            "kind": "alert_resolved",
            "actor": "alertmanager",
            "text": "Alert resolved: HighErrorRate",
            "data": {},
        },
        {
            "id": 8,
            "time": "2026-11-27T05:50:00Z",
            "kind": "status_changed",
            "actor": "alertmanager",
            "text": "All alerts resolved: mitigated",
            "data": {"from": "triggered", "to": "mitigated"},
        },
    )
    n = make_notification("mitigated", events=rows)
    assert n.kinds == ("timeline", "mitigated")
    await _pd(make_target, pagerduty).send(n)
    assert [e["event_action"] for e in pagerduty.events] == ["resolve"]


async def test_pagerduty_escalation_pages_and_updates_send_nothing(
    pagerduty: PagerDutyFake, make_target: MakeTarget
) -> None:
    """Not acknowledged in time: a trigger (the stakeholders are paged, or the open alert
    takes the event); a status update or a reminder means nothing to the Events API."""
    target = _pd(make_target, pagerduty)
    for event in ("update", "reminder"):
        result = await target.send(make_notification(event, tier="stakeholders"))
        assert result.skipped
    assert pagerduty.requests == []
    row = {"kind": "escalated", "text": "x", "data": {"after_s": 960, "target_s": 900}}
    n = make_notification(
        "escalated", tier="stakeholders", inc=incident(severity="sev4"), events=(row,)
    )
    result = await target.send(n)
    assert not result.skipped
    (event,) = pagerduty.events
    assert event["event_action"] == "trigger" and event["payload"]["severity"] == "info"
    assert "Not acknowledged within 15 min" in event["payload"]["custom_details"]["message"]
    assert pagerduty.incidents[incident()["key"]] == "triggered"


async def test_opsgenie_escalation_raises_the_alert_or_notes_it(
    opsgenie: OpsgenieFake, make_target: MakeTarget
) -> None:
    """Escalated: create (a new alert when the stakeholders had not heard of the incident,
    deduplicated by alias when they had) and a note saying the target was missed."""
    target = make_target("opsgenie", api_key=GENIE_KEY, api_url=opsgenie.url)
    key = incident()["key"]
    row = {"kind": "escalated", "text": "x", "data": {"after_s": 960, "target_s": 900}}
    await target.send(make_notification("escalated", events=(row,)))
    alert = opsgenie.alerts[key]
    assert alert["status"] == "open" and alert["count"] == 1
    assert "Not acknowledged within 15 min" in alert["description"]
    assert "Not acknowledged within 15 min" in alert["notes"][0]
    await target.send(make_notification("escalated", events=(row,), sequence=2))
    assert alert["count"] == 2 and len(alert["notes"]) == 2


async def test_opsgenie_notes_an_update_and_skips_a_reminder(
    opsgenie: OpsgenieFake, make_target: MakeTarget
) -> None:
    target = make_target("opsgenie", api_key=GENIE_KEY, api_url=opsgenie.url)
    await target.send(make_notification("opened"))
    mark = len(opsgenie.requests)
    reminder = {"kind": "reminder", "data": {"liaison": ["bob"]}}
    result = await target.send(make_notification("reminder", events=(reminder,)))
    assert result.skipped and len(opsgenie.requests) == mark
    update = {
        "kind": "status_update",
        "actor": "bob",
        "text": "Status update: rolled back",
        "data": {"text": "Rolled back, errors under 1%"},
    }
    # coalesced with the reminder it answers: one note, nothing for the reminder
    await target.send(make_notification("update", events=(reminder, update), sequence=3))
    assert [a[0] for a in opsgenie.actions] == ["notes"]
    assert "Rolled back, errors under 1%" in opsgenie.alerts[incident()["key"]]["notes"][0]
