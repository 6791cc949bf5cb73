"""``incident-bridge db copy|backup|check`` with PostgreSQL (``bridge/store/postgres/copy.py``,
``bridge/store/postgres/backup.py``, ``bridge/cli/db.py``).

A SQLite store with every kind of row is built through the store's own writes (webhooks with
every notification tier, people's actions with Idempotency-Keys, reminders, follow-ups and their
items, postmortem versions and publications, deliveries, sessions, the search indexer and "seen
this before"), copied once into PostgreSQL, and both are asked the same questions through the
store's interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from bridge.cli import main
from bridge.core.actions import (
    AddEntry,
    AssignRole,
    ChangeSeverity,
    Dismiss,
    PostUpdate,
    Transition,
)
from bridge.core.alertmanager import parse_webhook
from bridge.core.declare import Declaration, builtin_decision
from bridge.core.followup import DEFAULT_POLICY, AddItem, SetItem
from bridge.core.policy import BuiltinPolicy, Tiers
from bridge.core.reminders import ReminderPolicy
from bridge.metrics import IncidentMetrics
from bridge.store import Store
from bridge.store.actions import ActionRequest, Idempotency
from bridge.store.followup import OpenRequest
from bridge.store.ingest import apply_webhook
from bridge.store.interface import DeclareRequest, LinkRequest, MergeRequest
from bridge.store.migrations import MIGRATIONS
from bridge.store.oncall import NewOverride
from bridge.store.outbox import Attempt, Pace
from bridge.store.postgres import PgStore
from bridge.store.postgres.backup import find_tool
from bridge.store.postmortem import PublishRecord, SaveRequest
from bridge.store.sessions import NewSession
from tests.cli.conftest import run
from tests.conftest import SECOND, T0, fixture_body
from tests.pgcluster import Cluster

pytestmark = pytest.mark.usefixtures("no_developer_settings")
MIN = 60 * SECOND
POLICY = BuiltinPolicy()
TIERS = Tiers(
    general=("chat",),
    incident="room",
    stakeholders=("pager",),
    stakeholder_min_severity="sev2",
)
SERVICES = ("checkout", "payments", "search")
ALERTS = ("HighErrorRate", "LatencyHigh", "DiskFull", "PodCrashLooping")
SEVERITIES = ("critical", "warning", "info")
INCIDENTS = 16
WORDS = (
    "checkout",
    "rolled back",
    "LatencyHigh",
    "diskfull",
    "podcrash*",
    "postmortem",
    "canary",
    "soon",
    "payments -search",
)


def webhook(i: int, status: str = "firing", alerts: int = 2) -> dict[str, Any]:
    """The bearer fixture's webhook as group ``i``: its own alert name, service, severity and
    fingerprints; ``status`` for all its alerts."""
    body = fixture_body("firing-group-bearer.json")
    name, service = ALERTS[i % len(ALERTS)], SERVICES[i % len(SERVICES)]
    body["status"] = status
    body["groupKey"] = f'{{}}:{{alertname="{name}", service="{service}", n="{i}"}}'
    body["groupLabels"] = {"alertname": name, "service": service}
    body["commonLabels"] = {"alertname": name, "service": service}
    template = body["alerts"][0]
    body["alerts"] = []
    for k in range(alerts):
        alert = json.loads(json.dumps(template))
        alert["status"] = status
        alert["labels"] = {
            "alertname": name,
            "service": service,
            "severity": SEVERITIES[i % len(SEVERITIES)],
            "instance": f"{service}-{k}",
            "cluster": "eu-1",
        }
        alert["annotations"] = {"summary": f"{name} on {service} café naïve «{i}»"}
        alert["fingerprint"] = hashlib.sha256(f"{i}/{k}".encode()).hexdigest()[:16]
        if status == "resolved":
            alert["endsAt"] = "2026-11-27T05:00:00Z"
        body["alerts"].append(alert)
    return body


async def ingest(store: Any, body: dict[str, Any], now: int) -> list[int]:
    raw = json.dumps(body).encode()
    payload = parse_webhook(raw)
    decisions = [
        dataclasses.replace(d, tiers=TIERS, team="payments" if "pay" in d.key else "web")
        for d in POLICY.evaluate(payload, now)
    ]
    sha = hashlib.sha256(raw).hexdigest()
    result = await store.write(
        lambda conn: apply_webhook(
            conn, payload=payload, decisions=decisions, sha256=sha, body=raw, now=now
        )
    )
    return [t.id for t in result.incidents]


async def act(store: Any, incident: int, command: Any, at: int, key: str | None = None) -> None:
    idem = Idempotency(command.actor, key, f"digest-{key}") if key else None
    answer = await store.actions.apply_action(ActionRequest(incident, command, at, idem))
    assert answer.status == 200, answer.body


async def index(store: Any, now: int) -> None:
    """The indexer's work until nothing is left: documents, then "seen this before"."""
    while (await store.search.index_pending()).more:
        pass
    ids, upto = await store.search.pending_similar(100)
    found = await store.search.look_up_similar(ids)
    await store.search.record_similar(found, upto=upto, now=now)


