"""The stop sequence of ``serve`` (bridge/app.py run), on a real process: SIGTERM makes
/-/ready answer 503 "stopping" at once while everything is still served for --shutdown-delay
(a second signal ends the wait), then the listeners close, the requests in flight finish
within --shutdown-timeout, the loops, the worker and the store stop, and the exit code is 0.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.procs import LOOPBACK, Bridge, http, wait_for

FIXTURE = Path(__file__).parent / "fixtures" / "alertmanager-0.25" / "firing-group-bearer.json"
API_TOKEN = "shutdown-test-api-token-0123456789"
STEPS = (
    "stopping: /-/ready answers 503",
    "stopping: listeners closed",
    "stopping: background loops",
    "stopping: outbox worker",
    "stopping: closing the store",
    "stopped",
)


def webhook(alertname: str) -> bytes:
    """The fixture's group with an alert name of the test's own (one incident per name)."""
    body: dict[str, Any] = json.loads(FIXTURE.read_text())["body"]
    body["groupKey"] = f'{{}}:{{alertname="{alertname}", service="checkout"}}'
    for alert in [*body["alerts"]]:
        alert["labels"]["alertname"] = alertname
    body["groupLabels"] = {"alertname": alertname}
    body["commonLabels"] = {**body["commonLabels"], "alertname": alertname}
    return json.dumps(body).encode()


def start(tmp_path: Path, *args: str, database_url: str | None = None) -> Bridge:
    # An API token given: with PostgreSQL the service generates none (every replica needs the
    # same one), and reads then need it.
    bridge = Bridge(
        tmp_path,
        args=args,
        env={"INCIDENT_BRIDGE_API_TOKEN": API_TOKEN},
        database_url=database_url,
        api_token=API_TOKEN,
    )
    return bridge.start()


def messages(bridge: Bridge) -> list[str]:
    out = []
    for line in bridge.logs().splitlines():
        try:
            out.append(str(json.loads(line)["msg"]))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def steps_logged(bridge: Bridge, steps: tuple[str, ...] = STEPS) -> list[str]:
    """The stop's steps as logged, in the order they were (each the first line it starts)."""
    logged = messages(bridge)
    found = []
    for line in logged:
        for step in steps:
            if line.startswith(step) and step not in found:
                found.append(step)
    return found


def stored(bridge: Bridge, alertname: str) -> int:
    """Incidents of ``alertname`` in the database (read by the test itself: also after exit)."""
    rows = bridge.rows("SELECT count(*) FROM incidents WHERE key LIKE ?", f"%{alertname}%")
    return int(rows[0][0])


def refused(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return False
    except OSError:
        return True


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("pg_url"))


def test_ready_says_stopping_during_the_delay_and_everything_is_still_served(
    tmp_path: Path, database: str | None
) -> None:
    bridge = start(tmp_path, "--shutdown-delay", "60", database_url=database)
    assert bridge.proc is not None
    try:
        assert http("GET", bridge.url + "/-/ready").status == 200
        bridge.proc.send_signal(signal.SIGTERM)
        # /-/ready answers 503 "stopping" at once: Kubernetes takes the pod out of the
        # Service's endpoints
        ready = wait_for(
            "/-/ready 503",
            lambda: (r := http("GET", bridge.url + "/-/ready")).status == 503 and r,
            timeout=5,
        )
        assert ready.body == b"stopping\n"
        # ...while the listener still takes new connections and serves everything
        assert http("GET", bridge.url + "/-/healthy").status == 200
        answer = bridge.post_webhook(webhook("DuringTheDelay"))
        assert answer.status == 200, answer.body
        assert stored(bridge, "DuringTheDelay") == 1
        assert len(bridge.incidents()) == 1  # the API reads too
        time.sleep(0.5)
        assert bridge.proc.poll() is None  # still waiting out the delay (60 s)
        # a second SIGTERM ends the wait: the stop goes on at once
        began = time.monotonic()
        bridge.proc.send_signal(signal.SIGTERM)
        assert bridge.proc.wait(15) == 0, bridge.logs()[-3000:]
        assert time.monotonic() - began < 10
    finally:
        bridge.kill()
    assert "stopping: a second signal ends the delay" in messages(bridge)
    assert steps_logged(bridge) == list(STEPS), messages(bridge)[-12:]
    assert stored(bridge, "DuringTheDelay") == 1


