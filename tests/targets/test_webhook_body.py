"""The generic webhook's body: every coalesced event says which notification event it is."""

from __future__ import annotations

from bridge.targets import REGISTRY, TargetDeps
from tests.targets.conftest import incident, make_notification


def test_each_coalesced_event_names_its_notification_event() -> None:
    target = REGISTRY["webhook"].from_settings(
        "hook", {"url": "http://127.0.0.1:9/x"}, TargetDeps()
    )
    events = (
        {"id": 1, "kind": "alert_resolved", "data": {"fingerprint": "f"}},
        {"id": 2, "kind": "status_changed", "data": {"from": "triggered", "to": "mitigated"}},
        {"id": 3, "kind": "status_changed", "data": {"from": "mitigated", "to": "triggered"}},
    )
    body = target.payload(make_notification("reopened", target="hook", events=events))  # type: ignore[attr-defined]
    assert body["version"] == "1"
    assert [(e["kind"], e["event"]) for e in body["events"]] == [
        ("alert_resolved", "timeline"),
        ("status_changed", "mitigated"),
        ("status_changed", "reopened"),
    ]


def test_counts_come_from_all_alerts_not_only_those_a_message_carries() -> None:
    """A message carries at most the 100 newest alerts; what it says of the rest is counted."""
    base = incident()
    carried = [dict(base["alerts"][0], fingerprint=f"{i:016x}") for i in range(100)]
    big = {**base, "alerts": carried, "alert_count": 500, "firing_count": 300}
    hook = REGISTRY["webhook"].from_settings("hook", {"url": "http://127.0.0.1:9/x"}, TargetDeps())
    body = hook.payload(make_notification("opened", target="hook", inc=big))  # type: ignore[attr-defined]
    assert body["truncated_alerts"] == 400
    chat = REGISTRY["slack_webhook"].from_settings(
        "chat", {"url": "https://hooks.slack.com/services/T/B/x"}, TargetDeps()
    )
    text = chat.render(make_notification("opened", target="chat", inc=big)).body
    assert "and 295 more alerts" in text