async def build_history(store: Store) -> None:
    """Every kind of row the service writes, through the store's own writes."""
    ids = []
    for i in range(INCIDENTS):
        ids += await ingest(store, webhook(i, alerts=1 + i % 3), T0 + i * MIN)
    # a webhook resolving group 1, and one that fires group 3 again after its mitigation
    await ingest(store, webhook(1, "resolved"), T0 + 30 * MIN)
    sev1 = ReminderPolicy(update_every_s=600.0, acknowledge_within_s=120.0)
    await store.reminders.fire_due(T0 + 40 * MIN, policy=lambda route, severity: sev1)
    for n, incident in enumerate(ids):
        at = T0 + (50 + n) * MIN
        if n % 4 == 0:
            await act(store, incident, Transition("carol", "acknowledge"), at, f"ack-{n}")
            await act(store, incident, AssignRole("carol", "commander", "dave"), at + SECOND)
            await act(
                store, incident, AddEntry("dave", "note", f"rolled back {n}"), at + 2 * SECOND
            )
            await act(store, incident, AddEntry("dave", "action", "add a canary", "sam"), at + 3)
            await act(store, incident, PostUpdate("dave", "fixed soon", None, 900), at + 4)
            await act(store, incident, Transition("dave", "mitigate"), at + 5 * SECOND)
        elif n % 4 == 2:
            await act(store, incident, Dismiss("erin", "a test"), at, f"dismiss-{n}")
        elif n % 4 == 3:
            await act(store, incident, ChangeSeverity("erin", "sev1", "customers see it"), at)
    opening = OpenRequest(
        now=T0 + 80 * MIN,
        policy=lambda route: DEFAULT_POLICY,
        acknowledge_within=lambda route, severity: 300.0,
    )
    opened = await store.followups.open_due(opening)
    assert opened
    at = T0 + 90 * MIN
    await act(store, opened[0], AddItem("dave", "alert on saturation", "action", "sam"), at)
    _, view = await store.followups.incident_followup(opened[0])
    assert view is not None
    item = view["items"][0]["id"]
    await act(store, opened[0], SetItem("dave", item, "waived", "not needed"), at + SECOND)
    await ingest(store, webhook(0), T0 + 95 * MIN)  # group 0 fires again: reopened
    for n, incident in enumerate(opened[1:3]):
        at = T0 + (100 + n) * MIN
        await act(store, incident, Transition("dave", "resolve", "rolled back"), at)
        for version, text in enumerate(("a bad deploy", "a bad deploy, rolled back")):
            request = SaveRequest(incident, {"summary": text}, "dave", at + version + 1)
            assert (await store.postmortems.save_version(request)).status == 200
        record = PublishRecord(
            incident, 2, f"postmortems/{incident}.md", "abc123", "dave", at + 10,
            f"# Postmortem {incident}\n\nrolled back\n", "postmortem rolled back a bad deploy",
            "@knowledge-base",
        )  # fmt: skip
        assert await store.postmortems.record_publication(record) is not None
        await act(store, incident, Transition("dave", "close"), at + 20)
    # deliveries as the worker makes them: due rows claimed in groups, then their outcomes
    # (under a replica's claim, one channel paced, one target asking to wait: every table of
    # the outbox's has rows)
    due = await store.outbox.due(now=T0 + 120 * MIN, limit=12, per_target=4)
    paced = Pace(due[0].target, "#incidents", MIN, (due[0].id,))
    groups = await store.outbox.claim_groups(
        [row.id for row in due], 3, replica="replica-a", now=T0 + 120 * MIN, paces=[paced],
        pace_now=T0 + 120 * MIN,
    )  # fmt: skip
    for n, (leader, group) in enumerate(groups.items()):
        now = T0 + 120 * MIN + n
        if n % 3 == 0:
            state = {"channel": f"C{group[0].incident_id}", "thread": "1.2"}
            attempt = Attempt(leader, now, state=state, provider_ids={"ts": f"{n}.1"})
        elif n % 3 == 1:
            attempt = Attempt(
                leader, now, error="429 from the API", retry_at=now + MIN, counts=False,
                pause_until=now + MIN, pause_reason="Retry-After: 60",
            )  # fmt: skip
        else:
            attempt = Attempt(leader, now, error="404: channel_not_found")
        await store.outbox.record(attempt)
    # what replicas coordinate through: a loop's lease, a replica's heartbeat, the shared key
    coordination = store.coordination
    await coordination.take_lease(
        name="scheduler", holder="replica-a", now=T0 + 125 * MIN, until=T0 + 126 * MIN
    )
    await coordination.heartbeat(
        replica="replica-a", rules_hash="abc", started_at=T0, now=T0 + 125 * MIN,
        live_after=T0, prune_before=T0,
    )  # fmt: skip
    await coordination.shared_secret(name="session-key", candidate="k" * 43, now=T0)
    for n in range(3):
        session = NewSession(
            f"hash-{n}", f"person-{n}", "write", f"fp-{n}", T0 + n, T0 + 1000 * MIN
        )
        await store.sessions.start(session)
    await store.sessions.end(id_hash="hash-0", now=T0 + 130 * MIN, why="signed out")
    # on-call overrides made at run time: one holding, one ended early (its identity goes on)
    for n in range(2):
        made, _ = await store.oncall.add_override(
            NewOverride(
                rotation="ops", person=f"person-{n}", start_at=T0 + n * MIN,
                end_at=T0 + 600 * MIN, reason="cover", created_by="lead", now=T0,
            )
        )  # fmt: skip
    await store.oncall.end_override(override_id=made.id, now=T0 + 131 * MIN, by="lead")
    await store.oncall.record_handoff(
        rotation="ops", at=T0 + 132 * MIN, giver="person-0", taker="person-1", routes=[],
        now=T0 + 132 * MIN,
    )  # fmt: skip
    # incidents people start: one declared, a group linked into it, another merged into it
    decision = builtin_decision(
        key="declared:copy", title="Checkout is slow", severity="sev2",
        labels={"service": "checkout"}, route=None, team="payments", general=("console",),
        reopen_window_s=3600.0,
    )  # fmt: skip
    declaration = Declaration(
        actor="alice", title="Checkout is slow", severity="sev2", description="p99 4 s",
        commander=None, labels={"service": "checkout"},
    )  # fmt: skip
    declared = await store.declared.declare(
        DeclareRequest(decision=decision, declaration=declaration, now=T0 + 131 * MIN)
    )
    survivor = declared.body["incident"]["id"]
    linked = LinkRequest(survivor, '{}:{alertname="Later"}', "alice", T0 + 131 * MIN + 1)
    assert (await store.declared.link(linked)).status == 200
    merged = MergeRequest(ids[5], survivor, "alice", T0 + 131 * MIN + 2, "the same outage")
    assert (await store.declared.merge(merged)).status == 200
    # the dead man's switch: one heartbeat beaten, another late with its episode raised
    await store.heartbeats.register(names=["watchdog", "nightly"], now=T0)
    await store.heartbeats.beat(names=["watchdog"], at=T0 + 132 * MIN)
    await store.heartbeats.mark(name="nightly", late_since=T0 + 133 * MIN)
    # a scheduled drill announced and fired
    # its announcement's channel message with it, so that channel_messages is copied too
    announced = {"route": "default", "severity": "sev2", "at": "x", "stakeholders": False}
    slot, at = T0 + 200 * MIN, T0 + 140 * MIN
    assert await store.drills.announce("default", slot, at, announced, ["ops"])
    await store.drills.claim_run("default", T0 + 200 * MIN, "fire", T0 + 200 * MIN)
    await index(store, T0 + 140 * MIN)
    # a mitigated incident resolved, its postmortem not published yet: one the insights'
    # follow-up health may find overdue (insight_pending)
    mitigated = [
        i
        for (i,) in await store.read(
            lambda conn: conn.execute(
                "SELECT id FROM incidents WHERE status = 'mitigated' ORDER BY id"
            ).fetchall()
        )
    ]
    await act(
        store,
        mitigated[0],
        Transition("dave", "resolve", "rolled back, checked by hand"),
        T0 + 141 * MIN,
        "resolve-1",
    )
    # the insights' aggregates summed (the scheduler's step), so that their tables are copied;
    # the newer incident below stays marked for the next refresh, so that insight_dirty is too
    await store.insights.refresh()
    # A newer incident after the indexer's pass, and a webhook body pruned: both as they come.
    await ingest(store, webhook(INCIDENTS + 1), T0 + 150 * MIN)