def test_the_delay_is_bounded(tmp_path: Path) -> None:
    bridge = start(tmp_path, "--shutdown-delay", "1.5")
    assert bridge.proc is not None
    try:
        began = time.monotonic()
        bridge.proc.send_signal(signal.SIGTERM)
        wait_for("/-/ready 503", lambda: http("GET", bridge.url + "/-/ready").status == 503, 5)
        assert bridge.proc.wait(15) == 0, bridge.logs()[-3000:]
        took = time.monotonic() - began
    finally:
        bridge.kill()
    assert 1.5 <= took < 1.5 + 8, took
    assert steps_logged(bridge) == list(STEPS)
    assert "stopping: a second signal ends the delay" not in messages(bridge)


def test_without_a_delay_the_listener_closes_at_once(tmp_path: Path) -> None:
    """The default for a plain process (no load balancer to tell): no wait."""
    bridge = start(tmp_path)
    assert bridge.proc is not None
    try:
        began = time.monotonic()
        assert bridge.stop() == 0
        assert time.monotonic() - began < 8
    finally:
        bridge.kill()
    assert steps_logged(bridge) == [s for s in STEPS if not s.startswith("stopping: /-/ready")]


def slow_post(port: int, body: bytes, first: int) -> socket.socket:
    """A webhook whose headers and first ``first`` bytes of body are sent; the rest later."""
    sock = socket.create_connection((LOOPBACK, port), timeout=20)
    head = (
        f"POST /api/v1/alerts HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Authorization: Bearer {Bridge.token}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:first])
    return sock


def answer_status(sock: socket.socket) -> int | None:
    """The status of the answer on ``sock``, None when it was closed without one."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        return None
    if not data.startswith(b"HTTP/1.1 "):
        return None
    return int(data.split(b" ", 2)[1])


def test_a_slow_webhook_in_flight_at_sigterm_is_answered_and_stored(tmp_path: Path) -> None:
    bridge = start(tmp_path, "--shutdown-timeout", "20")
    assert bridge.proc is not None
    body = webhook("InFlight")
    try:
        sock = slow_post(bridge.port, body, len(body) // 2)
        with sock:
            time.sleep(0.5)  # the handler is reading the body
            bridge.proc.send_signal(signal.SIGTERM)
            # the listener closes (no new connections) while the request is still in flight
            wait_for("the listener closed", lambda: refused(bridge.port), timeout=5)
            time.sleep(0.5)
            assert bridge.proc.poll() is None  # waiting for the request in flight
            sock.sendall(body[len(body) // 2 :])
            assert answer_status(sock) == 200
        assert bridge.proc.wait(15) == 0, bridge.logs()[-3000:]
    finally:
        bridge.kill()
    assert stored(bridge, "InFlight") == 1
    assert steps_logged(bridge) == [s for s in STEPS if not s.startswith("stopping: /-/ready")]


def test_a_request_in_flight_gets_shutdown_timeout_then_is_cancelled(tmp_path: Path) -> None:
    """A client that never finishes its body cannot hold the stop past --shutdown-timeout:
    the request is cancelled (nothing stored), and the process still exits 0."""
    bridge = start(tmp_path, "--shutdown-timeout", "1")
    assert bridge.proc is not None
    body = webhook("NeverFinished")
    try:
        with slow_post(bridge.port, body, 10) as sock:
            time.sleep(0.5)
            began = time.monotonic()
            bridge.proc.send_signal(signal.SIGTERM)
            assert bridge.proc.wait(15) == 0, bridge.logs()[-3000:]
            took = time.monotonic() - began
            assert answer_status(sock) in (None, 500, 503)
    finally:
        bridge.kill()
    # 1 s for the handler, then its cancellation (aiohttp allows the same again): well under
    # the 10 s a stuck client would otherwise cost
    assert 1.0 <= took < 6, took
    assert stored(bridge, "NeverFinished") == 0


def test_live_streams_end_at_once_and_do_not_hold_the_stop(tmp_path: Path) -> None:
    """A page's live stream never ends on its own: it is ended when the listeners close (its
    page reconnects to another replica), not waited for until --shutdown-timeout."""
    bridge = Bridge(tmp_path, args=("--shutdown-timeout", "20")).start()  # reads open on loopback
    assert bridge.proc is not None
    try:
        assert bridge.post_webhook(webhook("Watched")).status == 200
        (incident,) = bridge.incidents()
        sock = socket.create_connection((LOOPBACK, bridge.port), timeout=20)
        with sock:
            sock.sendall(
                f"GET /incidents/{incident['id']}/live HTTP/1.1\r\n"
                f"Host: {LOOPBACK}:{bridge.port}\r\n\r\n".encode()
            )
            assert answer_status(sock) == 200  # the stream is open
            began = time.monotonic()
            bridge.proc.send_signal(signal.SIGTERM)
            assert bridge.proc.wait(25) == 0, bridge.logs()[-3000:]
            took = time.monotonic() - began
    finally:
        bridge.kill()
    assert took < 5, took
