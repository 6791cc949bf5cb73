"""Reconciliation against the real Alertmanager 0.25: what its API says that the webhooks did not.

Each test starts Alertmanager first (its URL is what the bridge's ``--alertmanager-url`` needs),
then the bridge, then gives Alertmanager the bridge's URL with ``POST /-/reload``. The bridge
polls every second (``--reconcile-interval 1``) and trusts a peer from its first answer
(``--alertmanager-grace 0``) unless the test is about the grace.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOTH_BACKENDS
from tests.integration.procs import (
    LOOPBACK,
    Alertmanager,
    Bridge,
    alertmanager_config,
    http,
    metric_value,
    running_alertmanagers,
    wait_for,
)
from tests.integration.test_alertmanager import alert

pytestmark = pytest.mark.integration

TIMEOUT = 20.0  # seconds for a webhook or a reconcile tick to show (usually 1-3 s)
RECEIVER = "incident-bridge"  # the receiver of examples/alertmanager.yml
PLACEHOLDER = "http://127.0.0.1:9"  # the bridge's URL before the bridge is started
# Every alert may be resolved through the API as soon as two polls agree (the default minimum
# age since its last webhook, 5 minutes, is tested in tests/test_reconciler.py).
FAST = ("--reconcile-interval", "1", "--alertmanager-grace", "0", "--reconcile-min-age", "0")
API_TOKEN = "alice-write-token-0123456789"


def now_rfc3339(timespec: str = "milliseconds") -> str:
    """Now, by default to the millisecond: Alertmanager's API v2 shows times to the millisecond
    while its webhooks carry them as posted, and the bridge compares the two exactly (see
    ``test_silence_of_an_alert_started_within_a_millisecond``)."""
    return datetime.now(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


@contextlib.contextmanager
def bridge_behind(
    tmp_path: Path,
    binary: str,
    *,
    peers: int = 1,
    bridge_args: Sequence[str] = FAST,
    extra_urls_first: Sequence[str] = (),
    api_token: str | None = None,
    database_url: str | None = None,
    **config: Any,
) -> Iterator[tuple[Bridge, list[Alertmanager]]]:
    """Alertmanager (``peers`` clustered peers), a bridge reconciling with them (every peer's
    URL, after ``extra_urls_first``) on ``database_url`` (None: SQLite), and Alertmanager
    reloaded with the bridge's URL."""
    placeholder = alertmanager_config(PLACEHOLDER, "unused", **config)
    with running_alertmanagers(tmp_path, placeholder, peers=peers, binary=binary) as ams:
        urls = [*extra_urls_first, *(am.url for am in ams)]
        args = [a for url in urls for a in ("--alertmanager-url", url)]
        bridge = Bridge(
            tmp_path / "bridge",
            args=[*args, *bridge_args],
            api_token=api_token,
            database_url=database_url,
        )
        try:
            bridge.start()
            for am in ams:
                am.reload(alertmanager_config(bridge.url, bridge.token, **config))
            yield bridge, ams
        finally:
            bridge.stop()


def one_incident(bridge: Bridge) -> dict[str, Any] | None:
    listed = bridge.incidents()
    assert len(listed) <= 1, f"expected one incident, got {[i['key'] for i in listed]}"
    return bridge.incident(listed[0]["id"]) if listed else None


