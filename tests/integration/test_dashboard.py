"""The shipped dashboard proven against the real Prometheus (Debian package) scraping a real
``incident-bridge serve`` every second, with the shipped recording rules loaded.

Known incidents (their alerts' ``startsAt`` set back by known durations, acknowledged and
resolved through the API, one mitigated by its alert resolving and then reopened), known
notifications (a receiver that accepts after a known delay, one that refuses: dead letters, a
stakeholders' pager) and known webhook answers (200, a 400, a 401) go through the bridge. Then
every panel target of helm/incident-bridge/dashboards/incident-bridge.json is asked of that
Prometheus at the time of a scrape taken after everything settled, Grafana's variables
substituted (every team and severity; ``$__range`` and ``$__rate_interval`` a window that covers
the whole run), and each panel's answer is compared with what the bridge's own API says
happened: incidents per severity and team, their mean and quantiles (the histogram's buckets
interpolated as Prometheus does), rows delivered per target, failed attempts per reason, requests
per status code. Counters that exist at 0 before their first event make ``increase()`` exact
here: a series born at its first event would lose that event.

A missing /usr/bin/prometheus skips on a laptop and fails under CI=true."""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bridge.core.mttx import BUCKETS
from tests.integration.procs import (
    LOOPBACK,
    Bridge,
    free_port,
    http,
    start_prometheus,
    terminate,
    wait_for,
)
from tests.integration.test_metrics import Api, payload

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "incident-bridge" / "dashboards" / "incident-bridge.json"
RECORDING_RULES = ROOT / "helm" / "incident-bridge" / "prometheus" / "rules.yaml"
RULES = """\
targets:
  ok: {type: webhook, url: "${OK_URL}"}
  broken: {type: webhook, url: "${BROKEN_URL}"}
  pager: {type: webhook, url: "${PAGER_URL}"}
route:
  name: default
  severity_from:
    label: severity
    map: {critical: sev1, warning: sev3}
    default: sev4
  tiers:
    general: [ok, broken]
    stakeholders: {targets: [pager], min_severity: sev1}
  routes:
    - name: payments
      matchers: ['team="payments"']
      team: payments
"""
# The resolved incidents' durations (first alert's startsAt to resolution), known in advance.
DURATIONS = (600, 1200, 1800, 3000)
# How long the accepting receivers take to answer: every send's latency is at least this.
HOOK_DELAY_S = 0.12
# Grafana's $__range and $__rate_interval in the test: a window that covers the whole run, so
# that increase() starts from the counters' first sample (0) and counts every event.
WINDOW = "1h"
WINDOW_S = 3600.0
HISTOGRAMS = {
    "time_to_acknowledge": "acknowledged_at",
    "time_to_mitigate": "mitigated_at",
    "time_to_resolve": "resolved_at",
    "detection_delay": "opened_at",
}
# The metric families that carry a team label: a panel on them filters on $team.
TEAM_LABELLED = (
    *(f"incident_bridge_{name}_seconds" for name in HISTOGRAMS),
    "incident_bridge_incidents_opened_total",
    "incident_bridge_incidents_reopened_total",
)