# --- the copy, made once for the module --------------------------------------------------------


@dataclasses.dataclass
class Copied:
    source: Path
    url: str
    out: str
    cluster: Cluster


@pytest.fixture(scope="module")
def copied(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Copied:
    source = tmp_path_factory.mktemp("copy") / "incident-bridge.db"

    async def build() -> None:
        store = Store(source)
        store.open()
        try:
            await build_history(store)
        finally:
            store.close()

    asyncio.run(build())
    url = pg_cluster.new_database()  # empty: the copy makes the schema
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["db", "copy", str(source), url]) == 0
    return Copied(source, url, out.getvalue(), pg_cluster)


@pytest.fixture
def both(copied: Copied) -> Iterator[tuple[Store, PgStore]]:
    sqlite_store = Store(copied.source)
    sqlite_store.open()
    pg = PgStore(copied.url)
    pg.open()
    try:
        yield sqlite_store, pg
    finally:
        pg.close()
        sqlite_store.close()


def exposition(agg: Any, teams: set[str]) -> bytes:
    """The MTTx families of ``/metrics`` from one scrape's aggregates."""
    registry = CollectorRegistry()
    incidents = IncidentMetrics()
    registry.register(incidents)
    incidents.update(
        agg.histograms,
        agg.counters,
        agg.postmortems,
        agg.followup_items_open,
        lambda route, severity: severity in ("sev1", "sev2"),
        teams,
    )
    return bytes(generate_latest(registry))