def wait_incident(
    bridge: Bridge, what: str, check: Any, timeout: float = TIMEOUT
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        incident = one_incident(bridge)
        return incident if incident is not None and check(incident) else None

    found: dict[str, Any] = wait_for(what, probe, timeout, interval=0.2)
    return found


def entries(incident: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in incident["timeline"] if e["kind"] == kind]


def by_instance(incident: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["labels"]["instance"]: a for a in incident["alerts"]}


def metric(bridge: Bridge, name: str, **labels: str) -> float:
    return metric_value(bridge.metrics(), name, **labels)


def amtool(binary: str, am: Alertmanager, *args: str) -> str:
    done = subprocess.run(
        [binary, *args, f"--alertmanager.url={am.url}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout.strip()


def silences(am: Alertmanager) -> list[dict[str, Any]]:
    resp = http("GET", am.url + "/api/v2/silences")
    assert resp.status == 200, resp.body[:500]
    found: list[dict[str, Any]] = resp.json()
    return found


# --- 1. a resolve the webhook never carries --------------------------------------------------


@BOTH_BACKENDS
def test_missed_resolve_is_learned_from_the_api(
    alertmanager_binary: str, tmp_path: Path, bridge_db: str | None
) -> None:
    """`send_resolved: false`: no webhook says the alert ended; the reconciler resolves it."""
    with bridge_behind(
        tmp_path, alertmanager_binary, send_resolved=False, database_url=bridge_db
    ) as (bridge, [am]):
        name, started = unique("ReconcileMissed"), now_rfc3339()
        am.post_alerts([alert(name, "web-1", started)])
        incident = wait_incident(bridge, "a triggered incident", lambda i: i["alerts"])
        assert incident["status"] == "triggered"
        [fired] = incident["alerts"]
        assert fired["resolved_via"] is None and fired["suppressed"] is None
        webhooks = metric(bridge, "incident_bridge_webhook_requests_total", code="200")

        am.post_alerts([alert(name, "web-1", started, now_rfc3339())])
        incident = wait_incident(
            bridge, "the incident mitigated by the API", lambda i: i["status"] == "mitigated"
        )
        [resolved] = incident["alerts"]
        assert resolved["status"] == "resolved"
        assert resolved["resolved_via"] == "api"
        [entry] = entries(incident, "alert_resolved")
        assert entry["data"]["via"] == "api"
        assert entry["actor"] == "alertmanager-api"
        [status] = [e for e in entries(incident, "status_changed") if e["data"].get("via")]
        assert status["data"]["to"] == "mitigated" and status["actor"] == "alertmanager-api"
        assert metric(bridge, "incident_bridge_webhook_requests_total", code="200") == webhooks, (
            "no webhook came: send_resolved is false"
        )
        assert metric(bridge, "incident_bridge_reconcile_changes_total", kind="alert_resolved") == 1
        assert metric(bridge, "incident_bridge_alertmanager_up") == 1
        ready = http("GET", bridge.url + "/-/ready")
        assert ready.status == 200
        assert "alertmanager: reconciled at" in ready.body.decode(), ready.body


# --- 2. a silence made with amtool -----------------------------------------------------------


@BOTH_BACKENDS
def test_silence_and_its_expiry_are_recorded_once(
    alertmanager_binary: str, amtool_binary: str, tmp_path: Path, bridge_db: str | None
) -> None:
    with bridge_behind(tmp_path, alertmanager_binary, database_url=bridge_db) as (bridge, [am]):
        name = unique("ReconcileSilenced")
        am.post_alerts([alert(name, "db-1", now_rfc3339())])
        wait_incident(bridge, "a triggered incident", lambda i: i["alerts"])

        silence_id = amtool(
            amtool_binary,
            am,
            "silence",
            "add",
            "--author=alice",
            "--comment=db maintenance",
            "--duration=1h",
            f"alertname={name}",
        )
        assert silence_id and " " not in silence_id, "amtool prints the id alone"
        incident = wait_incident(
            bridge, "the alert silenced", lambda i: i["alerts"][0]["suppressed"] is not None
        )
        [silenced] = entries(incident, "alert_silenced")
        assert silenced["actor"] == "alertmanager-api"
        [by] = silenced["data"]["silenced_by"]
        assert by["id"] == silence_id
        assert by["created_by"] == "alice"
        assert by["comment"] == "db maintenance"
        assert by["ends_at"]
        suppressed = incident["alerts"][0]["suppressed"]
        assert [s["id"] for s in suppressed["silenced_by"]] == [silence_id]
        assert incident["status"] == "triggered", "a silence does not resolve anything"

        # Several more ticks change nothing: the same silence is recorded once.
        ticks = metric(bridge, "incident_bridge_reconcile_last_success_timestamp_seconds")
        time.sleep(3.5)
        if ticks:
            assert (
                metric(bridge, "incident_bridge_reconcile_last_success_timestamp_seconds") > ticks
            ), "the reconciler kept ticking"
        later = one_incident(bridge)
        assert later is not None
        assert len(entries(later, "alert_silenced")) == 1, later["timeline"]

        amtool(amtool_binary, am, "silence", "expire", silence_id)
        incident = wait_incident(
            bridge, "the alert active again", lambda i: i["alerts"][0]["suppressed"] is None
        )
        [unsuppressed] = entries(incident, "alert_unsuppressed")
        assert unsuppressed["actor"] == "alertmanager-api"
        assert [s["id"] for s in unsuppressed["data"]["was"]["silenced_by"]] == [silence_id]
        assert len(entries(incident, "alert_silenced")) == 1
        assert incident["alerts"][0]["status"] == "firing"
        assert metric(bridge, "incident_bridge_reconcile_changes_total", kind="alert_silenced") == 1


def test_silence_of_an_alert_started_within_a_millisecond(
    alertmanager_binary: str, amtool_binary: str, tmp_path: Path
) -> None:
    with bridge_behind(tmp_path, alertmanager_binary) as (bridge, [am]):
        name = unique("ReconcilePrecise")
        am.post_alerts([alert(name, "db-1", now_rfc3339("microseconds"))])
        wait_incident(bridge, "a triggered incident", lambda i: i["alerts"])
        amtool(amtool_binary, am, "silence", "add", "--author=alice", "--comment=c", name)
        wait_incident(
            bridge,
            "the alert silenced",
            lambda i: i["alerts"][0]["suppressed"] is not None,
            timeout=6,
        )


# --- 3. inhibition ---------------------------------------------------------------------------


@BOTH_BACKENDS
def test_inhibited_alert_names_its_inhibitor(
    alertmanager_binary: str, tmp_path: Path, bridge_db: str | None
) -> None:
    target = unique("ReconcileTarget")
    rules = [
        {
            "source_matchers": ['alertname="NodeDown"'],
            "target_matchers": [f'alertname="{target}"'],
            "equal": ["instance"],
        }
    ]
    with bridge_behind(
        tmp_path, alertmanager_binary, inhibit_rules=rules, database_url=bridge_db
    ) as (bridge, [am]):
        am.post_alerts([alert(target, "node-7", now_rfc3339())])
        incident = wait_incident(bridge, "the target's incident", lambda i: i["alerts"])
        target_id = incident["id"]

        am.post_alerts([alert("NodeDown", "node-7", now_rfc3339())])

        def inhibited() -> dict[str, Any] | None:
            found = bridge.incident(target_id)
            return found if entries(found, "alert_inhibited") else None

        incident = wait_for("the target inhibited", inhibited, TIMEOUT, interval=0.2)
        [entry] = entries(incident, "alert_inhibited")
        assert entry["actor"] == "alertmanager-api"
        [by] = entry["data"]["inhibited_by"]
        assert by["alertname"] == "NodeDown", by  # the alert's name, not a display name
        assert by["fingerprint"]
        [held] = incident["alerts"]
        assert held["suppressed"] is not None
        assert held["suppressed"]["inhibited_by"][0]["fingerprint"] == by["fingerprint"]
        assert held["status"] == "firing"


# --- 4. a group truncated by max_alerts --------------------------------------------------------


@BOTH_BACKENDS
def test_truncated_group_is_completed_from_the_api(
    alertmanager_binary: str, tmp_path: Path, bridge_db: str | None
) -> None:
    with bridge_behind(tmp_path, alertmanager_binary, max_alerts=2, database_url=bridge_db) as (
        bridge,
        [am],
    ):
        name, started = unique("ReconcileTruncated"), now_rfc3339()
        am.post_alerts([alert(name, f"web-{n}", started) for n in range(1, 6)])
        incident = wait_incident(
            bridge, "all five alerts on the incident", lambda i: len(i["alerts"]) == 5
        )
        assert incident["truncated_alerts"] == 3, "the webhook carried two of five"
        assert {a["status"] for a in incident["alerts"]} == {"firing"}
        fired = entries(incident, "alert_fired")
        via_api = [e for e in fired if e["data"].get("via") == "api"]
        assert len(fired) == 5 and len(via_api) == 3, [e["data"] for e in fired]
        fps = {a["fingerprint"] for a in incident["alerts"]}
        assert {e["data"]["fingerprint"] for e in fired} == fps
        assert metric(bridge, "incident_bridge_reconcile_changes_total", kind="attached") == 3
        assert len(bridge.incidents()) == 1


# --- 5. silence on acknowledge ---------------------------------------------------------------

SILENCE_RULES = """\
targets:
  console: {type: console}
route:
  severity_from:
    label: severity
    map: {critical: sev2}
    default: sev4
  silence_on_ack: 2h
  tiers:
    general: [console]
"""


@BOTH_BACKENDS
def test_acknowledge_silences_and_resolve_expires(
    alertmanager_binary: str, tmp_path: Path, bridge_db: str | None
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(SILENCE_RULES)
    tokens = tmp_path / "api-tokens"
    tokens.write_text(f"alice write {API_TOKEN}\n")
    tokens.chmod(0o600)
    args = [*FAST, "--rules", str(rules), "--api-tokens-file", str(tokens)]
    write = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}
    with bridge_behind(
        tmp_path, alertmanager_binary, bridge_args=args, api_token=API_TOKEN, database_url=bridge_db
    ) as (bridge, [am]):
        name = unique("ReconcileAck")
        am.post_alerts([alert(name, "web-1", now_rfc3339())])
        incident = wait_incident(bridge, "a triggered incident", lambda i: i["alerts"])
        i = incident["id"]

        resp = http("POST", f"{bridge.url}/api/v1/incidents/{i}/acknowledge", b"{}", write)
        assert resp.status == 200, resp.body
        assert bridge.incident(i)["status"] == "acknowledged"

        def ours() -> list[dict[str, Any]]:
            return [s for s in silences(am) if f"incident-bridge incident #{i}" in s["comment"]]

        [made] = wait_for(
            "the silence in Alertmanager",
            lambda: [s for s in ours() if s["status"]["state"] == "active"],
            TIMEOUT,
            interval=0.2,
        )
        assert made["createdBy"] == "alice", made
        matchers = {m["name"]: m["value"] for m in made["matchers"]}
        assert matchers.get("alertname") == name, made["matchers"]

        def silence_entries(action: str) -> list[dict[str, Any]]:
            found = bridge.incident(i)
            return [e for e in entries(found, "silence") if e["data"].get("action") == action]

        [created] = wait_for(
            "the silence on the timeline", lambda: silence_entries("created"), TIMEOUT
        )
        assert made["id"] in created["data"]["ids"], created

        # The reconciler sees the bridge's own silence as any other.
        wait_incident(
            bridge, "the alert silenced", lambda x: x["alerts"][0]["suppressed"] is not None
        )

        body = json.dumps({"reason": "fixed by a rollback"}).encode()
        resp = http("POST", f"{bridge.url}/api/v1/incidents/{i}/resolve", body, write)
        assert resp.status == 200, resp.body
        wait_for(
            "the silence expired in Alertmanager",
            lambda: [s for s in ours() if s["status"]["state"] == "expired"] == ours() or None,
            TIMEOUT,
            interval=0.2,
        )
        [expired] = wait_for(
            "the expiry on the timeline", lambda: silence_entries("expired"), TIMEOUT
        )
        assert made["id"] in expired["data"]["ids"], expired
        assert len(ours()) == 1, "one silence made, none again after the resolve"


# --- 6. Alertmanager restarted with empty memory ---------------------------------------------


def test_restarted_alertmanager_resolves_nothing_within_the_grace(
    alertmanager_binary: str, tmp_path: Path
) -> None:
    grace = 5.0
    args = [*FAST[:2], "--alertmanager-grace", f"{grace:g}", *FAST[4:]]
    with bridge_behind(tmp_path, alertmanager_binary, bridge_args=args, repeat_interval="1m") as (
        bridge,
        [am],
    ):
        name, started = unique("ReconcileRestart"), now_rfc3339()
        firing = alert(name, "web-1", started)
        am.post_alerts([firing])
        incident = wait_incident(bridge, "a triggered incident", lambda i: i["alerts"])
        i = incident["id"]
        wait_for(
            "a trusted answer (the first peer is older than the grace)",
            lambda: metric(bridge, "incident_bridge_alertmanager_up") == 1,
            TIMEOUT,
            interval=0.2,
        )

        def still_firing() -> None:
            found = bridge.incident(i)
            assert found["status"] == "triggered", found["timeline"]
            assert [a["status"] for a in found["alerts"]] == ["firing"]
            assert not entries(found, "alert_resolved"), found["timeline"]

        # Stopped: unreachable, counted, nothing resolved.
        am.stop()
        before = metric(
            bridge, "incident_bridge_alertmanager_api_errors_total", reason="unreachable"
        )
        wait_for(
            "the unreachable Alertmanager counted",
            lambda: (
                metric(
                    bridge, "incident_bridge_alertmanager_api_errors_total", reason="unreachable"
                )
                > before
            ),
            TIMEOUT,
            interval=0.2,
        )
        assert metric(bridge, "incident_bridge_alertmanager_up") == 0
        still_firing()

        # A new process on the same port, with empty storage: young, not trusted.
        fresh = Alertmanager(
            alertmanager_binary, tmp_path / "am-restarted", am.config, web_port=am.port
        ).start()
        restarted_at = time.monotonic()
        try:
            assert fresh.url == am.url

            def within_grace() -> str | None:
                resp = http("GET", bridge.url + "/-/ready")
                assert resp.status == 200, "ready stays 200: webhooks are still taken"
                body = resp.body.decode()
                return body if "alertmanager-grace" in body else None

            ready = wait_for(
                "/-/ready to say the peer is within its grace", within_grace, grace - 1, 0.2
            )
            assert "alertmanager:" in ready and "nothing is reconciled" in ready, ready
            while time.monotonic() - restarted_at < 3:
                still_firing()
                assert metric(bridge, "incident_bridge_alertmanager_up") == 0
                time.sleep(0.3)
            assert http("GET", bridge.url + "/-/ready").status == 200

            # Prometheus resends its alerts before the grace ends.
            assert time.monotonic() - restarted_at < grace
            fresh.post_alerts([firing])
            wait_for(
                "a trusted answer after the grace",
                lambda: metric(bridge, "incident_bridge_alertmanager_up") == 1,
                TIMEOUT,
                interval=0.2,
            )
            time.sleep(1.5)  # a tick or two more
            still_firing()
        finally:
            fresh.stop()


# --- 7. HA pair ------------------------------------------------------------------------------


def test_ha_pair_reconciles_through_the_remaining_peer(
    alertmanager_binary: str, tmp_path: Path
) -> None:
    with bridge_behind(tmp_path, alertmanager_binary, peers=2, send_resolved=False) as (
        bridge,
        peers,
    ):
        name, started = unique("ReconcileHA"), now_rfc3339()
        for am in peers:
            am.post_alerts([alert(name, "web-1", started)])
        incident = wait_incident(bridge, "a triggered incident", lambda i: i["alerts"])
        assert incident["status"] == "triggered"

        peers[0].stop()
        # Only the remaining peer hears the resolve (as Prometheus would tell it).
        peers[1].post_alerts([alert(name, "web-1", started, now_rfc3339())])
        incident = wait_incident(
            bridge, "the resolve learned from peer 1", lambda i: i["status"] == "mitigated"
        )
        [resolved] = incident["alerts"]
        assert resolved["resolved_via"] == "api"
        [entry] = entries(incident, "alert_resolved")
        assert entry["data"]["via"] == "api"
        assert entry["data"].get("peer") == peers[1].url, entry["data"]
        wait_for(
            "peer 0's failure counted",
            lambda: metric(
                bridge, "incident_bridge_alertmanager_api_errors_total", reason="unreachable"
            ),
            TIMEOUT,
            interval=0.2,
        )
        time.sleep(2)
        assert metric(bridge, "incident_bridge_alertmanager_up") == 1, "peer 1 still answers"


# --- 8. a broken peer does not hold ingest up ------------------------------------------------


class _Broken(BaseHTTPRequestHandler):
    """Every request: a 500 with an HTML page (a proxy's error page)."""

    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        page = b"<html><body><h1>500 Internal Server Error</h1></body></html>"
        self.send_response(500)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def broken_server() -> Iterator[str]:
    server = ThreadingHTTPServer((LOOPBACK, 0), _Broken)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def webhook(name: str) -> dict[str, Any]:
    started = now_rfc3339()
    labels = {"alertname": name, "service": "checkout", "severity": "critical"}
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": RECEIVER,
        "groupLabels": {"alertname": name},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.test",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": name},
                "startsAt": started,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.test/graph",
                "fingerprint": uuid.uuid5(uuid.NAMESPACE_DNS, name).hex[:16],
            }
        ],
    }


