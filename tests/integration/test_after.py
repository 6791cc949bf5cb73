"""Stages 3 and 4 end to end with the real parts: the real Alertmanager fires and resolves, the
real Prometheus scrapes an exporter the test controls, ``incident-bridge serve`` runs as a
process, and the Jira contract fake takes the tickets. Fire, acknowledge, an action item; the
alerts resolve and the follow-up opens with its checklist and findings; the ticket survives a
lost answer and a SIGKILL without a duplicate; the PromQL check fails, then passes, and checks
the validation off; the checklist done resolves the incident."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bridge.config import api_token_path
from bridge.core.timeutil import parse_rfc3339
from tests.conftest import BOTH_BACKENDS
from tests.fakes.jira import API_TOKEN, EMAIL, JiraFake
from tests.fakes.webhook import SECRET, WebhookFake
from tests.integration import prometheus as prometheus_fixtures
from tests.integration.procs import (
    Bridge,
    alertmanager_config,
    http,
    running_alertmanagers,
    wait_for,
)

pytestmark = pytest.mark.integration
prometheus = prometheus_fixtures.prometheus

TIMEOUT = 30.0
RULES = """\
targets:
  channel: {type: webhook, url: "${CHANNEL_URL}", secret: "${HOOK_SECRET}"}
  jira:
    type: jira
    url: "${JIRA_URL}"
    email: "${JIRA_EMAIL}"
    api_token: "${JIRA_TOKEN}"
    project: OPS
    settle_s: 1  # the fake's search shows a new issue at once
route:
  name: default
  severity_from:
    label: severity
    map: {critical: sev2, warning: sev3}
    default: sev4
  tiers:
    incident: channel
  follow_up:
    ticket_target: jira
    stabilization: 2s
    checks:
      - {name: errors, expr: checkout_error_ratio, expect: "< 0.01"}
