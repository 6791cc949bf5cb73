"""Replicas on one PostgreSQL database (docs/postgresql.md#replicas): a background loop runs on
one replica at a time and moves to another when its leader dies or stops; a reminder is sent
once even when two replicas both run a tick; /-/ready and the metrics say which replica leads
what and when the replicas' rules differ; the web session key and a chat replay across
replicas; no generated API token without SQLite's single process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.alertmanager_api import Fetched
from bridge.app import create_app
from bridge.config import Settings
from bridge.core.dburl import DatabaseUrl
from bridge.core.secrets import Secret
from bridge.http.pages.signin import SESSION_KEY
from bridge.reconciler import Reconciler
from bridge.runtime import rules_runtime
from bridge.service import (
    AppState,
    BackgroundLoop,
    ReplicaHeartbeat,
    ensure_api_token,
    reload,
)
from bridge.service.scheduler import ReminderScheduler, fire_reminders
from bridge.store.interface import StoreError
from bridge.targets.base import TargetDeps
from tests.conftest import Clock, app_state, fixture_body, rows
from tests.fakes.slack_app import SIGNING_SECRET, signed, slash_body
from tests.store.test_store import ingest

# The tick of the loops in these tests (s): the lease lasts one, looks come every half.
TICK = 0.6


class Replicas:
    """AppStates of several replicas (their own stores, one database), closed at the end."""

    def __init__(self, tmp_path: Path, url: str, clock: Clock) -> None:
        self.tmp_path, self.url, self.clock = tmp_path, url, clock
        self.states: list[AppState] = []
        self.loops: list[BackgroundLoop] = []

    def settings(self, replica: str, **kw: Any) -> Settings:
        folder = self.tmp_path / replica
        folder.mkdir(exist_ok=True)
        return Settings(
            db=folder / "incident-bridge",
            database_url=DatabaseUrl.parse(self.url),
            replica_id=replica,
            **kw,
        )

    def state(self, replica: str, **kw: Any) -> AppState:
        s = app_state(self.settings(replica, **kw), clock=self.clock)
        self.states.append(s)
        return s

    def scheduler(self, state: AppState) -> ReminderScheduler:
        loop = ReminderScheduler(state, every_s=TICK)
        self.loops.append(loop)
        return loop

    async def close(self) -> None:
        for loop in self.loops:
            await loop.stop()
        for s in self.states:
            s.store.close()


@pytest.fixture
async def replicas(tmp_path: Path, pg_url: str, clock: Clock) -> AsyncIterator[Replicas]:
    r = Replicas(tmp_path, pg_url, clock)
    yield r
    await r.close()


def counting(state: AppState) -> list[float]:
    """The times the scheduler's tick reads what is due, on this replica."""
    seen: list[float] = []
    part = state.store.reminders
    read = part.due_incidents

    async def due_incidents(*args: Any, **kw: Any) -> Any:
        seen.append(time.monotonic())
        return await read(*args, **kw)

    part.due_incidents = due_incidents  # type: ignore[method-assign]
    return seen