def sqlite_counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%'"
            )
            if not r[0].startswith(("search_", "similar_terms_")) or r[0] in SIDE_TABLES
        ]
        return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
    finally:
        conn.close()


SIDE_TABLES = ("search_docs", "search_marks")


def pg_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as raw:
        names = [
            r[0]
            for r in raw.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        ]
        return {n: raw.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}  # type: ignore[index]


def test_every_table_is_copied_with_its_counts(copied: Copied) -> None:
    source = sqlite_counts(copied.source)
    # every kind of row: no table of the source is empty
    assert [t for t, n in source.items() if n == 0] == []
    target = pg_counts(copied.url)
    conn = sqlite3.connect(copied.source)
    try:
        for fts in ("search", "similar_terms"):  # FTS5's tables: documents and derived terms
            source[fts] = conn.execute(f"SELECT count(*) FROM {fts}").fetchone()[0]
    finally:
        conn.close()
    assert target == source
    # the summary names every table with its count, and says how it was checked
    assert "counts equal on both sides" in copied.out
    printed = {
        line.split()[0]: int(line.split()[1])
        for line in copied.out.splitlines()
        if line.startswith("  ")
    }
    assert printed == {t: n for t, n in source.items() if t != "_migrations"}


async def answers(store: Any, i: int) -> list[Any]:
    """What the API, the pages and the postmortem read of incident ``i``."""
    return [
        await store.queries.get_incident(i),
        await store.queries.incident_page(i),
        await store.queries.incident_summary(i),
        await store.queries.timeline_since(i, 0),
        await store.followups.incident_followup(i),
        await store.postmortems.history(i),
        await store.postmortems.published_markdown(i),
        await store.postmortems.read(i),
    ]


