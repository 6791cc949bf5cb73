"""The dead man's switch's pure part (core/heartbeats.py): lateness by interval plus grace from
the last beat or first sight, the step each tick must take (once per episode), which alerts beat
which heartbeat, and the alert a late heartbeat stands for."""

from __future__ import annotations

from typing import Any

from bridge.core.alertmanager import WebhookPayload
from bridge.core.heartbeats import (
    BeatIndex,
    Heartbeat,
    Seen,
    judge,
    matches,
    missing_payload,
    state_of,
)

S = 10**9
HB = Heartbeat("watchdog", interval_s=60, grace_s=30, alertname="Watchdog", labels={"env": "prod"})


def test_late_only_after_interval_plus_grace_from_the_last_beat() -> None:
    seen = Seen("watchdog", first_seen=0, last_seen=100 * S)
    assert judge(HB, seen, 190 * S).step is None  # exactly interval + grace: not yet
    assert judge(HB, seen, 190 * S).state == "ok"
    late = judge(HB, seen, 190 * S + 1)
    assert (late.state, late.step, late.due_at) == ("late", "raise", 190 * S)


def test_never_beaten_counts_from_first_sight() -> None:
    seen = Seen("watchdog", first_seen=1000 * S)
    assert judge(HB, seen, 1089 * S).step is None
    assert judge(HB, seen, 1091 * S).step == "raise"
    assert state_of(HB, None, 10**20) == "ok"  # not registered yet: nothing to say


def test_an_episode_is_raised_once_and_cleared_when_a_beat_comes() -> None:
    raised = Seen("watchdog", first_seen=0, last_seen=100 * S, late_since=190 * S)
    # still late, already raised: nothing to do on this tick or the next
    again = judge(HB, raised, 500 * S)
    assert (again.state, again.step) == ("late", None)
    back = Seen("watchdog", first_seen=0, last_seen=501 * S, late_since=190 * S)
    cleared = judge(HB, back, 502 * S)
    assert (cleared.state, cleared.step) == ("ok", "clear")
    assert judge(HB, Seen("watchdog", 0, 501 * S, None), 502 * S).step is None


def test_matches_by_alertname_and_every_label() -> None:
    assert matches(HB, {"alertname": "Watchdog", "env": "prod", "extra": "x"})
    assert not matches(HB, {"alertname": "Watchdog", "env": "dev"})
    assert not matches(HB, {"alertname": "Other", "env": "prod"})
    api_only = Heartbeat("backup", interval_s=86400)
    assert not matches(api_only, {"alertname": "Watchdog"})


def _payload(*alerts: dict[str, Any]) -> WebhookPayload:
    return WebhookPayload.model_validate(
        {
            "groupKey": "g",
            "status": "firing",
            "alerts": [
                {"startsAt": "2026-12-08T00:00:00Z", "status": "firing", **a} for a in alerts
            ],
        }
    )


def test_a_webhook_split_into_beats_and_the_alerts_left_for_incidents() -> None:
    index = BeatIndex([HB, Heartbeat("backup", interval_s=86400)])
    payload = _payload(
        {"labels": {"alertname": "Watchdog", "env": "prod"}},
        {"labels": {"alertname": "Watchdog", "env": "dev"}},
        {"labels": {"alertname": "DiskFull"}},
        {"labels": {"alertname": "Watchdog", "env": "prod"}, "status": "resolved"},
    )
    beats, rest = index.split(payload)
    assert beats == ["watchdog"]
    # the matching alerts are beats, resolved ones too: never an incident of their own
    assert [a.labels for a in rest.alerts] == [
        {"alertname": "Watchdog", "env": "dev"},
        {"alertname": "DiskFull"},
    ]
    only_resolved = _payload(
        {"labels": {"alertname": "Watchdog", "env": "prod"}, "status": "resolved"}
    )
    beats, rest = index.split(only_resolved)
    assert beats == [] and rest.alerts == []  # a resolved Watchdog is no beat
    plain = _payload({"labels": {"alertname": "DiskFull"}})
    assert index.split(plain) == ([], plain)
    assert not BeatIndex([Heartbeat("backup", interval_s=1)])  # no alertname: nothing to look up


def test_the_missing_alert_is_the_same_every_time_it_is_sent() -> None:
    hb = Heartbeat("watchdog", interval_s=60, labels={"team": "infra"}, severity="sev2")
    a = missing_payload(hb, since=190 * S)
    b = missing_payload(hb, since=190 * S)
    assert a == b
    alert = a.alerts[0]
    assert alert.status == "firing" and alert.starts_at == 190 * S
    assert alert.labels == {
        "team": "infra",
        "alertname": "HeartbeatMissing",
        "heartbeat": "watchdog",
    }
    assert a.group_key == "heartbeat:watchdog"
    resolved = missing_payload(hb, since=190 * S, resolved_at=300 * S).alerts[0]
    assert (resolved.status, resolved.fingerprint, resolved.ends_at) == (
        "resolved",
        alert.fingerprint,
        300 * S,
    )
