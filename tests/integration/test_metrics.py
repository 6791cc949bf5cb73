"""The incident metrics against a real ``incident-bridge serve``: computed from the store, so a
restart shows the same values and a SIGKILL mid-load leaves the histograms' counts equal to the
incidents with that milestone; ``promtool check metrics`` accepts /metrics."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.config import api_token_path
from tests.conftest import BOTH_BACKENDS
from tests.integration.procs import Bridge, http, metric_value

# Each test on both backends (the incidents' metrics are computed from the store).
pytestmark = BOTH_BACKENDS

PREFIX = "incident_bridge_"
HISTOGRAMS = {
    "time_to_acknowledge_seconds": "acknowledged_at",
    "time_to_mitigate_seconds": "mitigated_at",
    "time_to_resolve_seconds": "resolved_at",
    "detection_delay_seconds": "opened_at",
}


def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def payload(name: str, started: datetime, resolved: datetime | None = None) -> dict[str, Any]:
    status = "resolved" if resolved else "firing"
    alert: dict[str, Any] = {
        "status": status,
        "labels": {"alertname": name, "service": "checkout", "severity": "critical"},
        "annotations": {"summary": name},
        "startsAt": rfc3339(started),
        "endsAt": rfc3339(resolved) if resolved else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.test/graph",
        "fingerprint": uuid.uuid5(uuid.NAMESPACE_DNS, name).hex[:16],
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "bridge",
        "groupLabels": {"alertname": name},
        "commonLabels": alert["labels"],
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.test",
        "alerts": [alert],
    }


def incident_series(text: str) -> dict[str, float]:
    """The samples of the incident metrics, by series."""
    names = [PREFIX + n for n in HISTOGRAMS] + [
        PREFIX + "incidents_opened_total",
        PREFIX + "incidents_reopened_total",
        PREFIX + "followups_open",
        PREFIX + "postmortems_pending",
    ]
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not any(line.startswith(n) for n in names):
            continue
        series, _, value = line.rpartition(" ")
        out[series] = float(value)
    return out


class Api:
    def __init__(self, bridge: Bridge) -> None:
        token = api_token_path(bridge.db).read_text().strip()
        self.bridge = bridge
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def act(self, incident_id: int, move: str) -> int:
        url = f"{self.bridge.url}/api/v1/incidents/{incident_id}/{move}"
        return http("POST", url, b"{}", self.headers).status


def drive(bridge: Bridge, api: Api, n: int, tag: str) -> None:
    """n incidents with known lives: opened 2 min after their alert started; every other one
    acknowledged; alerts resolved (mitigated) for two thirds; every third resolved by hand."""
    base = datetime.now(UTC) - timedelta(hours=1)
    for i in range(n):
        name = f"Metrics{tag}{i}"
        started = base - timedelta(minutes=2)
        assert bridge.post_webhook(payload(name, started)).status == 200
    ids = {
        i["title"]: i["id"] for i in bridge.incidents() if i["title"].startswith(f"Metrics{tag}")
    }
    assert len(ids) == n
    for i in range(n):
        name = f"Metrics{tag}{i}"
        iid = ids.get(name) or next(v for k, v in ids.items() if name in k)
        if i % 2 == 0:
            assert api.act(iid, "acknowledge") == 200
        if i % 3 != 2:
            resolved = datetime.now(UTC)
            assert (
                bridge.post_webhook(payload(name, base - timedelta(minutes=2), resolved)).status
                == 200
            )
        else:
            assert api.act(iid, "resolve") == 200


def _settled(bridge: Bridge, tick_s: float) -> dict[str, float]:
    """The incident series once the scheduler's ticks change them no more (the follow-ups of
    the incidents just mitigated are opened by a tick, not by the mitigation)."""
    seen = incident_series(bridge.metrics())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(2.5 * tick_s)
        now = incident_series(bridge.metrics())
        if now == seen:
            return now
        seen = now
    raise AssertionError("the incident metrics kept changing for 30 s")


def test_a_restart_shows_the_same_incident_metrics(tmp_path: Path, bridge_db: str | None) -> None:
    tick = ["--scheduler-interval", "1"]
    bridge = Bridge(tmp_path / "bridge", args=tick, database_url=bridge_db).start()
    try:
        drive(bridge, Api(bridge), 9, "R")
        before = _settled(bridge, 1.0)
        assert metric_value(bridge.metrics(), PREFIX + "incidents_opened_total") == 9
        assert metric_value(bridge.metrics(), PREFIX + "time_to_acknowledge_seconds_count") == 5
        assert metric_value(bridge.metrics(), PREFIX + "time_to_resolve_seconds_count") == 3
        assert metric_value(bridge.metrics(), PREFIX + "time_to_mitigate_seconds_count") == 9
        delay = metric_value(bridge.metrics(), PREFIX + "detection_delay_seconds_sum")
        assert 9 * 3600 < delay < 9 * 3800  # the alerts started an hour (and 2 min) ago
        assert bridge.stop() == 0
        bridge.start()
        after = incident_series(bridge.metrics())
        assert after == before
        # more work after the restart: counters and buckets only go up
        drive(bridge, Api(bridge), 3, "S")
        later = incident_series(bridge.metrics())
        for series, value in before.items():
            assert later.get(series, 0.0) >= value, series
        assert metric_value(bridge.metrics(), PREFIX + "incidents_opened_total") == 12
    finally:
        bridge.stop()


def test_sigkill_mid_load_leaves_counts_equal_to_the_milestones(
    tmp_path: Path, bridge_db: str | None
) -> None:
    bridge = Bridge(tmp_path / "bridge", database_url=bridge_db).start()
    api = Api(bridge)
    stop = threading.Event()
    errors: list[BaseException] = []

    def load(worker: int) -> None:
        base = datetime.now(UTC) - timedelta(minutes=30)
        i = 0
        while not stop.is_set():
            name = f"Kill{worker}x{i}"
            try:
                bridge.post_webhook(payload(name, base))
                bridge.post_webhook(payload(name, base, datetime.now(UTC)))
            except OSError:
                return  # the process is gone
            except BaseException as exc:  # reported below
                errors.append(exc)
                return
            i += 1

    def acks() -> None:
        while not stop.is_set():
            try:
                page = bridge.get_json("/api/v1/incidents?limit=20")
                for incident in page["incidents"]:
                    if incident["acknowledged_at"] is None:
                        api.act(incident["id"], "acknowledge")
                        api.act(incident["id"], "resolve")
            except (OSError, AssertionError):
                return

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    threads.append(threading.Thread(target=acks))
    for t in threads:
        t.start()
    time.sleep(3)
    bridge.kill()  # SIGKILL
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    [(total,)] = bridge.rows("SELECT count(*) FROM incidents")
    expected = {
        name: bridge.rows(f"SELECT count(*) FROM incidents WHERE {column} IS NOT NULL")[0][0]
        for name, column in HISTOGRAMS.items()
    }
    assert total > 20, "the load did too little"
    assert expected["time_to_acknowledge_seconds"] > 0
    bridge.start()
    try:
        text = bridge.metrics()
        for name, count in expected.items():
            assert metric_value(text, PREFIX + name + "_count") == count, name
            assert metric_value(text, PREFIX + name + "_bucket", le="+Inf") == count, name
        assert metric_value(text, PREFIX + "incidents_opened_total") == total
    finally:
        bridge.stop()


def test_promtool_accepts_the_metrics(
    tmp_path: Path, promtool_binary: str, bridge_db: str | None
) -> None:
    bridge = Bridge(tmp_path / "bridge", database_url=bridge_db).start()
    try:
        drive(bridge, Api(bridge), 3, "P")
        text = bridge.metrics()
    finally:
        bridge.stop()
    assert "_created" not in text
    assert 'build_info{python="' in text
    result = subprocess.run(
        [promtool_binary, "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert not result.stdout.strip() and not result.stderr.strip(), result
    json.dumps(incident_series(text))  # plain numbers


RULES = """\
targets:
  console: {type: console}
route:
  name: default
  severity: sev2
  tiers:
    general: [console]
  routes:
    - name: payments
      matchers: ['team="payments"']
      team: payments
"""


def test_team_labels_come_from_the_rules(tmp_path: Path, bridge_db: str | None) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    bridge = Bridge(tmp_path / "bridge", args=["--rules", str(rules)], database_url=bridge_db)
    bridge.start()
    try:
        started = datetime.now(UTC) - timedelta(minutes=5)
        for name, team in [("A", "payments"), ("B", "growth"), ("C", None), ("D", "x" * 40)]:
            body = payload(f"Team{name}", started)
            if team is not None:
                body["alerts"][0]["labels"]["team"] = team  # the root takes it from the label
            assert bridge.post_webhook(body).status == 200
        text = bridge.metrics()
    finally:
        bridge.stop()
    opened = PREFIX + "incidents_opened_total"
    assert metric_value(text, opened, severity="sev2", team="payments") == 1
    assert metric_value(text, opened, severity="sev2", team="other") == 2  # growth, xxx...
    assert metric_value(text, opened, severity="sev2", team="none") == 1
    teams = set(re.findall(r'\bteam="([^"]*)"', text))
    assert teams == {"payments", "other", "none"}, teams
