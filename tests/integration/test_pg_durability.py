"""Nothing answered 200 is lost on PostgreSQL: not when the bridge is killed with SIGKILL under
load, not when PostgreSQL itself stops with ``pg_ctl stop -m immediate`` (its processes killed,
recovery from the WAL at the next start) under load; and every notification goes out, none
under two idempotency keys.

A real ``incident-bridge serve --db postgresql://...`` on a server of the test's own, a rules file
with one webhook target (the signed-webhook fake, which counts deliveries by Idempotency-Key),
and several concurrent senders of distinct webhooks (one new incident each) that do what
Alertmanager does: a 503 or a refused connection is sent again, the same body, until a 200.

What this proves is "commit before answer" over PostgreSQL, and that the service rides out a
server that goes away and comes back without a restart of its own. The server's own durability
against a power loss (fsync) is PostgreSQL's, out of this test's reach (the test cluster runs
with fsync off: the OS page cache survives both stories).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from tests.fakes.base import in_a_thread
from tests.fakes.webhook import SECRET, WebhookFake
from tests.integration.procs import Bridge, http, wait_for
from tests.pgcluster import Cluster, running_cluster

pytestmark = pytest.mark.slow

N = 300  # distinct webhooks per story
SENDERS = 8
ACKS_BEFORE_FAULT = 100
RETRY_PAUSE_S = 0.05  # Alertmanager's retries back off from about this much
PASSWORD = "durable-pw-5e1c9a"  # the server asks for it (scram); it never shows
RULES = (
    "targets:\n  hook:\n    type: webhook\n    url: ${HOOK_URL}\n    secret: ${HOOK_SECRET}\n"
    "route:\n  name: default\n  tiers:\n    general: [hook]\n"
)


@dataclass
class Run:
    tag: str
    acked: set[int] = field(default_factory=set)
    sent: Counter[int] = field(default_factory=Counter)  # request -> times sent
    refused: Counter[int] = field(default_factory=Counter)  # answers other than 200, by status

    def key(self, n: int) -> str:
        return f'{{}}:{{alertname="PgDurability", run="{self.tag}", n="{n}"}}'

    def payload(self, n: int) -> bytes:
        alerts = [
            {
                "status": "firing",
                "labels": {"alertname": "PgDurability", "run": self.tag, "n": str(n), "j": str(j)},
                "annotations": {"summary": f"durability {n}/{j}"},
                "startsAt": "2026-11-27T04:05:13.998173144Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": f"{self.tag}-{n:06d}-{j}",
            }
            for j in range(1 + n % 3)
        ]
        body = {
            "version": "4",
            "groupKey": self.key(n),
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "bridge",
            "groupLabels": {"alertname": "PgDurability", "n": str(n)},
            "commonLabels": {"alertname": "PgDurability", "run": self.tag, "n": str(n)},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.test:9093",
            "alerts": alerts,
        }
        return json.dumps(body).encode()

    def alert_count(self, n: int) -> int:
        return 1 + n % 3


async def post(session: aiohttp.ClientSession, bridge: Bridge, run: Run, n: int) -> int:
    """One attempt; its status (0: no answer)."""
    run.sent[n] += 1
    headers = {"Content-Type": "application/json", **bridge.auth()}
    try:
        async with session.post(
            bridge.url + "/api/v1/alerts", data=run.payload(n), headers=headers
        ) as resp:
            body = await resp.read()
            if resp.status == 200:
                assert json.loads(body)["status"] == "ok"
                run.acked.add(n)
            else:
                run.refused[resp.status] += 1
            return resp.status
    except (TimeoutError, aiohttp.ClientError, ConnectionError):
        run.refused[0] += 1
        return 0


async def send(
    bridge: Bridge,
    run: Run,
    numbers: list[int],
    *,
    retry: bool,
    fault: Any = None,
    deadline_s: float = 40.0,
) -> None:
    """``numbers`` from SENDERS senders; ``fault()`` (a coroutine function) runs once when
    ACKS_BEFORE_FAULT were answered 200. With ``retry`` a refused webhook is sent again until
    a 200; without, a sender stops at the first refusal after the fault."""
    pending = iter(numbers)
    faulted = asyncio.Event()
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    tasks: list[asyncio.Task[Any]] = []

    async def sender(session: aiohttp.ClientSession) -> None:
        for n in pending:
            while True:
                if not retry and faulted.is_set():
                    return
                status = await post(session, bridge, run, n)
                if len(run.acked) >= ACKS_BEFORE_FAULT and fault and not faulted.is_set():
                    faulted.set()
                    tasks.append(asyncio.create_task(fault()))
                if status == 200 or not retry:
                    break
                assert loop.time() < give_up, f"{n} not accepted in {deadline_s} s"
                await asyncio.sleep(RETRY_PAUSE_S)

    timeout = aiohttp.ClientTimeout(total=15)
    connector = aiohttp.TCPConnector(limit=SENDERS)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(sender(session) for _ in range(SENDERS)))
    await asyncio.gather(*tasks)
    if fault:
        assert faulted.is_set(), f"only {len(run.acked)} of {len(numbers)} were answered 200"


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True, password=PASSWORD) as conn:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]


def check_stored(url: str, run: Run) -> None:
    """Every webhook answered 200 is in the database, once: one incident per group, its alerts,
    one alert_fired entry per alert, one 'opened' notification; a journal entry per time it was
    committed (at most one per time it was sent)."""
    like = f'%run="{run.tag}"%'
    incidents = dict(
        query(url, "SELECT key, count(*) FROM incidents WHERE key LIKE %s GROUP BY key",
              like)
    )  # fmt: skip
    missing = [n for n in run.acked if incidents.get(run.key(n)) is None]
    assert not missing, f"{len(missing)} webhooks answered 200 are lost, e.g. {missing[:5]}"
    assert all(count == 1 for count in incidents.values()), "an incident opened twice"
    per_incident = {
        key: (alerts, fired, opened)
        for key, alerts, fired, opened in query(
            url,
            "SELECT i.key, (SELECT count(*) FROM incident_alerts a WHERE a.incident_id = i.id), "
            "(SELECT count(*) FROM timeline t WHERE t.incident_id = i.id "
            "AND t.kind = 'alert_fired'), "
            "(SELECT count(*) FROM outbox o WHERE o.incident_id = i.id AND o.event = 'opened') "
            "FROM incidents i WHERE i.key LIKE %s",
            like,
        )
    }
    for n in run.acked:
        alerts, fired, opened = per_incident[run.key(n)]
        assert alerts == run.alert_count(n), (n, alerts)
        assert fired == run.alert_count(n), (n, fired)
        assert opened == 1, (n, opened)
    journal = dict(
        query(url, "SELECT group_key, count(*) FROM webhooks WHERE group_key LIKE %s "
              "GROUP BY group_key", like)
    )  # fmt: skip
    for n in run.acked:
        assert 1 <= journal.get(run.key(n), 0) <= run.sent[n], (n, journal.get(run.key(n)))


def check_notifications(url: str, fake: WebhookFake) -> None:
    """Every outbox row delivered; the sink got every message, each under one key (a key
    received twice is a retry of one message, which the receiver deduplicates)."""

    def settled() -> bool:
        states = dict(query(url, "SELECT state, count(*) FROM outbox GROUP BY state"))
        return set(states) == {"delivered"}

    wait_for("every outbox row delivered", settled, timeout=30)
    rows = query(url, "SELECT id, incident_id, event, idempotency_key, leader_id FROM outbox")
    leaders = {key for id_, _, _, key, leader in rows if leader is None or leader == id_}
    received = Counter(str(d["idempotency_key"]) for d in fake.received)
    assert set(received) <= {r[3] for r in rows}, "a delivery under a key the outbox never had"
    assert leaders <= set(received), f"{len(leaders - set(received))} messages never delivered"
    opened = Counter(incident for _, incident, event, _, _ in rows if event == "opened")
    assert opened and set(opened.values()) == {1}
    sent_opened = Counter(int(d["incident"]["id"]) for d in fake.received if d["event"] == "opened")
    keys_opened: dict[int, set[str]] = {}
    for d in fake.received:
        if d["event"] == "opened":
            keys_opened.setdefault(int(d["incident"]["id"]), set()).add(d["idempotency_key"])
    assert set(keys_opened) == set(opened), "an incident's opening never sent"
    assert all(len(keys) == 1 for keys in keys_opened.values()), "an opening under two keys"
    print(
        f"\nnotifications: {len(rows)} rows, {len(fake.received)} deliveries, "
        f"{sum(c - 1 for c in received.values())} retries of a key, "
        f"{sum(c - 1 for c in sent_opened.values())} openings received again"
    )


@pytest.fixture
def cluster() -> Iterator[tuple[Cluster, str]]:
    """A server of the test's own (it is stopped) that asks TCP clients for a password, and
    the URL of an empty database on it."""
    with running_cluster() as c:
        url = c.new_database()
        c.sql(f"ALTER ROLE bridge PASSWORD '{PASSWORD}'")
        (c.data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        )
        c.sql("SELECT pg_reload_conf()")
        yield c, url


def test_every_200_survives_sigkill_and_postgresql_stopping(
    cluster: tuple[Cluster, str], tmp_path: Path
) -> None:
    server, url = cluster
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(url).close()  # the password is needed
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    fake = WebhookFake()
    with in_a_thread(fake):
        env = {"HOOK_URL": fake.hook_url, "HOOK_SECRET": SECRET}
        password = tmp_path / "db-password"
        password.write_text(PASSWORD + "\n")
        password.chmod(0o600)
        bridge = Bridge(
            tmp_path / "bridge",
            args=["--rules", str(rules), "--db-password-file", str(password)],
            env=env,
            database_url=url,
        )
        try:
            bridge.start()
            assert bridge.proc is not None

            # (a) SIGKILL mid-load, a restart, and what was refused sent again
            killed = Run("sigkill-" + uuid.uuid4().hex[:8])
            pid = bridge.proc.pid

            async def kill() -> None:
                os.kill(pid, signal.SIGKILL)

            asyncio.run(send(bridge, killed, list(range(N)), retry=False, fault=kill))
            assert bridge.proc.wait(10) == -signal.SIGKILL
            assert sum(killed.refused.values()) > 0, "the kill should land mid-load"
            acked_before_restart = set(killed.acked)
            bridge.start()
            check_stored(url, killed)
            rest = [n for n in range(N) if n not in killed.acked]
            asyncio.run(send(bridge, killed, rest, retry=True))
            assert killed.acked == set(range(N))
            check_stored(url, killed)

            # (b) PostgreSQL stopped with -m immediate mid-load, started again a moment later;
            # the senders keep going (503s sent again) through it, the bridge keeps running
            stopped = Run("pgstop-" + uuid.uuid4().hex[:8])

            async def outage() -> None:
                await asyncio.to_thread(server.stop, "immediate")
                await asyncio.sleep(1.0)
                await asyncio.to_thread(server.start)

            asyncio.run(send(bridge, stopped, list(range(N)), retry=True, fault=outage))
            assert stopped.acked == set(range(N))
            assert stopped.refused[503] > 0, "the outage should refuse some webhooks"
            assert bridge.proc.poll() is None, bridge.logs()[-3000:]
            check_stored(url, stopped)
            wait_for("ready again", lambda: bridge.proc is not None and _ready(bridge), 15)

            # (c) every notification of both stories delivered, none under two keys
            check_notifications(url, fake)
            print(
                f"sigkill: {len(acked_before_restart)} answered 200 before the kill, "
                f"{sum(killed.sent.values())} sent; pg stop: {sum(stopped.sent.values())} sent, "
                f"refused {dict(stopped.refused)}"
            )
            assert bridge.stop() == 0, bridge.logs()[-3000:]
            assert PASSWORD not in bridge.logs()
            # only 503s, never an error of the bridge's own (a 500) or a 4xx that Alertmanager
            # would take as final
            assert set(killed.refused) <= {0, 503} and set(stopped.refused) <= {0, 503}
        finally:
            bridge.stop()


def _ready(bridge: Bridge) -> bool:
    return http("GET", bridge.url + "/-/ready", timeout=2).status == 200