async def test_the_api_answers_the_same_for_every_incident(
    both: tuple[Store, PgStore],
) -> None:
    sqlite_store, pg = both
    listed = await sqlite_store.queries.list_incidents(limit=500)
    assert len(listed) == INCIDENTS + 2  # and the declared one
    assert await pg.queries.list_incidents(limit=500) == listed
    for incident in listed:
        i = incident["id"]
        assert await answers(pg, i) == await answers(sqlite_store, i), i
    assert (
        await pg.postmortems.published_index() == await sqlite_store.postmortems.published_index()
    )
    rows = await sqlite_store.outbox.list_rows(state=None, before=None, limit=1000)
    assert {r.state for r in rows} == {"pending", "delivered", "dead"}
    assert await pg.outbox.list_rows(state=None, before=None, limit=1000) == rows
    teams = {"payments", "web"}
    (open_pg, stats_pg, agg_pg), (open_sq, stats_sq, agg_sq) = [
        await s.metrics.scrape(teams) for s in (pg, sqlite_store)
    ]
    assert (open_pg, stats_pg) == (open_sq, stats_sq)
    # the aggregates as sets (PostgreSQL groups in an order of its own), and what /metrics shows
    for field in ("histograms", "counters", "postmortems"):
        assert sorted(getattr(agg_pg, field)) == sorted(getattr(agg_sq, field)), field
    assert agg_pg.followup_items_open == agg_sq.followup_items_open
    assert exposition(agg_pg, teams) == exposition(agg_sq, teams)
    for n in range(3):
        live = await sqlite_store.sessions.is_live(id_hash=f"hash-{n}", now=T0 + 200 * MIN)
        assert await pg.sessions.is_live(id_hash=f"hash-{n}", now=T0 + 200 * MIN) == live
    assert await pg.search.backlog() == await sqlite_store.search.backlog()


async def test_search_finds_the_same_and_the_indexer_carries_on(
    both: tuple[Store, PgStore],
) -> None:
    sqlite_store, pg = both
    for word in WORDS:
        found = {h["incident_id"] for h in await sqlite_store.search.search(word, limit=50)}
        assert found, word
        assert {h["incident_id"] for h in await pg.search.search(word, limit=50)} == found, word
    # The incident written after the indexer's last pass, and one more written now on each
    # side, are indexed and compared with the copied history alike.
    for store in (sqlite_store, pg):
        assert (await store.search.backlog()).to_index
        await ingest(store, webhook(INCIDENTS + 2), T0 + 300 * MIN)
        await index(store, T0 + 310 * MIN)
    newest = (await sqlite_store.queries.list_incidents(limit=1))[0]["id"]
    assert (await pg.queries.list_incidents(limit=1))[0]["id"] == newest
    similar = [
        e["data"] for e in await sqlite_store.queries.timeline_since(newest, 0)
        if e["kind"] == "similar_incidents"
    ]  # fmt: skip
    assert similar, "the new incident is like a copied one"
    pg_similar = [
        e["data"] for e in await pg.queries.timeline_since(newest, 0)
        if e["kind"] == "similar_incidents"
    ]  # fmt: skip
    assert len(similar) == len(pg_similar) == 1

    # The same alert and service: the copied similar_keys, in the same order. By text: the
    # similar_terms derived again find past incidents too (ranked by PostgreSQL's own measure,
    # docs/search.md, so the cut at five may keep others).
    def by(reason: str, data: dict[str, Any]) -> list[int]:
        return [s["id"] for s in data["similar"] if s["reason"] == reason]

    assert by("same_alert_and_service", similar[0])
    assert by("same_alert_and_service", pg_similar[0]) == by("same_alert_and_service", similar[0])
    assert by("similar_text", pg_similar[0])
    assert len(pg_similar[0]["similar"]) == len(similar[0]["similar"])
    for word in ("checkout", "eu-1"):
        found = {h["incident_id"] for h in await sqlite_store.search.search(word, limit=50)}
        assert newest in found
        assert {h["incident_id"] for h in await pg.search.search(word, limit=50)} == found


