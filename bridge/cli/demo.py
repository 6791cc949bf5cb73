"""``incident-bridge demo``: see the bridge work without touching your own database.

It starts ``incident-bridge serve`` as a child process on a free loopback port with a database in
a new temporary folder (mode 0700), posts the webhook below with its times moved to now, prints
the incident it opened and the URL of its page, and serves until Ctrl-C (or stops at once with
``--once``); the folder and its database are deleted at the end. The user's own settings
(``INCIDENT_BRIDGE_*``) are left out, so that nothing of the demo reaches their database, their
tokens or their targets.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.config import ENV_PREFIX

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

# A webhook captured from a real Alertmanager 0.25 (tests/fixtures/alertmanager-0.25/
# firing-group-bearer.json, a test keeps them the same); its startsAt are replaced by now.
WEBHOOK: dict[str, Any] = {
    "receiver": "bridge",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "HighErrorRate",
                "instance": "web-1",
                "service": "checkout",
                "severity": "critical",
            },
            "annotations": {
                "runbook_url": "https://runbooks.example.com/high-error-rate",
                "summary": "5xx ratio above 5%",
            },
            "startsAt": "2026-11-27T04:05:13.998173144Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=rate(x[5m])",
            "fingerprint": "b1c11497b32ce15e",
        },
        {
            "status": "firing",
            "labels": {
                "alertname": "HighErrorRate",
                "instance": "web-2",
                "service": "checkout",
                "severity": "critical",
            },
            "annotations": {"summary": "5xx ratio above 5%"},
            "startsAt": "2026-11-27T04:05:14.021919108Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "5308e11450d376b3",
        },
    ],
    "groupLabels": {"alertname": "HighErrorRate", "service": "checkout"},
    "commonLabels": {"alertname": "HighErrorRate", "service": "checkout", "severity": "critical"},
    "commonAnnotations": {"summary": "5xx ratio above 5%"},
    "externalURL": "http://vm:19094",
    "version": "4",
    "groupKey": '{}:{alertname="HighErrorRate", service="checkout"}',
    "truncatedAlerts": 0,
}


def fresh_webhook(now: datetime) -> dict[str, Any]:
    """The webhook as if its alerts had started at ``now`` (a second apart, as captured): an
    incident with real times, not one days old."""
    body = copy.deepcopy(WEBHOOK)
    for n, alert in enumerate(body["alerts"]):
        at = now.astimezone(UTC).replace(microsecond=0).timestamp() - (len(body["alerts"]) - n)
        alert["startsAt"] = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return body


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _request(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - http only
    # Loopback: never through a proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], url: str) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if _request(url + "/-/ready")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def _demo(args: argparse.Namespace) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    with tempfile.TemporaryDirectory(prefix="incident-bridge-demo-") as folder:
        db = Path(folder) / "demo.db"
        log = Path(folder) / "service.log"
        url = f"http://{LOOPBACK}:{_free_port()}"
        command = [sys.executable, "-m", "bridge", "serve", "--listen", url[len("http://") :]]
        command += ["--db", str(db)]
        print(f"Starting a demo service on {url} with a throwaway database ({db})", flush=True)
        with log.open("wb") as logs:
            # Its stdout is the console target's: the messages it sends show up here.
            proc = subprocess.Popen(command, env=env, stderr=logs)
        try:
            if not _wait_ready(proc, url):
                lines = log.read_text(errors="replace").strip().splitlines()[-10:]
                print("incident-bridge: the demo service did not start:", file=sys.stderr)
                print("\n".join(lines), file=sys.stderr)
                return 1
            body = json.dumps(fresh_webhook(datetime.now(UTC))).encode()
            status, raw = _request(url + "/api/v1/alerts", body)
            if status != 200:
                print(f"incident-bridge: the webhook got {status}: {raw[:200]!r}", file=sys.stderr)
                return 1
            incident_id = json.loads(raw)["incidents"][0]["id"]
            print(f"Posted an Alertmanager webhook to {url}/api/v1/alerts\n", flush=True)
            time.sleep(0.5)  # the console target's message comes first
            flags = ["--url", url, "--db", str(db)]
            # The command the user will type next, as a process of its own.
            show = [sys.executable, "-m", "bridge", "incident", "show", str(incident_id)]
            code = subprocess.run([*show, *flags], env=env, check=False).returncode
            if code != 0:
                return code
            print(f"\nThe incident's page: {url}/incidents/{incident_id}")
            print(f"Try: incident-bridge incident ack {incident_id} {' '.join(flags)}")
            if args.once:
                return 0
            print("Serving until Ctrl-C; the database is deleted then.", flush=True)
            try:
                proc.wait()
            except KeyboardInterrupt:
                return 0
            print("incident-bridge: the demo service stopped", file=sys.stderr)
            return 1
        finally:
            _stop(proc)


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="run a throwaway service, post a sample webhook, show the incident (Ctrl-C ends)",
    )
    demo.add_argument(
        "--once",
        action="store_true",
        help="stop the service and delete its database as soon as the incident is shown",
    )
    demo.set_defaults(func=_demo)