"""


class HeldJira(JiraFake):
    """Jira that can hold its answer to a create (the issue already made) until released: the
    bridge is killed while it waits."""

    def __init__(self) -> None:
        super().__init__()
        self.hold: asyncio.Event | None = None

    async def create(self, request: web.Request) -> web.StreamResponse:
        answer = await super().create(request)
        if self.hold is not None:
            await self.hold.wait()
        return answer


class Fakes:
    """The fakes in an event loop of their own thread (the test itself is synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.jira = HeldJira()
        self.channel = WebhookFake()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.jira.start())
            self.loop.run_until_complete(self.channel.start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)

    def call(self, fn: Any) -> None:
        self.loop.call_soon_threadsafe(fn)

    def close(self) -> None:
        for server in (self.jira, self.channel):
            asyncio.run_coroutine_threadsafe(server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    running = Fakes()
    yield running
    running.close()


def parse(text: str) -> datetime:
    ns = parse_rfc3339(text)
    assert ns is not None
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@BOTH_BACKENDS
def test_the_whole_life_after_the_fire(
    alertmanager_binary: str,
    tmp_path: Path,
    fakes: Fakes,
    prometheus: prometheus_fixtures.PrometheusWithExporter,
    bridge_db: str | None,
) -> None:
    prom_url, exporter = prometheus
    exporter.set("checkout_error_ratio", 0.2)
    prometheus.wait_for_value("checkout_error_ratio", 0.2)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = {
        "CHANNEL_URL": fakes.channel.hook_url,
        "HOOK_SECRET": SECRET,
        "JIRA_URL": fakes.jira.url,
        "JIRA_EMAIL": EMAIL,
        "JIRA_TOKEN": API_TOKEN,
    }
    kb = tmp_path / "kb"
    kb.mkdir()
    git(kb, "init", "-q", "-b", "main")
    args = ["--rules", str(rules), "--prometheus-url", prom_url, "--kb-dir", str(kb)]
    bridge = Bridge(tmp_path / "bridge", args=args, env=env, database_url=bridge_db).start()
    try:
        token = api_token_path(bridge.db).read_text().strip()
        write = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def api(method: str, path: str, body: Any = None) -> Any:
            data = json.dumps(body).encode() if body is not None else None
            resp = http(method, f"{bridge.url}{path}", data, write)
            assert resp.status == 200, (path, resp.status, resp.body)
            return resp.json()

        def followup(i: int) -> dict[str, Any]:
            view: dict[str, Any] = api("GET", f"/api/v1/incidents/{i}/followup")
            return view

        name = f"CheckoutErrors{uuid.uuid4().hex[:6]}"
        labels = {"alertname": name, "service": "checkout", "severity": "critical"}
        # An earlier incident of the same alert: the follow-up names the recurrence.
        earlier = {
            "version": "4",
            "status": "firing",
            "receiver": "bridge",
            "groupKey": f"earlier-{name}",
            "groupLabels": {"alertname": name},
            "commonLabels": labels,
            "commonAnnotations": {},
            "externalURL": "http://alertmanager",
            "truncatedAlerts": 0,
            "alerts": [
                {
                    "status": "firing",
                    "labels": {**labels, "instance": "old"},
                    "annotations": {"summary": "checkout errors"},
                    "startsAt": "2026-11-20T04:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "",
                    "fingerprint": "0f0f0f0f0f0f0f0f",
                }
            ],
        }
        first = bridge.post_webhook(earlier).json()["incidents"][0]["id"]

        alert = {"labels": labels, "annotations": {"summary": "checkout errors above 1%"}}
        started = now()
        config = alertmanager_config(bridge.url, bridge.token)
        with running_alertmanagers(tmp_path, config, binary=alertmanager_binary) as [am]:
            am.post_alerts([{**alert, "startsAt": started}])

            def opened() -> int | None:
                found = [x for x in bridge.incidents() if x["id"] != first]
                return int(found[0]["id"]) if found else None

            i = wait_for("the incident", opened, TIMEOUT)
            base = f"/api/v1/incidents/{i}"
            api("POST", f"{base}/acknowledge", {"actor": "amara"})
            api("POST", f"{base}/actions", {"text": "Add a circuit breaker", "owner": "bob"})
            # The first ticket's answer is lost after Jira made it: the retry must find it.
            fakes.call(lambda: fakes.jira.lose_next_create("500"))

            am.post_alerts([{**alert, "startsAt": started, "endsAt": now()}])
            wait_for(
                "mitigated", lambda: bridge.incident(i)["status"] == "mitigated" or None, TIMEOUT
            )

        def opened_followup() -> dict[str, Any] | None:
            resp = http("GET", f"{bridge.url}{base}/followup", None, write)
            return followup(i) if resp.status == 200 else None

        view = wait_for("the follow-up", opened_followup, TIMEOUT)
        kinds = [item["kind"] for item in view["items"]]
        assert kinds == ["check", "validate", "review", "action"], kinds
        findings = {f["kind"]: f for f in view["items"][2]["detail"]["findings"]}
        assert findings["no_runbook"]["evidence"] == {"alertnames": [name]}
        recurrence = findings["recurrence"]["evidence"]
        assert [x["id"] for x in recurrence["incidents"]] == [first]

        # The ticket: opened once, although Jira's first answer was lost.
        def ticketed(n: int) -> dict[str, Any] | None:
            item = followup(i)["items"][n]
            return item["ticket"] or None

        ticket = wait_for("the ticket", lambda: ticketed(3), TIMEOUT)
        assert ticket["key"].startswith("OPS-") and ticket["url"].endswith(ticket["key"])
        assert len(fakes.jira.issues) == 1
        issue = fakes.jira.issues[ticket["key"]]
        assert issue["summary"].startswith("Add a circuit breaker")

        # The validation: Prometheus says 0.2, so it fails and says why ...
        view = wait_for("a failed validation", lambda: followup(i)["validation"] or None, TIMEOUT)
        assert view["passed"] is False
        assert view["checks"][0]["values"][0]["value"] == 0.2
        assert "0.2" in view["reasons"][0]
        # ... then the service is healthy, and the next look checks the item off.
        exporter.set("checkout_error_ratio", 0.001)
        prometheus.wait_for_value("checkout_error_ratio", 0.001)
        wait_for(
            "the validation passed",
            lambda: followup(i)["items"][1]["state"] == "done" or None,
            TIMEOUT,
        )

        # A SIGKILL while Jira makes the second ticket: after the restart, still one ticket.
        hold = asyncio.Event()
        fakes.call(lambda: setattr(fakes.jira, "hold", hold))
        api("POST", f"{base}/followup/items", {"text": "Page the DBA on-call", "kind": "action"})
        wait_for("Jira made the issue", lambda: len(fakes.jira.issues) == 2 or None, TIMEOUT)
        bridge.kill()
        fakes.call(hold.set)
        fakes.call(lambda: setattr(fakes.jira, "hold", None))
        bridge.start()
        second = wait_for("the second ticket", lambda: ticketed(4), TIMEOUT)
        assert len(fakes.jira.issues) == 2 and second["key"] != ticket["key"]

        # People finish the checklist: the incident resolves itself.
        view = followup(i)
        for item in view["items"]:
            if item["kind"] in ("check", "review"):
                api("POST", f"{base}/followup/check", {"item": item["id"], "actor": "amara"})
        final = bridge.incident(i)
        assert final["status"] == "resolved"
        assert final["timeline"][-1]["text"] == "Resolved: the follow-up checklist is done"
        tickets = [e for e in final["timeline"] if e["kind"] == "ticket_requested"]
        assert [e["data"]["text"] for e in tickets] == [
            "Add a circuit breaker",
            "Page the DBA on-call",
        ]
    finally:
        bridge.stop()
