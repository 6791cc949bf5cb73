"""The reconciliation's decisions: one open incident's alerts against one answer of
Alertmanager's API."""

from __future__ import annotations

from typing import Any

from bridge.core.events import TIMELINE_KINDS, event_kind
from bridge.core.incidents import Incident
from bridge.core.reconcile import (
    ACTOR,
    AmAlert,
    AmSilence,
    AmView,
    LinkView,
    group_missing,
    plan_incident,
    trusted,
)
from bridge.core.timeutil import NS

T0 = 1_800_000_000 * NS
FETCHED = T0 + 100 * NS


def incident(status: str = "triggered") -> Incident:
    return Incident(
        id=7,
        key="k",
        title="Checkout down",
        severity="sev2",
        status=status,  # type: ignore[arg-type]
        started_at=T0,
        opened_at=T0,
        mitigated_at=T0 + 50 * NS if status == "mitigated" else None,
        receiver="bridge",
    )


def link(fp: str, status: str = "firing", *, seen: int = T0, mark: Any = None) -> LinkView:
    return LinkView(
        fingerprint=fp,
        status=status,
        starts_at=T0,
        ends_at=None if status == "firing" else T0 + 10 * NS,
        last_seen=seen,
        labels={"alertname": "Down", "instance": fp},
        mark=mark,
    )


def am(fp: str, **kw: Any) -> AmAlert:
    return AmAlert(fingerprint=fp, labels={"alertname": "Down", "instance": fp}, starts_at=T0, **kw)


def view(*alerts: AmAlert, silences: tuple[AmSilence, ...] = ()) -> AmView:
    return AmView(
        peer="http://am:9093",
        fetched_at=FETCHED,
        up_since=T0 - 3600 * NS,
        alerts={a.fingerprint: a for a in alerts},
        silences={s.id: s for s in silences},
        receivers=frozenset({"bridge"}),
    )


def silence(sid: str = "abc12345-0000") -> AmSilence:
    return AmSilence(
        id=sid,
        state="active",
        created_by="alice",
        comment="db maintenance",
        starts_at=T0,
        ends_at=T0 + 7200 * NS,
        matchers=('alertname="Down"',),
    )


def test_a_firing_alert_alertmanager_no_longer_lists_resolves_and_mitigates() -> None:
    plan = plan_incident(incident(), [link("a"), link("b")], view(am("b")), now=FETCHED + 5)
    assert [c.fingerprint for c in plan.links] == ["a"]
    assert plan.links[0].status == "resolved" and plan.links[0].mark == {"resolved_via": "api"}
    assert plan.links[0].ends_at == FETCHED
    assert [e.kind for e in plan.events] == ["alert_resolved"]
    assert plan.events[0].data["via"] == "api" and plan.events[0].actor == ACTOR
    assert "no webhook said so" in plan.events[0].text
    assert plan.incident.status == "triggered", "b still fires"

    plan = plan_incident(incident(), [link("a"), link("b")], view(), now=FETCHED + 5)
    assert [e.kind for e in plan.events] == ["alert_resolved", "alert_resolved", "status_changed"]
    assert plan.incident.status == "mitigated" and plan.incident.mitigated_at == FETCHED + 5
    assert plan.events[-1].data == {"from": "triggered", "to": "mitigated", "via": "api"}


def test_a_webhook_newer_than_the_answer_wins() -> None:
    # The webhook spoke of "a" after the answer was asked for: the answer may not know it yet.
    plan = plan_incident(incident(), [link("a", seen=FETCHED)], view(), now=FETCHED + 5)
    assert not plan.changed


def test_silenced_is_recorded_once_with_who_and_why_then_active_again() -> None:
    s = silence()
    answer = view(am("a", state="suppressed", silenced_by=(s.id,)), silences=(s,))
    plan = plan_incident(incident(), [link("a")], answer, now=FETCHED)
    [event] = plan.events
    assert event.kind == "alert_silenced"
    assert "abc12345" in event.text and "alice" in event.text and "db maintenance" in event.text
    assert event.data["silenced_by"][0]["created_by"] == "alice"
    [change] = plan.links
    assert change.status == "firing" and change.mark is not None

    again = plan_incident(incident(), [link("a", mark=change.mark)], answer, now=FETCHED)
    assert not again.changed, "the same silence is not recorded twice"

    active = plan_incident(incident(), [link("a", mark=change.mark)], view(am("a")), now=FETCHED)
    [event] = active.events
    assert event.kind == "alert_unsuppressed" and "active again" in event.text
    assert active.links[0].mark is None
    assert active.incident.status == "triggered"


def test_inhibited_names_the_inhibiting_alert() -> None:
    source = AmAlert(
        fingerprint="n1", labels={"alertname": "NodeDown", "instance": "x"}, starts_at=T0
    )
    answer = view(am("a", state="suppressed", inhibited_by=("n1",)), source)
    [event] = plan_incident(incident(), [link("a")], answer, now=FETCHED).events
    assert event.kind == "alert_inhibited"
    # the data holds the alert's name (as docs/reconcile.md says), the text its instance too
    assert event.data["inhibited_by"] == [
        {"fingerprint": "n1", "alertname": "NodeDown", "instance": "x"}
    ]
    assert "inhibited by NodeDown (x)" in event.text
    # an inhibiting alert the answer does not list: no name is made up
    unknown = view(am("a", state="suppressed", inhibited_by=("0123456789abcdef99",)))
    [event] = plan_incident(incident(), [link("a")], unknown, now=FETCHED).events
    assert event.data["inhibited_by"][0]["alertname"] == ""
    assert "inhibited by alert 0123456789abcdef" in event.text


