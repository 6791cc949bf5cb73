"""Several ``incident-bridge serve`` processes on one PostgreSQL database, as a Deployment with
replicas runs them (docs/ha.md): the harness of tests/integration/test_replicas.py and
bench/replicas.py.

Each replica is a real process with a port of its own that it keeps across restarts (what an
Alertmanager peer or a client was given stays right after a SIGKILL and a start), the same rules
(one signed-webhook target whose fake counts deliveries by Idempotency-Key), the same webhook and
API tokens (replicas cannot each make their own: docs/ha.md).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.webhook import SECRET, WebhookFake
from tests.integration.procs import Bridge, free_port, http

API_TOKEN = "replicas-api-token-0c1d2e3f"
RULES = (
    "targets:\n  hook:\n    type: webhook\n    url: ${HOOK_URL}\n    secret: ${HOOK_SECRET}\n"
    "route:\n  name: default\n  tiers:\n    general: [hook]\n"
)


def replicas(
    workdir: Path,
    database_url: str,
    hook_url: str,
    count: int,
    *,
    args: tuple[str, ...] = (),
    rules: str = RULES,
) -> list[Bridge]:
    """``count`` replicas (not started) on one database, each with a fixed port."""
    workdir.mkdir(parents=True, exist_ok=True)
    rules_file = workdir / "rules.yaml"
    rules_file.write_text(rules)
    token_file = workdir / "api-token"
    token_file.write_text(API_TOKEN + "\n")
    token_file.chmod(0o600)
    env = {"HOOK_URL": hook_url, "HOOK_SECRET": SECRET}
    out = []
    for n in range(count):
        bridge = Bridge(
            workdir / f"replica-{n}",
            args=[
                "--rules",
                str(rules_file),
                "--api-token-file",
                str(token_file),
                "--replica-id",
                f"replica-{n}",
                *args,
            ],
            env=dict(env),
            database_url=database_url,
            fixed_port=free_port(),
        )
        bridge.api_token = API_TOKEN
        out.append(bridge)
    return out


@contextlib.contextmanager
def running(bridges: list[Bridge]) -> Iterator[list[Bridge]]:
    try:
        for bridge in bridges:
            bridge.start()
        yield bridges
    finally:
        for bridge in bridges:
            bridge.stop()


def ready(bridge: Bridge) -> bool:
    if bridge.proc is None or bridge.proc.poll() is not None:
        return False
    try:
        return http("GET", bridge.url + "/-/ready", timeout=2).status == 200
    except OSError:
        return False


@dataclass
class Killer:
    """A thread that SIGKILLs one replica after another (round robin) every ``every_s`` and
    starts it again after ``down_s``: a node lost and its pod rescheduled, again and again."""

    bridges: list[Bridge]
    every_s: float = 3.0
    down_s: float = 0.5
    kills: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Killer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            self._thread = None

    def _run(self) -> None:
        for bridge in itertools.cycle(self.bridges):
            if self._stop.wait(self.every_s):
                return
            bridge.kill()
            self.kills += 1
            time.sleep(self.down_s)
            try:
                bridge.start()
            except AssertionError as exc:  # a failed start ends the test with its log
                self.errors.append(str(exc)[-3000:])
                return


def rows(bridge: Bridge, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return bridge.rows(sql, *args)


def wait_delivered(bridge: Bridge, timeout: float = 60.0) -> dict[str, int]:
    """Wait until every outbox row is delivered; the states seen last."""
    deadline = time.monotonic() + timeout
    states: dict[str, int] = {}
    while time.monotonic() < deadline:
        states = dict(rows(bridge, "SELECT state, count(*) FROM outbox GROUP BY state"))
        if set(states) <= {"delivered"}:
            return states
        time.sleep(0.2)
    raise AssertionError(f"outbox not delivered in {timeout} s: {states}")


@dataclass
class Deliveries:
    """What the webhook fake received against what the outbox holds."""

    messages: int  # distinct messages (leader rows) in the outbox
    received: int  # requests the fake received
    repeated: int  # requests beyond the first of a key (a retry of one message)
    never: int  # messages never received
    foreign: int  # keys the outbox never had
    opened_twice: int  # incidents whose opening came under two keys


def deliveries(bridge: Bridge, fake: WebhookFake) -> Deliveries:
    outbox = rows(bridge, "SELECT id, incident_id, event, idempotency_key, leader_id FROM outbox")
    leaders = {key for id_, _, _, key, leader in outbox if leader is None or leader == id_}
    keys = {r[3] for r in outbox}
    received = Counter(str(d["idempotency_key"]) for d in fake.received)
    opened: dict[int, set[str]] = {}
    for d in fake.received:
        if d["event"] == "opened":
            opened.setdefault(int(d["incident"]["id"]), set()).add(str(d["idempotency_key"]))
    return Deliveries(
        messages=len(leaders),
        received=len(fake.received),
        repeated=sum(c - 1 for c in received.values()),
        never=len(leaders - set(received)),
        foreign=len(set(received) - keys),
        opened_twice=sum(1 for k in opened.values() if len(k) > 1),
    )


def metric_lines(bridge: Bridge, name: str) -> list[str]:
    try:
        resp = http("GET", bridge.url + "/metrics", timeout=2)
    except OSError:
        return []
    if resp.status != 200:
        return []
    return [line for line in resp.body.decode().splitlines() if line.startswith(name)]


def leads(bridge: Bridge, loop: str) -> bool:
    """Whether ``bridge`` says it leads ``loop`` (``incident_bridge_leader{loop=...} 1``)."""
    return any(
        f'loop="{loop}"' in line and line.rsplit(" ", 1)[-1] in ("1", "1.0")
        for line in metric_lines(bridge, "incident_bridge_leader")
    )


def wait_until(
    what: str,
    probe: Callable[[], bool],
    timeout: float,
    step: float = 0.05,
    detail: Callable[[], object] | None = None,
) -> float:
    """Seconds until ``probe()`` holds; AssertionError after ``timeout`` (with ``detail()``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if probe():
            return time.monotonic() - start
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout} s" + (f": {detail()}" if detail else ""))


def webhook(tag: str, n: int, status: str = "firing") -> bytes:
    """An Alertmanager webhook of one alert, group ``n`` of run ``tag``."""
    labels = {"alertname": "ReplicaLoad", "run": tag, "n": str(n)}
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"replica load {n}"},
        "startsAt": "2026-12-07T04:05:13.998173144Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-07T05:05:13Z",
        "generatorURL": "",
        "fingerprint": f"{tag}-{n:06d}",
    }
    body = {
        "version": "4",
        "groupKey": group_key(tag, n),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "bridge",
        "groupLabels": {"alertname": "ReplicaLoad", "n": str(n)},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.test:9093",
        "alerts": [alert],
    }
    return json.dumps(body).encode()


def group_key(tag: str, n: int) -> str:
    return f'{{}}:{{alertname="ReplicaLoad", n="{n}", run="{tag}"}}'
