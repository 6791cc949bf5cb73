"""The dead man's switch with the real Alertmanager: a Watchdog alert posted to Alertmanager's
API reaches the bridge every repeat_interval as a beat (never an incident); Alertmanager is
stopped, and the bridge opens the heartbeat's incident by itself within interval + grace + one
scheduler tick; Alertmanager starts again (same config, same data folder), the Watchdog comes
back and the incident is mitigated."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import BOTH_BACKENDS
from tests.integration.procs import (
    TOKEN,
    Alertmanager,
    alertmanager_config,
    running_bridge,
    wait_for,
)

pytestmark = BOTH_BACKENDS
INTERVAL_S, GRACE_S, TICK_S = 3.0, 2.0, 1.0
RULES = f"""
targets:
  general: {{type: console}}
route:
  name: root
  tiers: {{general: [general]}}
heartbeats:
  watchdog:
    interval: {INTERVAL_S:g}s
    grace: {GRACE_S:g}s
    alertname: Watchdog
    labels: {{prometheus: prod}}
    severity: sev1
"""


def _watchdog() -> list[dict[str, Any]]:
    """The Watchdog as Prometheus sends it: firing, its end far ahead (Prometheus would renew
    it every evaluation; the test posts it once per Alertmanager life)."""
    now = datetime.now(UTC)
    return [
        {
            "labels": {"alertname": "Watchdog", "prometheus": "prod", "severity": "none"},
            "annotations": {"summary": "the pipeline is alive"},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
        }
    ]


def _heartbeat(bridge: Any) -> dict[str, Any]:
    (found,) = bridge.get_json("/api/v1/heartbeats")["heartbeats"]
    assert found["name"] == "watchdog"
    return dict(found)


def _incident(bridge: Any) -> dict[str, Any] | None:
    rows = bridge.rows(
        "SELECT id, status, severity FROM incidents WHERE key = 'heartbeat:watchdog'"
    )
    assert len(rows) <= 1, rows  # one incident per lateness episode
    return {"id": rows[0][0], "status": rows[0][1], "severity": rows[0][2]} if rows else None


def test_a_stopped_alertmanager_opens_the_heartbeat_incident_and_its_return_mitigates_it(
    tmp_path: Path, alertmanager_binary: str, bridge_db: str | None
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    args = ["--rules", str(rules), "--scheduler-interval", f"{TICK_S:g}"]
    with running_bridge(tmp_path / "bridge", args=args, database_url=bridge_db) as bridge:
        config = alertmanager_config(
            bridge.url,
            TOKEN,
            group_by=("alertname",),
            group_wait="0s",
            group_interval="1s",
            repeat_interval="1s",
        )
        am = Alertmanager(alertmanager_binary, tmp_path / "am", config).start()
        try:
            am.post_alerts(_watchdog())
            first = wait_for("a first beat", lambda: _heartbeat(bridge)["last_seen"], 15)
            # beats keep coming (Alertmanager repeats the group), and the Watchdog is no incident
            wait_for("a later beat", lambda: _heartbeat(bridge)["last_seen"] != first or None, 15)
            assert bridge.rows("SELECT count(*) FROM incidents") == [(0,)]
            assert _heartbeat(bridge)["state"] == "ok"

            am.stop()
            stopped = time.monotonic()
            incident = wait_for("the heartbeat's incident", lambda: _incident(bridge), 30)
            took = time.monotonic() - stopped
            print(f"heartbeat incident {took:.1f} s after Alertmanager stopped")
            # the last beat came at most one repeat (about 1-2 s) before the stop
            assert took <= INTERVAL_S + GRACE_S + TICK_S + 1.0, took
            assert (incident["status"], incident["severity"]) == ("triggered", "sev1")
            assert _heartbeat(bridge)["state"] == "late"
            assert 'incident_bridge_heartbeat_state{heartbeat="watchdog"} 1.0' in bridge.metrics()
            # still one incident a few ticks later
            time.sleep(2 * TICK_S)
            assert _incident(bridge) == incident

            # Alertmanager back with the same config and data: it keeps no alerts across a
            # restart, Prometheus sends the Watchdog again at its next evaluation (posted here)
            am.start()
            am.post_alerts(_watchdog())
            back = wait_for(
                "the incident mitigated",
                lambda: (i := _incident(bridge)) and i["status"] == "mitigated" and i,
                30,
            )
            assert back["id"] == incident["id"]
            assert _heartbeat(bridge)["state"] == "ok"
            entries = bridge.rows(
                "SELECT kind, actor FROM timeline WHERE incident_id = ? ORDER BY id",
                incident["id"],
            )
            assert ("alert_fired", "incident-bridge") in entries
            assert ("alert_resolved", "incident-bridge") in entries
            assert 'incident_bridge_heartbeat_state{heartbeat="watchdog"} 0.0' in bridge.metrics()
            assert bridge.rows("SELECT count(*) FROM incidents") == [(1,)]
        finally:
            am.stop()