def test_a_young_webhook_is_not_resolved_by_an_answer_that_lists_nothing() -> None:
    # An Alertmanager that Prometheus does not send to (or a lying one) lists nothing 2 s after
    # the firing webhook: under the minimum age nothing is resolved, nor even counted as gone.
    young = link("a", seen=FETCHED - 2 * NS)
    plan = plan_incident(incident(), [young], view(), now=FETCHED, min_age_ns=300 * NS)
    assert not plan.changed and plan.gone == frozenset()
    old = link("a", seen=FETCHED - 301 * NS)
    plan = plan_incident(incident(), [old], view(), now=FETCHED, min_age_ns=300 * NS)
    assert [e.kind for e in plan.events] == ["alert_resolved", "status_changed"]


def test_two_answers_in_a_row_must_agree_before_a_resolve() -> None:
    links = [link("a"), link("b")]
    first = plan_incident(incident(), links, view(am("b")), now=FETCHED, gone_before=frozenset())
    assert not first.changed and first.gone == frozenset({"a"})
    # the next answer lists "a" again: forgotten, nothing resolved
    again = plan_incident(incident(), links, view(am("a"), am("b")), now=FETCHED, gone_before={"a"})
    assert not again.changed and again.gone == frozenset()
    second = plan_incident(incident(), links, view(), now=FETCHED, gone_before=first.gone)
    assert [e.kind for e in second.events] == ["alert_resolved"]
    assert [c.fingerprint for c in second.links] == ["a"]
    assert second.gone == frozenset({"a", "b"}) and second.incident.status == "triggered"


def test_another_silence_is_a_new_entry_and_unprocessed_says_nothing() -> None:
    first, second = silence("s1"), silence("s2")
    mark = {"suppressed": {"silenced_by": [{"id": "s1"}]}}
    answer = view(am("a", state="suppressed", silenced_by=("s2",)), silences=(first, second))
    plan = plan_incident(incident(), [link("a", mark=mark)], answer, now=FETCHED)
    assert [e.kind for e in plan.events] == ["alert_silenced"]
    assert not plan_incident(
        incident(), [link("a")], view(am("a", state="unprocessed")), now=FETCHED
    ).changed


def test_an_alert_resolved_from_the_api_fires_again_when_listed_again() -> None:
    resolved = link("a", "resolved", mark={"resolved_via": "api"})
    plan = plan_incident(incident("mitigated"), [resolved], view(am("a")), now=FETCHED)
    assert [e.kind for e in plan.events] == ["alert_fired", "reopened"]
    assert plan.incident.status == "triggered" and plan.incident.mitigated_at is None
    assert plan.links[0].status == "firing" and plan.links[0].mark is None
    # A webhook's resolve is the webhook's word: the API does not undo it.
    by_webhook = link("a", "resolved")
    assert not plan_incident(
        incident("mitigated"), [by_webhook], view(am("a")), now=FETCHED
    ).changed


def test_another_occurrence_is_left_to_its_webhook() -> None:
    later = AmAlert(fingerprint="a", labels={"alertname": "Down"}, starts_at=T0 + NS)
    assert not plan_incident(incident(), [link("a")], view(later), now=FETCHED).changed


def test_trusted_needs_the_grace_period() -> None:
    assert trusted(T0, T0 + 300 * NS, 300)
    assert not trusted(T0, T0 + 299 * NS, 300)
    assert trusted(T0, T0, 0)


def test_group_missing_takes_the_receivers_alerts_with_the_group_labels() -> None:
    answer = view(
        AmAlert("a", {"alertname": "Down", "svc": "x"}, T0, receivers=("bridge",)),
        AmAlert("b", {"alertname": "Down", "svc": "x"}, T0 + 1, receivers=("bridge",)),
        AmAlert("c", {"alertname": "Down", "svc": "y"}, T0, receivers=("bridge",)),
        AmAlert("d", {"alertname": "Down", "svc": "x"}, T0, receivers=("other",)),
    )
    missing = group_missing(answer, "bridge", {"alertname": "Down", "svc": "x"}, {"a"})
    assert [a.fingerprint for a in missing] == ["b"]


def test_the_new_kinds_are_timeline_kinds_told_in_the_dedicated_channel() -> None:
    for kind in ("alert_silenced", "alert_inhibited", "alert_unsuppressed", "silence"):
        assert kind in TIMELINE_KINDS and event_kind(kind) == "timeline"


def test_the_api_s_milliseconds_are_the_same_start_as_the_webhook_s_nanoseconds() -> None:
    # Alertmanager's API shows startsAt to the millisecond; the webhook carried 285745 µs.
    held = LinkView("a", "firing", T0 + 285_745_000, None, T0, {"alertname": "Down"})
    s = silence()
    api = AmAlert(
        "a", {"alertname": "Down"}, T0 + 285_000_000, state="suppressed", silenced_by=(s.id,)
    )
    plan = plan_incident(incident(), [held], view(api, silences=(s,)), now=FETCHED)
    assert [e.kind for e in plan.events] == ["alert_silenced"]
