"""The generic webhook's body: every coalesced event says which notification event it is."""

from __future__ import annotations

from bridge.targets import REGISTRY, TargetDeps
from tests.targets.conftest import make_notification


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
