"""Three replicas on one PostgreSQL database (docs/ha.md), as real processes.

- A real Alertmanager HA pair, each peer sending to a different replica, every peer sending every
  group at once (``--cluster.peer-timeout=0s``: the copies race), 500 groups fired and resolved
  while one replica after another is SIGKILLed and started again: each group is one incident,
  mitigated, each alert and timeline entry once, every notification delivered, a message received
  twice only under its one key and no more often than the kills explain.
- A rolling restart (SIGTERM, the shutdown delay, start) of every replica while webhooks flow at
  a steady rate to the ready ones, as a Kubernetes Service does: none refused, none lost, no
  notification doubled.
- People's actions racing on two replicas against one incident: no 5xx, nothing lost.
- PostgreSQL stopped and started under load: every replica recovers on its own.
- Each background loop's leader SIGKILLed: another replica leads within two ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.base import in_a_thread
from tests.fakes.webhook import WebhookFake
from tests.integration import replicas as rp
from tests.integration.procs import (
    Alertmanager,
    Bridge,
    alertmanager_config,
    free_port,
    require_binary,
)
from tests.pgcluster import Cluster, running_cluster

pytestmark = pytest.mark.slow

GROUPS = 500
WAVES = 10
# The replicas' rules with a status-update reminder every 2 s while an incident is open: the
# scheduler runs on whichever replica holds its lease while they are killed in turn, and each
# reminder must still be sent once per due time.
REMINDING = rp.RULES + "".join(
    f"  reminders:\n    sev{n}: {{update_every: 2s}}\n"
    if n == 1
    else f"    sev{n}: {{update_every: 2s}}\n"
    for n in range(1, 5)
)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with running_cluster() as c:
        yield c


@pytest.fixture
def fake() -> Iterator[WebhookFake]:
    server = WebhookFake()
    with in_a_thread(server):
        yield server


def am_alerts(
    tag: str, numbers: range, *, started: datetime, resolved: bool
) -> list[dict[str, Any]]:
    """The alerts as Prometheus sends them: the same ``startsAt`` while an alert lasts, an
    ``endsAt`` ahead while it fires, now when it has resolved."""
    now = datetime.now(UTC)
    ends = now if resolved else now + timedelta(minutes=30)
    return [
        {
            "labels": {"alertname": "ReplicaHA", "run": tag, "n": str(n)},
            "annotations": {"summary": f"replica HA {n}"},
            "startsAt": started.isoformat(),
            "endsAt": ends.isoformat(),
        }
        for n in numbers
    ]


def test_ha_pair_to_three_replicas_while_replicas_are_killed(
    cluster: Cluster, fake: WebhookFake, tmp_path: Path
) -> None:
    binary = require_binary("/usr/bin/prometheus-alertmanager")
    url = cluster.new_database()
    bridges = rp.replicas(
        tmp_path, url, fake.hook_url, 3, args=("--scheduler-interval", "1"), rules=REMINDING
    )
    tag = "ha-" + uuid.uuid4().hex[:8]
    with rp.running(bridges):
        ports = [free_port() for _ in range(2)]
        peers: list[Alertmanager] = []
        try:
            for n, port in enumerate(ports):
                config = alertmanager_config(
                    bridges[n].url,
                    bridges[n].token,
                    group_by=("alertname", "run", "n"),
                    group_wait="1s",
                    group_interval="2s",
                )
                others = [p for p in ports if p != port]
                peer = Alertmanager(
                    binary, tmp_path / f"am-{n}", config, port, others, peer_timeout="0s"
                )
                peers.append(peer.start())
            rp.wait_until("the peers see each other", lambda: all(
                p.cluster_size() == 2 for p in peers), 20)  # fmt: skip
            per_wave = GROUPS // WAVES
            started = datetime.now(UTC) - timedelta(minutes=1)
            with rp.Killer(bridges, every_s=1.5, down_s=0.5) as killer:
                for wave in range(WAVES):  # as Prometheus does: every alert to every peer
                    numbers = range(wave * per_wave, (wave + 1) * per_wave)
                    for peer in peers:
                        peer.post_alerts(am_alerts(tag, numbers, started=started, resolved=False))
                    time.sleep(1.0)

                def opened() -> bool:
                    return _count(bridges[2], tag) >= GROUPS

                rp.wait_until("every group opened", opened, 90, step=0.5)
                for wave in range(WAVES):
                    numbers = range(wave * per_wave, (wave + 1) * per_wave)
                    for peer in peers:
                        peer.post_alerts(am_alerts(tag, numbers, started=started, resolved=True))
                    time.sleep(1.0)

                def resolved() -> bool:
                    return _count(bridges[2], tag, done=True) >= GROUPS

                def statuses() -> object:
                    return rp.rows(
                        bridges[2],
                        "SELECT status, count(*) FROM incidents WHERE key LIKE ? GROUP BY status",
                        f'%run="{tag}"%',
                    ) + rp.rows(
                        bridges[2],
                        "SELECT a.status, count(*) FROM incident_alerts a JOIN incidents i ON "
                        "i.id = a.incident_id WHERE i.key LIKE ? GROUP BY a.status",
                        f'%run="{tag}"%',
                    )

                rp.wait_until("every group mitigated", resolved, 90, step=0.5, detail=statuses)
                killer.stop()
                assert not killer.errors, killer.errors
                kills = killer.kills
        finally:
            for peer in peers:
                peer.stop()
        for bridge in bridges:  # every replica up again and answering
            rp.wait_until("replicas ready", lambda b=bridge: rp.ready(b), 30)  # type: ignore[misc]
        _check_one_incident_per_group(bridges[0], tag)
        rp.wait_delivered(bridges[0], timeout=90)
        got = rp.deliveries(bridges[0], fake)
        print(f"\n{kills} kills; deliveries {got}")
        assert got.never == 0, got
        assert got.foreign == 0, got
        assert got.opened_twice == 0, got
        # A killed replica may have had up to one look's worth of sends in flight (the
        # worker's due_per_target, 100); each is sent again under its key after the claim's
        # lease. More repeats than that would be a second replica sending a claimed message.
        assert got.repeated <= kills * 100, got
        # every replica killed at least once while the groups came and went (a loaded machine
        # starts a replica more slowly, so the count varies: 6-7 on an idle one)
        assert kills >= 3, f"only {kills} kills: the run was shorter than planned"


# Every alert of an incident resolved: mitigated, and the follow-up opens (docs/incidents.md).
DONE = ("mitigated", "resolved")


def _count(bridge: Bridge, tag: str, done: bool = False) -> int:
    sql = "SELECT count(*) FROM incidents WHERE key LIKE ?"
    if done:
        sql += f" AND status IN {DONE}"
    return int(rp.rows(bridge, sql, f'%run="{tag}"%')[0][0])


def _check_one_incident_per_group(bridge: Bridge, tag: str) -> None:
    per_key = rp.rows(
        bridge,
        "SELECT key, count(*), min(status) FROM incidents WHERE key LIKE ? GROUP BY key",
        f'%run="{tag}"%',
    )
    assert len(per_key) == GROUPS, len(per_key)
    doubled = [key for key, count, _ in per_key if count != 1]
    assert not doubled, f"{len(doubled)} groups opened twice, e.g. {doubled[:3]}"
    assert {status for _, _, status in per_key} <= set(DONE)
    alerts = rp.rows(
        bridge,
        "SELECT i.id, (SELECT count(*) FROM incident_alerts a WHERE a.incident_id = i.id) "
        "FROM incidents i WHERE i.key LIKE ?",
        f'%run="{tag}"%',
    )
    assert {count for _, count in alerts} == {1}, Counter(count for _, count in alerts)
    kinds = rp.rows(
        bridge,
        "SELECT t.incident_id, t.kind, count(*) FROM timeline t JOIN incidents i "
        "ON i.id = t.incident_id WHERE i.key LIKE ? GROUP BY t.incident_id, t.kind",
        f'%run="{tag}"%',
    )
    twice = Counter(kind for _, kind, count in kinds if count > 1 and kind != "reminder")
    assert not twice, f"timeline entries doubled: {twice}"
    # reminders: one per incident and due time, however many replicas ran the scheduler
    reminders = Counter(
        (incident, json.loads(data)["due_at"])
        for incident, data in rp.rows(
            bridge,
            "SELECT t.incident_id, t.data FROM timeline t JOIN incidents i ON i.id = "
            "t.incident_id WHERE i.key LIKE ? AND t.kind = 'reminder'",
            f'%run="{tag}"%',
        )
    )
    assert reminders, "no reminder was sent while the incidents were open"
    assert set(reminders.values()) == {1}, [k for k, n in reminders.items() if n > 1][:5]
    print(f"\n{len(reminders)} reminders, each once per due time")
    fired = Counter(kind for _, kind, _ in kinds)
    assert fired["alert_fired"] == GROUPS, fired


# --- a rolling restart ---------------------------------------------------------------------


class Service:
    """What a Kubernetes Service does for the test's senders: requests go round robin to the
    replicas whose /-/ready said 200 at the last probe (every ``period_s``)."""

    def __init__(self, bridges: list[Bridge], period_s: float = 0.2) -> None:
        self.bridges = bridges
        self.period_s = period_s
        self.endpoints: list[Bridge] = list(bridges)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)
        self._next = 0

    def __enter__(self) -> Service:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _probe(self) -> None:
        while not self._stop.wait(self.period_s):
            self.endpoints = [b for b in self.bridges if rp.ready(b)]

    def pick(self) -> Bridge:
        endpoints = self.endpoints
        assert endpoints, "no replica ready"
        self._next += 1
        return endpoints[self._next % len(endpoints)]


async def steady(
    service: Service, tag: str, rate: float, stop: threading.Event
) -> tuple[list[int], Counter[int]]:
    """Webhooks at ``rate`` a second, each to a replica the Service picks, until ``stop``;
    the numbers answered 200 and the statuses of the others (each sent once, no retry)."""
    acked: list[int] = []
    refused: Counter[int] = Counter()
    tasks: set[asyncio.Task[None]] = set()
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(n: int) -> None:
            bridge = service.pick()
            headers = {"Content-Type": "application/json", **bridge.auth()}
            try:
                async with session.post(
                    bridge.url + "/api/v1/alerts", data=rp.webhook(tag, n), headers=headers
                ) as resp:
                    await resp.read()
                    if resp.status == 200:
                        acked.append(n)
                    else:
                        refused[resp.status] += 1
            except (aiohttp.ClientError, OSError, TimeoutError):
                refused[0] += 1

        n = 0
        start = time.monotonic()
        while not stop.is_set():
            task = asyncio.create_task(one(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        await asyncio.gather(*tasks)
    return acked, refused


def test_rolling_restart_refuses_and_loses_nothing(
    cluster: Cluster, fake: WebhookFake, tmp_path: Path
) -> None:
    url = cluster.new_database()
    bridges = rp.replicas(tmp_path, url, fake.hook_url, 3, args=("--shutdown-delay", "1"))
    tag = "roll-" + uuid.uuid4().hex[:8]
    with rp.running(bridges), Service(bridges) as service:
        stop = threading.Event()
        result: dict[str, Any] = {}

        def load() -> None:
            result["out"] = asyncio.run(steady(service, tag, 40.0, stop))

        sender = threading.Thread(target=load)
        sender.start()
        try:
            time.sleep(1.0)
            for bridge in bridges:  # one by one, as a Deployment's RollingUpdate does
                # the whole stop may take --shutdown-delay + --shutdown-timeout + the worker's
                # 10 s: a SIGKILL before that would be the test's doing, not the bridge's
                assert bridge.stop(grace=30) == 0, bridge.logs()[-3000:]
                bridge.start()
                rp.wait_until("back in the Service", lambda b=bridge: b in service.endpoints, 10)  # type: ignore[misc]
            time.sleep(1.0)
        finally:
            stop.set()
            sender.join(60)
        acked, refused = result["out"]
        assert not refused, f"refused during the rolling restart: {dict(refused)}"
        assert len(acked) > 100, len(acked)
        stored = {
            key
            for (key,) in rp.rows(
                bridges[0], "SELECT key FROM incidents WHERE key LIKE ?", f'%run="{tag}"%'
            )
        }
        lost = [n for n in acked if rp.group_key(tag, n) not in stored]
        assert not lost, f"{len(lost)} webhooks answered 200 are lost"
        rp.wait_delivered(bridges[0])
        got = rp.deliveries(bridges[0], fake)
        print(f"\n{len(acked)} webhooks through the rolling restart; deliveries {got}")
        assert got.never == 0 and got.foreign == 0 and got.opened_twice == 0, got
        assert got.repeated == 0, f"a notification doubled by a clean restart: {got}"


# --- people's actions racing on two replicas -------------------------------------------------


def test_actions_racing_on_two_replicas(
    cluster: Cluster, fake: WebhookFake, tmp_path: Path
) -> None:
    url = cluster.new_database()
    bridges = rp.replicas(tmp_path, url, fake.hook_url, 2)
    tag = "race-" + uuid.uuid4().hex[:8]
    with rp.running(bridges):
        assert bridges[0].post_webhook(rp.webhook(tag, 0)).status == 200
        (incident,) = [i for i in bridges[1].incidents() if tag in i["key"]]
        iid = incident["id"]
        people = [f"person-{n}" for n in range(5)]
        requests: list[tuple[str, dict[str, Any]]] = []
        for n in range(200):
            if n % 4 == 0:
                requests.append(("acknowledge", {"actor": people[n % 5]}))
            elif n % 4 == 1:
                requests.append(("roles", {"role": "commander", "person": people[n % 5]}))
            else:
                requests.append(("notes", {"text": f"note {n} of {tag}", "actor": people[n % 5]}))

        async def race() -> list[tuple[int, int, Any]]:
            auth = {"Authorization": f"Bearer {rp.API_TOKEN}"}
            async with aiohttp.ClientSession() as session:
                sem = asyncio.Semaphore(16)

                async def one(n: int, verb: str, body: dict[str, Any]) -> tuple[int, int, Any]:
                    bridge = bridges[n % 2]
                    async with (
                        sem,
                        session.post(
                            f"{bridge.url}/api/v1/incidents/{iid}/{verb}", json=body, headers=auth
                        ) as resp,
                    ):
                        return n, resp.status, await resp.json(content_type=None)

                return list(
                    await asyncio.gather(*(one(n, v, b) for n, (v, b) in enumerate(requests)))
                )

        answers = asyncio.run(race())
        statuses = Counter(status for _, status, _ in answers)
        assert all(status < 500 for status in statuses), statuses
        # every action is accepted: a second acknowledge is a no-op answered 200 (it changes
        # nothing), a role given to its holder likewise
        assert statuses == Counter({200: len(requests)}), statuses
        timeline = bridges[0].incident(iid)["timeline"]
        notes = Counter(e["text"].removeprefix("Note: ") for e in timeline if e["kind"] == "note")
        wanted = {b["text"] for verb, b in requests if verb == "notes"}
        assert set(notes) == wanted and set(notes.values()) == {1}, "a note lost or doubled"
        acknowledged = [e for e in timeline if e["kind"] == "status_changed"]
        assert len(acknowledged) == 1, acknowledged  # one transition, however many raced
        roles = [e for e in timeline if e["kind"].startswith("role")]
        assert roles, "no role change recorded"
        view = bridges[1].incident(iid)
        # no lost update: the commander now is the one the last role entry names
        (commander,) = view["roles"]["commander"]
        assert f" to {commander} " in roles[-1]["text"], (commander, roles[-1])


# --- PostgreSQL restarted under load ---------------------------------------------------------


def test_postgresql_restart_under_load_three_replicas(
    cluster: Cluster, fake: WebhookFake, tmp_path: Path
) -> None:
    url = cluster.new_database()
    bridges = rp.replicas(tmp_path, url, fake.hook_url, 3)
    tag = "pgrestart-" + uuid.uuid4().hex[:8]
    with rp.running(bridges):
        acked: set[int] = set()
        refused: Counter[int] = Counter()
        enough = asyncio.Event()  # load is flowing: time to stop the server

        async def sender(numbers: list[int]) -> None:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
                for n in numbers:
                    give_up = time.monotonic() + 60
                    while True:  # as Alertmanager does: a refusal is sent again
                        bridge = bridges[n % 3]
                        headers = {"Content-Type": "application/json", **bridge.auth()}
                        try:
                            async with session.post(
                                bridge.url + "/api/v1/alerts",
                                data=rp.webhook(tag, n),
                                headers=headers,
                            ) as resp:
                                await resp.read()
                                if resp.status == 200:
                                    acked.add(n)
                                    if len(acked) >= 60:
                                        enough.set()
                                    break
                                refused[resp.status] += 1
                        except (aiohttp.ClientError, OSError, TimeoutError):
                            refused[0] += 1
                        assert time.monotonic() < give_up, f"{n} never accepted"
                        await asyncio.sleep(0.05)

        async def main() -> None:
            numbers = list(range(300))
            senders = [asyncio.create_task(sender(numbers[k::6])) for k in range(6)]
            await enough.wait()
            await asyncio.to_thread(cluster.stop, "immediate")
            await asyncio.sleep(1.0)
            await asyncio.to_thread(cluster.start)
            await asyncio.gather(*senders)

        asyncio.run(main())
        assert acked == set(range(300))
        assert set(refused) <= {503}, refused
        assert refused[503] > 0, "the restart should refuse some webhooks"
        for bridge in bridges:
            assert bridge.proc is not None and bridge.proc.poll() is None, bridge.logs()[-3000:]
            rp.wait_until("ready again", lambda b=bridge: rp.ready(b), 20)  # type: ignore[misc]
        count = rp.rows(bridges[0], "SELECT count(*) FROM incidents WHERE key LIKE ?",
                        f'%run="{tag}"%')[0][0]  # fmt: skip
        assert count == 300
        rp.wait_delivered(bridges[0])
        got = rp.deliveries(bridges[0], fake)
        assert got.never == 0 and got.opened_twice == 0, got


# --- background loops fail over --------------------------------------------------------------

# Each loop's lease lasts one of its ticks and is renewed every half tick; a dead holder's is
# taken within 1.5 ticks (bridge/service BackgroundLoop). The scheduler's tick is set short
# here; the indexer's is its own 5 s.
LOOP_TICKS = {"scheduler": 2.0, "indexer": 5.0, "reconciler": 2.0}


def test_background_loops_fail_over_within_two_ticks(
    cluster: Cluster, fake: WebhookFake, tmp_path: Path
) -> None:
    url = cluster.new_database()
    binary = require_binary("/usr/bin/prometheus-alertmanager")
    # the reconciler asks an Alertmanager: a real one, every --reconcile-interval
    config = alertmanager_config("http://127.0.0.1:9", None)
    with contextlib.ExitStack() as stack:
        am = Alertmanager(binary, tmp_path / "am", config)
        stack.callback(am.stop)
        am.start()
        args = (
            "--scheduler-interval", str(LOOP_TICKS["scheduler"]),
            "--alertmanager-url", am.url,
            "--reconcile-interval", str(LOOP_TICKS["reconciler"]),
        )  # fmt: skip
        bridges = stack.enter_context(
            rp.running(rp.replicas(tmp_path, url, fake.hook_url, 3, args=args))
        )
        for loop, tick_s in LOOP_TICKS.items():

            def one_leader(lp: str = loop) -> bool:
                return sum(rp.leads(b, lp) for b in bridges) == 1

            rp.wait_until(f"one replica leads {loop}", one_leader, 4 * tick_s)
            (leader,) = [b for b in bridges if rp.leads(b, loop)]
            leader.kill()
            others = [b for b in bridges if b is not leader]

            def taken(lp: str = loop, o: list[Bridge] = others) -> bool:
                return any(rp.leads(b, lp) for b in o)

            took = rp.wait_until(f"another replica leads {loop}", taken, 4 * tick_s)
            print(f"\n{loop}: taken over {took:.2f} s after the leader's SIGKILL (tick {tick_s} s)")
            assert took <= 2 * tick_s, f"{loop} failed over in {took:.2f} s"
            leader.start()
            assert rp.ready(leader)


# --- live pages see other replicas' changes ----------------------------------------------------


def test_live_page_sees_a_change_made_on_another_replica(
    cluster: Cluster, fake: WebhookFake, tmp_path: Path
) -> None:
    """The incident page's stream on one replica hears of a note written through another
    within about a second: streams look at the database every second (docs/ha.md)."""
    url = cluster.new_database()
    bridges = rp.replicas(tmp_path, url, fake.hook_url, 2)
    tag = "live-" + uuid.uuid4().hex[:8]
    with rp.running(bridges):
        assert bridges[0].post_webhook(rp.webhook(tag, 0)).status == 200
        (incident,) = [i for i in bridges[1].incidents() if tag in i["key"]]
        iid = incident["id"]
        auth = {"Authorization": f"Bearer {rp.API_TOKEN}"}

        async def watch() -> list[float]:
            delays = []
            async with aiohttp.ClientSession(headers=auth) as session:
                last = max(e["id"] for e in bridges[0].incident(iid)["timeline"])
                for n in range(5):
                    async with session.get(
                        f"{bridges[0].url}/incidents/{iid}/live?after={last}"
                    ) as stream:
                        assert stream.status == 200, await stream.text()
                        await stream.content.readline()  # "retry: ..."
                        await asyncio.sleep(0.3 * n)  # a note at another point of the poll
                        sent = time.monotonic()
                        async with session.post(
                            f"{bridges[1].url}/api/v1/incidents/{iid}/notes",
                            json={"text": f"from the other replica {n}"},
                        ) as posted:
                            assert posted.status == 200
                        async with asyncio.timeout(10):
                            while b"event: change" not in await stream.content.readline():
                                pass
                        delays.append(time.monotonic() - sent)
                        last = max(e["id"] for e in bridges[0].incident(iid)["timeline"])
            return delays

        delays = asyncio.run(watch())
        print(
            f"\nlive page on replica 0 saw replica 1's notes after {[round(d, 2) for d in delays]} s"
        )
        assert max(delays) < 2.0, delays