class Hooks:
    """Three webhook receivers: ``/ok`` and ``/page`` answer 200 after ``HOOK_DELAY_S``,
    ``/broken`` answers 400 at once (a permanent failure: dead-lettered)."""

    def __init__(self, delay: float = HOOK_DELAY_S) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/broken":
                    time.sleep(delay)
                self.send_response(400 if self.path == "/broken" else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def env(self) -> dict[str, str]:
        return {
            "OK_URL": self.url + "/ok",
            "BROKEN_URL": self.url + "/broken",
            "PAGER_URL": self.url + "/page",
        }

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def prometheus_scraping(
    binary: str, target: str, workdir: Path, rules: Path | None = RECORDING_RULES
) -> Iterator[str]:
    """Prometheus scraping ``target`` every second as job ``incident-bridge`` (the job the
    shipped rules expect), with the shipped rules evaluated every second instead of every
    5 minutes (their only change)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = (
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: incident-bridge\n"
        f"    static_configs:\n      - targets: [{json.dumps(target)}]\n"
    )
    if rules is not None:
        fast = rules.read_text().replace("interval: 5m", "interval: 1s")
        assert fast != rules.read_text(), "the recording rules' group interval moved"
        (workdir / "rules.yaml").write_text(fast)
        config += "rule_files: [rules.yaml]\n"
    (workdir / "prometheus.yml").write_text(config)
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    proc = start_prometheus(binary, workdir, port, "--log.level=warn")
    try:
        wait_for("Prometheus", lambda: http("GET", url + "/-/ready", timeout=2).status == 200, 30)
        yield url
    finally:
        terminate(proc)


def query(url: str, expr: str, at: float | None = None) -> dict[str, Any]:
    params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
    body = urllib.parse.urlencode(params).encode()
    resp = http(
        "POST", url + "/api/v1/query", body, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    answer: dict[str, Any] = resp.json()
    assert resp.status == 200 and answer.get("status") == "success", (expr, resp.body[:500])
    data: dict[str, Any] = answer["data"]
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, panels inside collapsed rows included."""
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            if inner["type"] != "row":
                yield inner


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of every panel target, panels inside rows included."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def substitute(expr: str, window: str = "10m") -> str:
    """Grafana's variables as a dashboard with every team and severity selected sends them."""
    for name, value in (
        ("$__rate_interval", window),
        ("$__range", window),
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
    recorded = set(re.findall(r"record: (\S+)", RECORDING_RULES.read_text()))
    for panel in panels(dashboard):
        title = panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", title
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        for target in panel["targets"]:
            expr = target["expr"]
            if any(family in expr for family in TEAM_LABELLED):
                assert 'team=~"$team"' in expr, f"{title}: no team filter in {expr}"
            for rule in re.findall(r"severity_team:\w+:\w+", expr):
                assert rule in recorded, f"{title}: {rule} is not a shipped recording rule"
        if panel["type"] == "table":
            # One frame per table: instant queries in table format, merged on their labels
            # into one row per (severity, team), Time dropped, the columns named.
            assert all(t["format"] == "table" and t["instant"] for t in panel["targets"]), title
            steps = [t["id"] for t in panel.get("transformations", [])]
            assert steps[:2] == ["merge", "organize"], (title, steps)
            organize = panel["transformations"][1]["options"]
            assert organize["excludeByName"] == {"Time": True}, title
            refs = {f"Value #{t['refId']}" for t in panel["targets"]}
            assert set(organize["renameByName"]) >= refs, title
    # the MTTx tables take the shipped 7- and 30-day means where the rules record them
    tables = [p for p in panels(dashboard) if p["type"] == "table"]
    for name in HISTOGRAMS:
        table = next(p for p in tables if f"incident_bridge_{name}_seconds" in json.dumps(p))
        exprs = " ".join(t["expr"] for t in table["targets"])
        for window in ("7d", "30d"):
            assert f"severity_team:incident_bridge_{name}_seconds:mean{window}" in exprs


def ns(text: str) -> int:
    """An RFC 3339 time of the API (nanoseconds, UTC) as integer nanoseconds."""
    whole, _, rest = text.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp())
    return seconds * 10**9 + int((rest or "0").ljust(9, "0")[:9])


def quantile(q: float, durations: list[float]) -> float:
    """``histogram_quantile`` of these durations in the bridge's buckets: the bucket holding
    the rank, interpolated linearly within it (from 0 for the first bucket); the rank in
    +Inf gives the highest finite bound."""
    counts = [sum(1 for d in durations if d <= bound) for bound in BUCKETS]
    rank = q * len(durations)
    for i, cumulative in enumerate(counts):
        if cumulative >= rank:
            lower = BUCKETS[i - 1] if i else 0.0
            below = counts[i - 1] if i else 0
            return lower + (BUCKETS[i] - lower) * (rank - below) / (cumulative - below)
    return BUCKETS[-1]


def first_mitigation(incident: dict[str, Any]) -> int | None:
    """When the incident was first mitigated: the first status change to mitigated or
    resolved on its timeline (a reopen clears ``mitigated_at``, not the observation)."""
    for entry in incident["timeline"]:
        if entry["kind"] == "status_changed" and entry["data"].get("to") in (
            "mitigated",
            "resolved",
        ):
            return ns(entry["time"])
    return None


def observations(incidents: list[dict[str, Any]]) -> dict[str, dict[tuple[str, str], list[float]]]:
    """Per histogram, the durations observed per (severity, team), from the API's incidents."""
    found: dict[str, dict[tuple[str, str], list[float]]] = {
        h: defaultdict(list) for h in HISTOGRAMS
    }
    for incident in incidents:
        started = ns(incident["started_at"])
        pair = (incident["severity"], incident["team"] or "none")
        moments = {
            "time_to_acknowledge": incident["acknowledged_at"] and ns(incident["acknowledged_at"]),
            "time_to_mitigate": first_mitigation(incident),
            "time_to_resolve": incident["resolved_at"] and ns(incident["resolved_at"]),
            "detection_delay": ns(incident["opened_at"]),
        }
        for name, moment in moments.items():
            if moment:
                found[name][pair].append(max(0.0, (moment - started) / 1e9))
    return found


def vector(result: list[dict[str, Any]], *by: str) -> dict[tuple[str, ...], float]:
    return {tuple(r["metric"].get(k, "") for k in by): float(r["value"][1]) for r in result}


def close(
    got: Mapping[Any, float], want: Mapping[Any, float], what: str, tol: float = 1e-6
) -> None:
    """Every series expected, no other (zeros may be exported for any label value)."""
    extra = {k: v for k, v in got.items() if k not in want and v != 0}
    assert not extra, f"{what}: unexpected {extra} (want {want})"
    for key, value in want.items():
        assert key in got, f"{what}: {key} missing; got {got}, want {want}"
        assert math.isclose(got[key], value, rel_tol=tol, abs_tol=tol), (what, key, got, want)


# SQLite only: the panels read the bridge's metrics, which tests/integration/test_metrics.py
# checks on both backends against the same real Prometheus (this test would add 11 s to CI).
def test_every_panel_shows_the_known_values(
    tmp_path: Path, prometheus_binary: str, bridge_db: str | None
) -> None:
    hooks = Hooks()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    started_at = time.time()
    bridge = Bridge(
        tmp_path / "bridge", args=["--rules", str(rules)], env=hooks.env(), database_url=bridge_db
    ).start()
    codes: Counter[str] = Counter()

    def post(body: dict[str, Any] | bytes, **headers: str) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **bridge.auth(), **headers}
        status = http("POST", bridge.url + "/api/v1/alerts", raw, sent).status
        codes[str(status)] += 1

    try:
        target = bridge.url.removeprefix("http://")
        with prometheus_scraping(prometheus_binary, target, tmp_path / "prometheus") as prom:
            wait_for(
                "a first scrape",
                lambda: query(prom, 'up{job="incident-bridge"} == 1')["result"] or None,
                30,
            )
            time.sleep(1.5)  # a second scrape: every series has its first sample before events
            api = Api(bridge)
            now = datetime.now(UTC)
            for n, duration in enumerate(DURATIONS):
                body = payload(f"Dashboard{n}", now - timedelta(seconds=duration))
                body["alerts"][0]["labels"]["team"] = "payments"
                post(body)
            # sev3 of payments, acknowledged and left open
            warning = payload("DashboardWarning", now - timedelta(seconds=90))
            warning["alerts"][0]["labels"] |= {"team": "payments", "severity": "warning"}
            post(warning)
            # no team: mitigated by its alert resolving, then firing again (reopened in place)
            post(payload("DashboardOther", now - timedelta(seconds=45)))
            post(payload("DashboardOther", now - timedelta(seconds=45), datetime.now(UTC)))
            post(payload("DashboardOther", datetime.now(UTC)))  # fires again: a new startsAt
            post(b"{not json")  # 400
            post(payload("DashboardNoAuth", now), Authorization="Bearer wrong")  # 401
            assert set(codes) == {"200", "400", "401"}, codes
            by_title = {i["title"]: i for i in bridge.incidents()}
            for n in range(len(DURATIONS)):
                iid = by_title[f"Dashboard{n}"]["id"]
                assert api.act(iid, "acknowledge") == 200
                assert api.act(iid, "resolve") == 200
            assert api.act(by_title["DashboardWarning"]["id"], "acknowledge") == 200

            def settled() -> bool:
                return not bridge.get_json("/api/v1/notifications?state=pending")["notifications"]

            wait_for("the outbox to empty", lambda: settled() or None, 60)
            incidents = [bridge.incident(i["id"]) for i in bridge.incidents()]
            rows = bridge.get_json("/api/v1/notifications?limit=500")["notifications"]
            assert settled() and len(rows) < 500
            followups = 0
            for incident in incidents:
                # with a configured API token (PostgreSQL's), reads carry it
                reads = (
                    {"Authorization": f"Bearer {bridge.api_token}"} if bridge.api_token else None
                )
                path = f"/api/v1/incidents/{incident['id']}/followup"
                resp = http("GET", bridge.url + path, headers=reads)
                if resp.status == 200:
                    followups += resp.json()["open_items"]

            # The moment of a scrape (and of a rule evaluation) taken after all of it: the
            # queries are asked at that scrape's timestamp, so that increase() extrapolates
            # nothing past the last sample.
            after = time.time() + 1.0

            def scraped_after() -> float | None:
                # the last scrape's own timestamp (timestamp() of a selector), if it succeeded:
                # after a failed one the series are stale and answer nothing
                got = query(
                    prom,
                    'timestamp(up{job="incident-bridge"}) and up{job="incident-bridge"} == 1',
                )["result"]
                rule = query(
                    prom, "timestamp(severity_team:incident_bridge_time_to_resolve_seconds:mean7d)"
                )["result"]
                seen = got and float(got[0]["value"][1])
                evaluated = rule and min(float(r["value"][1]) for r in rule)
                return seen if seen and evaluated and min(seen, evaluated) > after else None

            at = wait_for("a scrape after the run", scraped_after, 30)
            assert settled(), "a notification arrived after the scrape read"

            # What happened, from the bridge's API.
            seen = observations(incidents)
            delivered: Counter[tuple[str, ...]] = Counter(
                (r["target"],) for r in rows if r["state"] == "delivered"
            )
            failures: Counter[tuple[str, ...]] = Counter()
            for r in rows:
                if r["state"] == "dead" and r["carried_by"] is None:
                    failures[(r["last_error"],)] += r["attempts"]
            assert delivered[("ok",)] and delivered[("pager",)] and failures, (delivered, failures)
            opened: Counter[tuple[str, ...]] = Counter((i["severity"],) for i in incidents)
            open_now: Counter[tuple[str, ...]] = Counter(
                (i["status"],) for i in incidents if i["status"] in ("triggered", "acknowledged")
            )
            reopened = sum(1 for i in incidents for e in i["timeline"] if e["kind"] == "reopened")
            assert reopened == 1 and open_now == {("triggered",): 1, ("acknowledged",): 1}
            pending_pm = sum(
                1
                for i in incidents
                if i["status"] in ("resolved", "closed") and i["severity"] in ("sev1", "sev2")
            )
            dead = sum(1 for r in rows if r["state"] == "dead")
            targets_s = {"sev1": 300, "sev2": 900, "sev3": 3600, "sev4": 14400}
            within: dict[tuple[str, ...], float] = {}
            for severity, limit in targets_s.items():
                acked = [
                    d
                    for (sev, _team), ds in seen["time_to_acknowledge"].items()
                    if sev == severity
                    for d in ds
                ]
                if acked:
                    within[(severity,)] = sum(1 for d in acked if d <= limit) / len(acked)

            def ask(expr: str) -> list[dict[str, Any]]:
                result: list[dict[str, Any]] = query(prom, substitute(expr, WINDOW), at)["result"]
                nans = [r for r in result if math.isnan(float(r["value"][1]))]
                assert not nans, f"NaN rows from {expr}: {nans}"
                return result

            def table(name: str) -> Callable[[dict[str, Any]], None]:
                def check(panel: dict[str, Any]) -> None:
                    pairs = seen[name]
                    want = {
                        "A": {k: float(len(v)) for k, v in pairs.items()},
                        "B": {k: sum(v) / len(v) for k, v in pairs.items()},
                        "C": {k: quantile(0.5, v) for k, v in pairs.items()},
                        "D": {k: quantile(0.9, v) for k, v in pairs.items()},
                        # the recording rules' windows (7 and 30 days) hold the whole run
                        "E": {k: sum(v) / len(v) for k, v in pairs.items()},
                        "F": {k: sum(v) / len(v) for k, v in pairs.items()},
                    }
                    assert pairs, name
                    for t in panel["targets"]:
                        result = ask(t["expr"])
                        # exactly these labels, so that Grafana's merge makes one row of each
                        # pair (a __name__ or job would split it)
                        labels = {tuple(sorted(r["metric"])) for r in result}
                        assert labels <= {("severity", "team")}, (t["expr"], labels)
                        got = vector(result, "severity", "team")
                        close(got, want[t["refId"]], f"{panel['title']} {t['refId']}", 1e-5)

                return check

            Check = Callable[[dict[str, Any]], None]

            def single(
                by: tuple[str, ...], want: Mapping[tuple[str, ...], float], scale: float = 1
            ) -> Check:
                def check(panel: dict[str, Any]) -> None:
                    (t,) = panel["targets"]
                    got = {k: v * scale for k, v in vector(ask(t["expr"]), *by).items()}
                    close(got, want, panel["title"])

                return check

            def stats(*wants: float) -> Callable[[dict[str, Any]], None]:
                def check(panel: dict[str, Any]) -> None:
                    for t, want in zip(panel["targets"], wants, strict=True):
                        close(vector(ask(t["expr"])), {(): want}, f"{panel['title']} {t['refId']}")

                return check

            def bounded(low: float, high: float, by: str, *keys: str) -> Check:
                def check(panel: dict[str, Any]) -> None:
                    for t in panel["targets"]:
                        got = vector(ask(t["expr"]), by) if by else vector(ask(t["expr"]))
                        wanted: list[tuple[str, ...]] = [(k,) for k in keys] or [()]
                        for key in wanted:
                            assert key in got and low < got[key] <= high, (panel["title"], got)

                return check

            def reload_panel(panel: dict[str, Any]) -> None:
                ok, since = panel["targets"]
                close(vector(ask(ok["expr"])), {(): 1.0}, "last reload ok")
                (value,) = vector(ask(since["expr"])).values()
                assert 0 <= value <= at - started_at + 1, value

            per_second = WINDOW_S  # a rate over the window, times the window: the events
            checks: dict[str, Callable[[dict[str, Any]], None]] = {
                "MTTA": table("time_to_acknowledge"),
                "MTTM": table("time_to_mitigate"),
                "MTTR": table("time_to_resolve"),
                "Detection delay": table("detection_delay"),
                "Acknowledged within target": single(("severity",), within),
                "Reopen rate": stats(reopened / len(incidents)),
                "Incidents opened per day": single(("severity",), dict(opened)),
                "Open incidents now": single(("status",), dict(open_now)),
                "Follow-up items open": stats(float(followups), float(pending_pm)),
                "Notifications delivered": single(("target",), dict(delivered), per_second),
                "Notification failures": single(("reason",), dict(failures)),
                # every accepted send took HOOK_DELAY_S at least: its bucket is (0.1, 0.25]
                "Notification latency": bounded(0.1, 30, "target", "ok", "pager"),
                "Outbox backlog": stats(0.0),
                "Oldest pending": stats(0.0),
                "Dead letters": stats(float(dead)),
                "Webhook requests": single(
                    ("code",), {(c,): float(n) for c, n in codes.items()}, per_second
                ),
                "Webhook latency": bounded(0, 2.5, ""),
                "Rules reload": reload_panel,
            }
            dashboard = json.loads(DASHBOARD.read_text())
            done = set()
            for panel in panels(dashboard):
                name = next((k for k in checks if panel["title"].startswith(k)), None)
                assert name is not None, f"no known value for the panel {panel['title']!r}"
                checks[name](panel)
                done.add(name)
            assert done == set(checks), set(checks) - done
    finally:
        bridge.stop()
        hooks.stop()