async def until(what: str, check: Callable[[], Any], within_s: float) -> float:
    """Seconds until ``check()`` holds (fails past ``within_s``)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > within_s:
            raise AssertionError(f"timed out after {within_s} s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def found(folder: Path, pattern: str) -> list[Path]:
    return list(folder.rglob(pattern))


def gauge(state: AppState, name: str, **labels: str) -> float | None:
    value = state.metrics.registry.get_sample_value("incident_bridge_" + name, labels)
    return value


async def test_one_replica_runs_the_scheduler_and_another_takes_over_when_it_dies(
    replicas: Replicas,
) -> None:
    a, b = replicas.state("a"), replicas.state("b")
    ticks_a, ticks_b = counting(a), counting(b)
    sched_a, sched_b = replicas.scheduler(a), replicas.scheduler(b)
    sched_a.start()
    await until("a leads", lambda: sched_a.leading, 5)
    sched_b.start()
    await asyncio.sleep(3 * TICK)
    assert sched_a.leading and not sched_b.leading
    assert len(ticks_a) >= 2 and ticks_b == []
    assert a.leading == {"scheduler"} and b.leading == set()
    assert gauge(a, "leader", loop="scheduler") == 1
    assert gauge(b, "leader", loop="scheduler") == 0

    # a dies: its task ends without a release (a SIGKILL, a partition); its lease runs out
    assert sched_a._task is not None
    sched_a._task.cancel()
    await asyncio.gather(sched_a._task, return_exceptions=True)
    sched_a._task = None
    took = await until("b leads", lambda: sched_b.leading, 5)
    # the lease lasts one tick from a's last renewal (at most half a tick before it died), and
    # b looks every half tick: 1.5 ticks at most, plus the time a busy machine takes to run it
    print(f"\nscheduler taken over {took:.2f} s after its leader died (tick {TICK} s)")
    assert took <= 2 * TICK, took
    before = len(ticks_b)
    await until("b's ticks", lambda: len(ticks_b) > before, 5)
    assert b.leading == {"scheduler"}


async def test_a_clean_stop_hands_the_lease_over_at_once(replicas: Replicas) -> None:
    a, b = replicas.state("a"), replicas.state("b")
    sched_a, sched_b = replicas.scheduler(a), replicas.scheduler(b)
    sched_a.start()
    await until("a leads", lambda: sched_a.leading, 5)
    sched_b.start()
    await asyncio.sleep(TICK)
    assert not sched_b.leading
    await sched_a.stop()
    # released, not left to expire: the lease's end is in the past at once
    ((holder, expires_at),) = rows(
        a.store, "SELECT holder, expires_at FROM leases WHERE name = 'scheduler'"
    )
    assert (holder, expires_at) == ("a", 0)
    assert a.leading == set() and gauge(a, "leader", loop="scheduler") == 0
    took = await until("b leads", lambda: sched_b.leading, 5)
    print(f"\nscheduler taken over {took:.2f} s after its leader's clean stop (tick {TICK} s)")
    assert took <= TICK / 2 + 0.3, took  # b's next look, not the lease's end


async def test_two_replicas_running_one_tick_at_the_same_due_time_send_one_reminder(
    replicas: Replicas, clock: Clock
) -> None:
    """Both believe they lead (a lease's edge): the reminder's due-time key is the guarantee."""
    a, b = replicas.state("a"), replicas.state("b")
    await ingest(a.store, fixture_body("firing-group-bearer.json"))
    # the built-in rules remind of nothing: these escalate and ask for status updates
    runtime = rules_runtime([_rules(replicas.tmp_path)], TargetDeps())
    a.runtime = b.runtime = runtime
    clock.advance(31 * 60)
    results = await asyncio.gather(*(fire_reminders(s) for s in (a, b, a, b)))
    fired = [f for r in results for f in r.fired]
    kinds = sorted(f.kind for f in fired)
    assert kinds == ["escalated", "reminder"], kinds
    found = rows(
        a.store,
        "SELECT kind, count(*) FROM timeline WHERE actor = 'incident-bridge' "
        "GROUP BY kind ORDER BY kind",
    )
    assert found == [("escalated", 1), ("reminder", 1), ("role_changed", 1)]
    assert rows(a.store, "SELECT count(*) FROM reminders") == [(2,)]


def _rules(folder: Path) -> Path:
    path = folder / "reminder-rules.yaml"
    path.write_text(
        "targets:\n  room: {type: console}\n"
        "rotations:\n  commanders:\n    members: [amara, bjorn]\n"
        "route:\n  tiers:\n    incident: room\n"
        "  roles:\n    commander: {rotation: commanders}\n"
        "  reminders:\n"
        "    sev1: {update_every: 30m, acknowledge_within: 5m, escalate_to_next_commander: true}\n"
        "    sev2: {update_every: 30m, acknowledge_within: 5m, escalate_to_next_commander: true}\n"
        "    sev3: {update_every: 30m, acknowledge_within: 5m, escalate_to_next_commander: true}\n"
    )
    return path


async def test_ready_and_metrics_name_the_replica_what_it_leads_and_rules_that_differ(
    replicas: Replicas,
) -> None:
    a, b = replicas.state("a"), replicas.state("b")
    other = replicas.tmp_path / "other-rules.yaml"
    other.write_text("targets:\n  room: {type: console}\nroute:\n  tiers:\n    incident: room\n")
    b.runtime = rules_runtime([other], TargetDeps())
    assert a.runtime.config_hash != b.runtime.config_hash
    beat_a, beat_b = ReplicaHeartbeat(a, every_s=TICK), ReplicaHeartbeat(b, every_s=TICK)
    replicas.loops += [beat_a, beat_b]
    sched_a = replicas.scheduler(a)
    sched_a.start()
    await until("a leads", lambda: sched_a.leading, 5)
    beat_a.start()
    beat_b.start()
    await until("both seen", lambda: len(a.replicas) == 2 and len(b.replicas) == 2, 5)
    await beat_a.beat()
    async with TestClient(TestServer(create_app(a))) as client:
        resp = await client.get("/-/ready")
        text = await resp.text()
        assert resp.status == 200, text  # a warning, not a reason to leave the load balancer
        assert "replica a: leads scheduler; 2 replica(s) live" in text
        assert f"warning: rules differ: this replica runs {a.runtime.config_hash[:12]}" in text
        assert f"b ({b.runtime.config_hash[:12]})" in text
        metrics = await (await client.get("/metrics")).text()
    assert 'incident_bridge_replica_info{replica="a"} 1.0' in metrics
    assert "incident_bridge_replicas 2.0" in metrics
    assert "incident_bridge_rules_hash_mismatch 1.0" in metrics
    assert 'incident_bridge_leader{loop="scheduler"} 1.0' in metrics
    assert 'incident_bridge_leader{loop="indexer"} 0.0' in metrics

    # b reloads the same rules as a: the next heartbeats agree
    b.runtime = a.runtime
    await beat_b.beat()
    await beat_a.beat()
    assert gauge(a, "rules_hash_mismatch") == 0
    # b stops cleanly: its row goes, a counts itself alone at its next beat
    await beat_b.stop()
    await beat_a.beat()
    assert [r.id for r in a.replicas] == ["a"] and gauge(a, "replicas") == 1


async def test_the_web_session_key_is_one_for_every_replica(
    replicas: Replicas, tmp_path: Path
) -> None:
    a, b = replicas.state("a"), replicas.state("b")
    keys = []
    for s in (a, b):
        async with TestClient(TestServer(create_app(s))) as client:
            keys.append(client.server.app[SESSION_KEY])
    assert keys[0] == keys[1] and len(keys[0]) >= 32
    # never a file of its own beside the database on PostgreSQL
    assert not found(tmp_path, "*.session-key")
    # --session-key-file wins over the database's
    given = "k" * 40
    c = replicas.state("c", session_key=Secret(given))
    async with TestClient(TestServer(create_app(c))) as client:
        assert client.server.app[SESSION_KEY] == given.encode()


def test_postgresql_refuses_to_generate_an_api_token(replicas: Replicas, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="--api-token-file FILE or INCIDENT_BRIDGE_API_TOKEN"):
        ensure_api_token(replicas.settings("a"))
    assert not found(tmp_path, "*.api-token")
    assert ensure_api_token(replicas.settings("b", api_token=Secret("t" * 20))) is None
    # SQLite's one process still makes its own
    sqlite = Settings(db=tmp_path / "bridge.db")
    token = ensure_api_token(sqlite)
    assert token is not None and ensure_api_token(sqlite) == token


async def test_a_chat_command_replayed_to_another_replica_acts_once(
    replicas: Replicas, clock: Clock
) -> None:
    """Each replica remembers the signatures it saw; the other's memory does not have them, and
    the action's idempotency key (the trigger id, else the signature) is in the database."""
    states = [replicas.state(r, slack_signing_secret=Secret(SIGNING_SECRET)) for r in ("a", "b")]
    result = await ingest(states[0].store, fixture_body("firing-group-bearer.json"))
    incident = result.incidents[0].id
    # no trigger id: the signature is the key; the command names its incident
    body = slash_body(f"{incident} note checked the disks", channel_id="C0NONE", trigger_id="")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        **signed(body, clock.now // 10**9),
    }
    answers = []
    for s in states:
        async with TestClient(TestServer(create_app(s))) as client:
            resp = await client.post("/api/v1/chat/slack/commands", data=body, headers=headers)
            answers.append((resp.status, await resp.json()))
    assert answers[0] == answers[1] and answers[0][0] == 200, answers
    notes = rows(
        states[0].store,
        "SELECT count(*) FROM timeline WHERE incident_id = ? AND kind = 'note'",
        incident,
    )
    assert notes == [(1,)]


class Unreachable:
    """An Alertmanager client whose peers never answer (the reconciler's only dependency)."""

    peers = ("http://127.0.0.1:9",)

    def __init__(self) -> None:
        self.asked = 0

    async def fetch(self, grace_s: float) -> Fetched:
        self.asked += 1
        return Fetched(view=None, errors=(), young=())


async def test_the_reconciler_asks_alertmanager_from_one_replica_and_ready_says_who(
    replicas: Replicas,
) -> None:
    a, b = replicas.state("a"), replicas.state("b")
    clients = [Unreachable(), Unreachable()]
    loops = [
        Reconciler(s, c, interval_s=TICK, grace_s=0, jitter=lambda: 0.5)  # type: ignore[arg-type]
        for s, c in zip((a, b), clients, strict=True)
    ]
    replicas.loops += loops
    loops[0].start()
    await until("a leads", lambda: loops[0].leading, 5)
    loops[1].start()
    await until("a asks", lambda: clients[0].asked >= 1, 5)
    await asyncio.sleep(2 * TICK)  # b's looks at the lease: it never asks
    assert clients[1].asked == 0 and not loops[1].leading
    assert loops[0].detail().startswith("alertmanager: no trusted answer since")
    assert loops[1].detail() == (
        "alertmanager: reconciled by the replica holding the reconciler's lease"
    )


async def test_a_reload_tells_the_other_replicas_at_once(replicas: Replicas) -> None:
    """A heartbeat a minute apart, and yet the database holds a reload's rules at once."""
    rules = replicas.tmp_path / "rules.yaml"
    rules.write_text("targets:\n  room: {type: console}\nroute:\n  tiers:\n    incident: room\n")
    a = replicas.state("a", rules=(rules,))
    a.runtime = rules_runtime([rules], TargetDeps())
    beat = ReplicaHeartbeat(a, every_s=60)
    replicas.loops.append(beat)
    beat.start()

    def stored() -> str:
        ((found,),) = rows(a.store, "SELECT rules_hash FROM replicas WHERE id = 'a'") or [("",)]
        return str(found)

    await until("the first beat", lambda: stored() == a.runtime.config_hash, 5)
    rules.write_text(rules.read_text() + "  reminders:\n    sev1: {update_every: 30m}\n")
    assert await reload(a) == []
    took = await until("the reload's beat", lambda: stored() == a.runtime.config_hash, 5)
    assert took < 2, took