def test_broken_peer_answering_html_500_does_not_hold_ingest_up(
    alertmanager_binary: str, tmp_path: Path
) -> None:
    with (
        broken_server() as broken,
        bridge_behind(tmp_path, alertmanager_binary, extra_urls_first=[broken]) as (bridge, [_]),
    ):
        wait_for(
            "the broken peer's answer counted as http_error",
            lambda: metric(
                bridge, "incident_bridge_alertmanager_api_errors_total", reason="http_error"
            ),
            TIMEOUT,
            interval=0.2,
        )
        assert _Broken.requests > 0
        for n in range(3):
            began = time.monotonic()
            resp = bridge.post_webhook(webhook(unique(f"ReconcileIngest{n}")))
            took = time.monotonic() - began
            assert resp.status == 200, resp.body
            assert took < 2.0, f"a webhook took {took:.2f}s while a peer is broken"
        assert len(bridge.incidents()) == 3
        # The real peer (second in the list) answers: reconciliation goes on through it, and
        # it does not list these alerts (they never went through it), so they are resolved.
        assert metric(bridge, "incident_bridge_alertmanager_up") == 1
        wait_for(
            "the three incidents mitigated from the real peer's answer",
            lambda: all(i["status"] == "mitigated" for i in bridge.incidents()),
            TIMEOUT,
            interval=0.2,
        )
        ready = http("GET", bridge.url + "/-/ready")
        assert ready.status == 200
        assert "alertmanager:" in ready.body.decode()
