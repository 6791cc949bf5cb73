"""The shipped dashboard proven against the real Prometheus (Debian package) scraping a real
``incident-bridge serve`` every second: incidents with known durations go in through the
webhook and the API, then every panel target of helm/incident-bridge/dashboards/incident-bridge.json
(rows included), its Grafana variables substituted, is asked of that Prometheus: each query
parses and returns data, and the MTTR panel's mean equals the known mean.

A missing /usr/bin/prometheus skips on a laptop and fails under CI=true."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.integration.procs import (
    LOOPBACK,
    Bridge,
    _clean_env,
    _terminate,
    free_port,
    http,
    wait_for,
)
from tests.integration.test_metrics import Api, payload

DASHBOARD = (
    Path(__file__).resolve().parents[2] / "helm" / "incident-bridge" / "dashboards"
) / "incident-bridge.json"
RULES = """\
targets:
  ok: {type: webhook, url: "${OK_URL}"}
  broken: {type: webhook, url: "${BROKEN_URL}"}
route:
  name: default
  severity_from:
    label: severity
    map: {critical: sev1, warning: sev3}
    default: sev4
  tiers:
    general: [ok, broken]
  routes:
    - name: payments
      matchers: ['team="payments"']
      team: payments
"""
# The resolved incidents' durations (first alert's startsAt to resolution), known in advance.
DURATIONS = (600, 1200, 1800, 3000)


class Hooks:
    """Two webhook receivers: ``/ok`` answers 200, ``/broken`` 400 (a permanent failure)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200 if self.path == "/ok" else 400)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def prometheus_scraping(binary: str, target: str, workdir: Path) -> Iterator[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: incident-bridge\n"
        f"    static_configs:\n      - targets: [{json.dumps(target)}]\n"
    )
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    with (workdir / "prometheus.log").open("ab") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_clean_env(),
            cwd=workdir,
        )
    try:
        wait_for("Prometheus", lambda: http("GET", url + "/-/ready", timeout=2).status == 200, 30)
        yield url
    finally:
        _terminate(proc)


def query(url: str, expr: str) -> dict[str, Any]:
    body = urllib.parse.urlencode({"query": expr}).encode()
    resp = http(
        "POST", url + "/api/v1/query", body, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    answer: dict[str, Any] = resp.json()
    assert resp.status == 200 and answer.get("status") == "success", (expr, resp.body[:500])
    data: dict[str, Any] = answer["data"]
    return data


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of every panel target, panels inside rows included."""
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                yield inner["title"], target["expr"]


def substitute(expr: str) -> str:
    """Grafana's variables as a dashboard with every team and severity selected sends them."""
    for name, value in (
        ("$__rate_interval", "5m"),
        ("$__range", "10m"),
        ("$team", ".*"),
        ("$severity", ".*"),
    ):
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_the_dashboard_model() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"] == "incident-bridge-mttx"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["team"]["multi"] and variables["severity"]["multi"]
    assert "__inputs" not in dashboard and "${DS_" not in DASHBOARD.read_text()
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_panel_against_the_real_prometheus(tmp_path: Path, prometheus_binary: str) -> None:
    hooks = Hooks()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = {"OK_URL": hooks.url + "/ok", "BROKEN_URL": hooks.url + "/broken"}
    bridge = Bridge(tmp_path / "bridge", args=["--rules", str(rules)], env=env).start()
    try:
        target = bridge.url.removeprefix("http://")
        with prometheus_scraping(prometheus_binary, target, tmp_path / "prometheus") as prom:
            # the zero series are scraped before any incident
            wait_for(
                "a first scrape",
                lambda: query(prom, "incident_bridge_incidents_opened_total")["result"] or None,
                30,
            )
            api = Api(bridge)
            now = datetime.now(UTC)
            for n, duration in enumerate(DURATIONS):
                body = payload(f"Dashboard{n}", now - timedelta(seconds=duration))
                body["alerts"][0]["labels"]["team"] = "payments"
                assert bridge.post_webhook(body).status == 200
            # one more, of no team, mitigated by its alert resolving, never acknowledged
            assert bridge.post_webhook(payload("DashboardOther", now)).status == 200
            resolved = datetime.now(UTC)
            assert bridge.post_webhook(payload("DashboardOther", now, resolved)).status == 200
            incidents = {i["title"]: i for i in bridge.incidents()}
            ids = [
                i["id"]
                for t, i in incidents.items()
                if t.startswith("Dashboard") and t != "DashboardOther" and "Other" not in t
            ]
            assert len(ids) == len(DURATIONS), incidents.keys()
            for iid in ids:
                assert api.act(iid, "acknowledge") == 200
                assert api.act(iid, "resolve") == 200
            done = {i["id"]: i for i in bridge.incidents()}
            known = [
                (
                    datetime.fromisoformat(done[i]["resolved_at"])
                    - datetime.fromisoformat(done[i]["started_at"])
                ).total_seconds()
                for i in ids
            ]
            known_mean = sum(known) / len(known)
            assert abs(known_mean - sum(DURATIONS) / len(DURATIONS)) < 30

            def scraped() -> bool | None:
                result = query(prom, "sum(incident_bridge_time_to_resolve_seconds_count)")
                got = result["result"]
                return (got and float(got[0]["value"][1]) == len(DURATIONS)) or None

            wait_for("Prometheus to scrape the resolves", scraped, 30)
            # the notifications: delivered to ok, failed (400) at broken, dead-lettered
            wait_for(
                "a failed delivery scraped",
                lambda: query(prom, "incident_bridge_notifications_failed_total")["result"] or None,
                30,
            )
            time.sleep(2)  # a rate needs two samples of each counter

            dashboard = json.loads(DASHBOARD.read_text())
            empty = []
            checked = 0
            for title, expr in targets(dashboard):
                result = query(prom, substitute(expr))["result"]
                checked += 1
                if not result:
                    empty.append((title, expr))
            assert checked >= 20
            assert not empty, empty

            mttr = next(
                e
                for t, e in targets(dashboard)
                if t.startswith("MTTR") and "increase(" in e and "_sum" in e
            )
            rows = query(prom, substitute(mttr))["result"]
            by = {
                (r["metric"]["severity"], r["metric"]["team"]): float(r["value"][1]) for r in rows
            }
            assert abs(by[("sev1", "payments")] - known_mean) < 1.0, (by, known_mean)
    finally:
        bridge.stop()
        hooks.stop()