async def test_new_rows_take_ids_past_the_copied_ones(copied: Copied) -> None:
    pg = PgStore(copied.url)
    pg.open()
    try:
        before = await pg.outbox.list_rows(state=None, before=None, limit=1000)
        i = (await ingest(pg, webhook(40), T0 + 400 * MIN))[0]
        after = await pg.outbox.list_rows(state=None, before=None, limit=1000)
        new = [r for r in after if r.incident_id == i]
        assert new and min(r.id for r in new) > max(r.id for r in before)
        await act(pg, i, Transition("dave", "resolve"), T0 + 401 * MIN)
        request = SaveRequest(i, {"summary": "new"}, "dave", T0 + 402 * MIN)
        assert (await pg.postmortems.save_version(request)).status == 200
        record = PublishRecord(i, 1, "", None, "dave", T0 + 403 * MIN, "# new\n", "brandnew")
        assert await pg.postmortems.record_publication(record) is not None
        assert [h["incident_id"] for h in await pg.search.search("brandnew")] == [i]
    finally:
        pg.close()


def test_check_after_the_copy_passes(copied: Copied, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "db", "check", "--db", copied.url, "-o", "json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["ok"] and answer["problems"] == [] and answer["pending"] == []
    assert answer["applied"] == [name for name, _ in MIGRATIONS]
    assert answer["rows"]["incidents"] >= INCIDENTS


# --- refusals: nothing written -----------------------------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A small SQLite store (one incident), closed."""
    path = tmp_path / "small" / "incident-bridge.db"

    async def build() -> None:
        store = Store(path)
        store.open()
        try:
            await ingest(store, webhook(0), T0)
        finally:
            store.close()

    asyncio.run(build())
    return path


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_target_with_rows_is_refused_untouched(
    small: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pg = PgStore(pg_url)
    pg.open()
    try:
        asyncio.run(_one_incident(pg))
    finally:
        pg.close()
    before = pg_counts(pg_url)
    code, out, err = run(capsys, "db", "copy", str(small), pg_url)
    assert code == 2 and out == ""
    assert "is not empty: incidents" in one_line(err) and "nothing was changed" in err
    assert pg_counts(pg_url) == before


async def _one_incident(store: Any) -> None:
    await ingest(store, webhook(7), T0)


def test_a_target_with_other_tables_is_refused_untouched(
    small: Path, pg_cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    url = pg_cluster.new_database()
    with psycopg.connect(url, autocommit=True) as raw:
        raw.execute("CREATE TABLE invoices (id bigint)")
    code, _, err = run(capsys, "db", "copy", str(small), url)
    assert code == 2
    assert "not incident-bridge's (invoices)" in one_line(err)
    assert pg_counts(url) == {"invoices": 0}


def test_an_empty_schema_from_a_service_start_is_taken(
    small: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "db", "copy", str(small), pg_url)
    assert code == 0, err
    assert "  incidents " in out
    assert pg_counts(pg_url)["incidents"] == 1


def test_a_source_with_a_missing_migration_is_refused(
    small: Path, pg_cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = sqlite3.connect(small)
    conn.execute("DELETE FROM _migrations WHERE name = ?", (MIGRATIONS[-1][0],))
    conn.commit()
    conn.close()
    url = pg_cluster.new_database()
    code, _, err = run(capsys, "db", "copy", str(small), url)
    assert code == 2
    assert f"lacks migrations ({MIGRATIONS[-1][0]})" in one_line(err)
    assert pg_counts(url) == {}  # not even the schema


def test_a_file_that_is_not_incident_bridges_is_refused(
    tmp_path: Path, pg_cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    url = pg_cluster.new_database()
    code, _, err = run(capsys, "db", "copy", str(other), url)
    assert code == 2 and "is not an incident-bridge database" in one_line(err)
    code, _, err = run(capsys, "db", "copy", str(tmp_path / "missing.db"), url)
    assert code == 2 and "no database at" in one_line(err)
    assert pg_counts(url) == {}


def test_a_file_a_service_holds_is_refused(
    small: Path, pg_cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(small)
    store.open()
    try:
        url = pg_cluster.new_database()
        code, _, err = run(capsys, "db", "copy", str(small), url)
        assert code == 2 and "in use by a running service" in one_line(err)
        assert pg_counts(url) == {}
    finally:
        store.close()


def test_an_unreachable_server_and_a_password_on_the_command_line(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.pgcluster import free_port

    url = f"postgresql://bridge@127.0.0.1:{free_port()}/nothing"
    code, _, err = run(capsys, "db", "copy", str(small), url)
    assert code == 2 and "cannot connect to PostgreSQL at" in one_line(err)
    secret = "hunter2-secret"
    code, _, err = run(capsys, "db", "copy", str(small), f"postgresql://u:{secret}@h:5/db")
    assert code == 2 and "shows in `ps`" in one_line(err) and secret not in err
    code, _, err = run(capsys, "db", "copy", url, str(small))
    assert code == 2 and "FROM is SQLite's file" in one_line(err)
    for command in ("check", "backup"):
        argv = ["db", command, "--db", f"postgresql://u:{secret}@h:5/db"]
        code, out, err = run(capsys, *argv, *(["x.dump"] if command == "backup" else []))
        assert code == 2 and "shows in `ps`" in one_line(err) and secret not in out + err


def test_a_value_postgresql_cannot_hold_rolls_everything_back(
    small: Path, pg_cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = sqlite3.connect(small)
    conn.execute("UPDATE timeline SET text = 'a' || char(0) || 'b' WHERE id = 2")
    conn.commit()
    conn.close()
    url = pg_cluster.new_database()
    code, _, err = run(capsys, "db", "copy", str(small), url)
    assert code == 2
    assert "cannot copy timeline.text, row 2: a NUL character" in one_line(err)
    counts = pg_counts(url)
    assert counts["incidents"] == 0 and sum(counts.values()) == counts["_migrations"] + 4
    # the triggers the copy disabled are enabled again: the schema is as a service makes it
    with psycopg.connect(url, autocommit=True) as raw:
        disabled = raw.execute("SELECT count(*) FROM pg_trigger WHERE tgenabled = 'D'").fetchone()
    assert disabled == (0,)
    # and the empty schema left behind is taken by the next copy
    conn = sqlite3.connect(small)
    conn.execute("UPDATE timeline SET text = 'ab' WHERE id = 2")
    conn.commit()
    conn.close()
    assert run(capsys, "db", "copy", str(small), url)[0] == 0


# --- db backup and db check on PostgreSQL ------------------------------------------------------


def test_backup_and_restore_into_a_new_database(
    copied: Copied, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    restore = find_tool("pg_restore")
    assert restore is not None
    dump = tmp_path / "bridge.dump"
    code, out, err = run(capsys, "db", "backup", "--db", copied.url, str(dump))
    assert code == 0, err
    assert f"to {dump}" in out and "pg_dump custom format" in out
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bridge.dump"]
    assert run(capsys, "db", "backup", "--db", copied.url, str(dump))[0] == 2  # exists
    target = copied.cluster.new_database()
    subprocess.run(
        [str(restore), "--no-owner", f"--dbname={target}", str(dump)], check=True, timeout=120
    )
    code, out, err = run(capsys, "db", "check", "--db", target, "-o", "json")
    assert code == 0, err
    assert json.loads(out)["rows"] == pg_counts(copied.url)


def test_backup_gives_the_password_to_pg_dump_in_its_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copied: Copied,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A pg_dump of the test's own on the PATH writes down its arguments and PGPASSWORD."""
    tools = tmp_path / "bin"
    tools.mkdir()
    seen = tmp_path / "seen.json"
    for name in ("pg_dump", "pg_restore"):
        script = tools / name
        script.write_text(
            "#!/usr/bin/env python3\nimport json, os, sys\n"
            f"open({str(seen)!r}, 'a').write(json.dumps([sys.argv, "
            "os.environ.get('PGPASSWORD')]) + '\\n')\n"
            "out = [a.split('=', 1)[1] for a in sys.argv if a.startswith('--file=')]\n"
            "if out: open(out[0], 'w').write('dump')\n"
            "print('; Selected TOC Entries:\\n1; 0 0 TABLE DATA public incidents bridge')\n"
        )
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    secret = "s3cret-pass"
    password_file = tmp_path / "password"
    password_file.write_text(secret + "\n")
    dump = tmp_path / "out.dump"
    code, out, err = run(
        capsys, "db", "backup", "--db", copied.url, "--db-password-file", str(password_file),
        str(dump),
    )  # fmt: skip
    assert code == 0, err
    calls = [json.loads(line) for line in seen.read_text().splitlines()]
    assert calls[0][0][0].endswith("pg_dump") and calls[0][1] == secret
    assert all(secret not in arg for argv, _ in calls for arg in argv)
    assert secret not in out + err
    # a password in the URL of the variable (allowed there) leaves the URL too
    monkeypatch.setenv("INCIDENT_BRIDGE_DB", copied.url.replace("bridge@", f"bridge:{secret}@"))
    seen.unlink()
    code, out, err = run(capsys, "db", "backup", str(dump), "--force")
    assert code == 0, err
    argv, given = json.loads(seen.read_text().splitlines()[0])
    assert given == secret and all(secret not in arg for arg in argv)
    assert secret not in out + err


def test_backup_without_pg_dump_says_so(
    copied: Copied, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("bridge.store.postgres.backup.DEBIAN_BINARIES", tmp_path / "none")
    code, _, err = run(capsys, "db", "backup", "--db", copied.url, str(tmp_path / "x.dump"))
    assert code == 1 and "pg_dump and pg_restore are needed" in one_line(err)
    assert not (tmp_path / "x.dump").exists()


def test_check_finds_disabled_triggers_and_newer_migrations(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "db", "check", "--db", pg_url)
    applied = f"migrations applied: {len(MIGRATIONS)}"
    assert code == 0 and applied in out and "rows: " in out
    with psycopg.connect(pg_url, autocommit=True) as raw:
        raw.execute("ALTER TABLE incidents DISABLE TRIGGER USER")
        raw.execute("INSERT INTO _migrations VALUES ('9999_future', 1)")
    code, out, _ = run(capsys, "db", "check", "--db", pg_url)
    assert code == 1
    assert "trigger metric_incident_insert on incidents is disabled" in out
    assert "written by a newer incident-bridge): 9999_future" in out


def test_check_of_a_database_that_is_not_incident_bridges(
    pg_cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    url = pg_cluster.new_database()
    with psycopg.connect(url, autocommit=True) as raw:
        raw.execute("CREATE TABLE invoices (id bigint)")
    code, _, err = run(capsys, "db", "check", "--db", url)
    assert code == 1 and "is not an incident-bridge database" in one_line(err)
