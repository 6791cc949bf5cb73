from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from bridge.core.alertmanager import parse_webhook
from bridge.core.policy import BuiltinPolicy
from bridge.store import Store, StoreUnavailable
from bridge.store.ingest import WebhookResult, apply_webhook
from bridge.store.migrations import MIGRATIONS, migrate
from bridge.store.queries import get_incident, incident_counts, integrity_check, list_incidents
from tests.conftest import SECOND, T0, fixture_body, rows

POLICY = BuiltinPolicy()


def next_id(table: str) -> str:
    """The id of a row a test inserts itself, given as the store gives ids (the next past the
    largest): the schema on PostgreSQL has no implicit rowid, and both databases read this."""
    return f"(SELECT coalesce(max(id), 0) + 1 FROM {table})"


NEXT_WEBHOOK = next_id("webhooks")


async def ingest(store: Store, body: dict[str, Any] | bytes, now: int = T0) -> WebhookResult:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    payload = parse_webhook(raw)
    decisions = POLICY.evaluate(payload, now)
    return await store.write(
        lambda conn: apply_webhook(
            conn,
            payload=payload,
            decisions=decisions,
            sha256=hashlib.sha256(raw).hexdigest(),
            body=raw,
            now=now,
        )
    )


def counts(where: Path | Any) -> dict[str, int]:
    """The rows of the main tables: of SQLite's file at a path, or of a store (either backend)
    through a connection of its own."""
    tables = ("incidents", "alerts", "incident_alerts", "timeline", "webhooks")
    if not isinstance(where, Path):
        return {t: int(rows(where, f"SELECT count(*) FROM {t}")[0][0]) for t in tables}
    conn = sqlite3.connect(where)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        conn.close()


def test_migrations_twice_are_a_noop(tmp_path: Path) -> None:
    db = sqlite_utils.Database(sqlite3.connect(tmp_path / "m.db", isolation_level=None))
    assert migrate(db) == [name for name, _ in MIGRATIONS]
    schema = db.conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    assert migrate(db) == []
    assert db.conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema
    assert integrity_check(db.conn) == "ok"


async def test_a_database_from_an_earlier_release_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(sqlite3.connect(path, isolation_level=None))
    assert migrate(db, MIGRATIONS[:2]) == ["0001_initial", "0002_outbox"]
    db.conn.close()
    store = Store(path)
    store.open()
    try:
        await ingest(store, fixture_body("firing-group-bearer.json"))
    finally:
        store.close()
    conn = sqlite3.connect(path)
    try:
        indexes = {
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        assert "idx_webhooks_sha256" not in indexes
        assert "idx_outbox_state_target_next_attempt_at_id" in indexes
        assert counts(path)["incidents"] == 1
    finally:
        conn.close()


def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    db = sqlite_utils.Database(sqlite3.connect(tmp_path / "m.db", isolation_level=None))

    def broken(d: sqlite_utils.Database) -> None:
        d.table("half").create({"id": int}, pk="id")
        raise ValueError("boom")

    with pytest.raises(ValueError):
        migrate(db, [("0001_broken", broken)])
    assert "half" not in db.table_names()
    assert db.conn.execute("SELECT count(*) FROM _migrations").fetchone()[0] == 0


async def test_open_creates_parent_directories_and_wal(tmp_path: Path) -> None:
    s = Store(tmp_path / "a" / "b" / "bridge.db")
    s.open()
    try:
        mode = await s.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
        assert mode == "wal"
    finally:
        s.close()


async def test_fixture_replay_in_order(store: Store) -> None:
    r1 = await ingest(store, fixture_body("firing-group-bearer.json"), T0)
    assert [(t.status, t.created) for t in r1.incidents] == [("triggered", True)]
    r2 = await ingest(store, fixture_body("partially-resolved.json"), T0 + SECOND)
    assert [t.status for t in r2.incidents] == ["triggered"]
    # web-1 is not in the last payload: it must stay resolved, not be forgotten
    r3 = await ingest(store, fixture_body("resolved-last.json"), T0 + 2 * SECOND)
    assert [t.status for t in r3.incidents] == ["mitigated"]
    incident = await store.read(lambda c: get_incident(c, r1.incidents[0].id))
    assert incident is not None
    assert incident["started_at"] == "2026-11-27T04:05:13.998173144Z"
    assert incident["severity"] == "sev1"
    assert incident["title"] == "5xx ratio above 5%"
    assert [a["status"] for a in incident["alerts"]] == ["resolved", "resolved"]
    assert [e["kind"] for e in incident["timeline"]] == [
        "opened",
        "alert_fired",
        "alert_fired",
        "alert_resolved",
        "alert_resolved",
        "status_changed",
    ]
    assert incident["mitigated_at"] is not None

    truncated = await ingest(store, fixture_body("firing-truncated-basic-auth.json"), T0)
    other = await store.read(lambda c: get_incident(c, truncated.incidents[0].id))
    assert other is not None
    assert other["truncated_alerts"] == 1 and other["severity"] == "sev3"
    assert "truncated_alerts" in [e["kind"] for e in other["timeline"]]


async def test_ha_slow_receiver_sequence(store: Store) -> None:
    results = [
        await ingest(store, fixture_body(f"ha-slow-receiver/0{i}.json"), T0 + i * SECOND)
        for i in range(1, 5)
    ]
    assert [r.changed for r in results] == [True, False, False, True]
    assert [r.incidents[0].status for r in results] == [
        "triggered",
        "triggered",
        "triggered",
        "mitigated",
    ]
    c = counts(store)
    assert c["incidents"] == 1 and c["alerts"] == 1 and c["webhooks"] == 4
    assert c["timeline"] == 4  # opened, fired, resolved, mitigated


@pytest.mark.parametrize(
    "variant",
    ["byte-identical", "HA peer with another externalURL", "repeat with other key order"],
)
async def test_duplicates_add_nothing_but_last_seen(store: Store, variant: str) -> None:
    body = fixture_body("firing-group-bearer.json")
    await ingest(store, json.dumps(body).encode(), T0)
    before = counts(store)
    seen_before = await store.read(
        lambda c: c.execute("SELECT max(last_seen) FROM alerts").fetchone()[0]
    )
    if variant == "byte-identical":
        again = json.dumps(body).encode()
    elif variant.startswith("HA"):
        again = json.dumps({**body, "externalURL": "http://other-peer:9093"}).encode()
    else:
        again = json.dumps(dict(reversed(list(body.items())))).encode()
    result = await ingest(store, again, T0 + 30 * SECOND)
    assert not result.changed
    after = counts(store)
    assert after == {**before, "webhooks": before["webhooks"] + 1}
    seen_after = await store.read(
        lambda c: c.execute("SELECT max(last_seen) FROM alerts").fetchone()[0]
    )
    assert seen_after == T0 + 30 * SECOND > seen_before


async def test_reopen_and_new_incident_after_window(store: Store) -> None:
    firing = fixture_body("ha-slow-receiver/01.json")
    resolved = fixture_body("ha-slow-receiver/04.json")
    first = (await ingest(store, firing, T0)).incidents[0]
    assert (await ingest(store, resolved, T0 + 10 * SECOND)).incidents[0].status == "mitigated"
    refire = json.loads(json.dumps(firing))
    refire["alerts"][0]["startsAt"] = "2026-11-27T06:00:00Z"
    again = (await ingest(store, refire, T0 + 60 * SECOND)).incidents[0]
    assert (again.id, again.status) == (first.id, "triggered")
    resolved2 = json.loads(json.dumps(resolved))
    resolved2["alerts"][0]["startsAt"] = "2026-11-27T06:00:00Z"
    await ingest(store, resolved2, T0 + 70 * SECOND)
    refire["alerts"][0]["startsAt"] = "2026-11-27T09:00:00Z"
    later = (await ingest(store, refire, T0 + 2 * 3600 * SECOND)).incidents[0]
    assert later.id != first.id and later.created
    new = await store.read(lambda c: get_incident(c, later.id))
    assert new is not None and new["previous_id"] == first.id
    old = await store.read(lambda c: get_incident(c, first.id))
    assert old is not None
    assert [e["kind"] for e in old["timeline"]].count("reopened") == 1
    listed = await store.read(
        lambda c: list_incidents(c, statuses=[], severities=[], before=None, limit=10)
    )
    assert [i["id"] for i in listed] == [later.id, first.id]


async def test_a_failing_webhook_rolls_back_only_itself(store: Store) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO webhooks (id, received_at, sha256, status) "
            f"VALUES ({NEXT_WEBHOOK}, 1, 'x', 'applied')"
        )
        raise RuntimeError("bug in the middle of a write")

    good = ingest(store, fixture_body("firing-group-bearer.json"))
    results = await asyncio.gather(store.write(broken), good, return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
    assert isinstance(results[1], WebhookResult)
    assert counts(store)["webhooks"] == 1


async def test_concurrent_writes_share_commits_and_all_land(store: Store) -> None:
    bodies = []
    for i in range(200):
        b = fixture_body("ha-pair-single-delivery.json")
        b["groupKey"] = f'{{}}:{{alertname="N{i}"}}'
        b["alerts"][0]["labels"]["alertname"] = f"N{i}"
        b["alerts"][0]["fingerprint"] = f"{i:016x}"
        bodies.append(b)
    results = await asyncio.gather(*(ingest(store, b) for b in bodies))
    assert len({r.incidents[0].id for r in results}) == 200
    assert counts(store)["incidents"] == 200


async def test_read_only_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    s = Store(path)
    s.open()
    s.close()
    path.chmod(0o444)
    s2 = Store(path)
    try:
        s2.open()
    except sqlite3.OperationalError:
        pytest.skip("cannot even open read-only here")
    try:
        import os

        if os.geteuid() == 0:
            # root ignores file modes; make the writer fail another way
            await s2.write(lambda c: c.execute("PRAGMA query_only = ON"))
        with pytest.raises(StoreUnavailable):
            await ingest(s2, fixture_body("firing-group-bearer.json"))
    finally:
        s2.close()
        path.chmod(0o644)


async def test_same_group_many_times_in_one_batch_is_one_incident(store: Store) -> None:
    """HA peers and retries arriving together land in one writer batch."""
    firing = fixture_body("ha-slow-receiver/01.json")
    peer = {**firing, "externalURL": "http://peer-2:9093"}
    results = await asyncio.gather(*(ingest(store, firing if i % 2 else peer) for i in range(20)))
    assert len({r.incidents[0].id for r in results}) == 1
    assert sum(r.changed for r in results) == 1
    c = counts(store)
    assert (c["incidents"], c["timeline"], c["webhooks"]) == (1, 2, 20)


async def test_fire_and_resolve_in_one_batch(store: Store) -> None:
    results = await asyncio.gather(
        ingest(store, fixture_body("ha-slow-receiver/01.json"), T0),
        ingest(store, fixture_body("ha-slow-receiver/04.json"), T0),
        ingest(store, fixture_body("ha-slow-receiver/02.json"), T0),  # late HA copy of the firing
    )
    assert [r.incidents[0].status for r in results] == ["triggered", "mitigated", "mitigated"]
    assert [r.changed for r in results] == [True, True, False]


async def test_a_failing_batched_write_is_retried_alone(store: Store) -> None:
    from bridge.store import Batched

    def many(conn: sqlite3.Connection, items: list[int]) -> list[int]:
        for item in items:
            conn.execute(
                "INSERT INTO webhooks (id, received_at, sha256, status) "
                f"VALUES ({NEXT_WEBHOOK}, ?, 'x', 'applied')",
                (item,),
            )
            if item == 13:
                raise RuntimeError("unlucky")
        return [i * 2 for i in items]

    results = await asyncio.gather(
        *(store.write(Batched(many, i)) for i in range(10, 17)), return_exceptions=True
    )
    assert [r if not isinstance(r, Exception) else "err" for r in results] == [
        20,
        22,
        24,
        "err",
        28,
        30,
        32,
    ]
    stored = await store.read(
        lambda c: [r[0] for r in c.execute("SELECT received_at FROM webhooks ORDER BY id")]
    )
    assert stored == [10, 11, 12, 14, 15, 16]


async def test_raw_bodies_are_pruned_after_retention(store: Store) -> None:
    from bridge.store.queries import prune_webhook_bodies

    await ingest(store, fixture_body("ha-slow-receiver/01.json"), T0)
    await ingest(store, fixture_body("ha-slow-receiver/04.json"), T0 + 3600 * SECOND)
    pruned = await store.write(lambda c: prune_webhook_bodies(c, older_than=T0 + SECOND))
    assert pruned == 1
    kept = await store.read(
        lambda c: c.execute(
            "SELECT received_at, body IS NOT NULL, sha256 FROM webhooks ORDER BY id"
        ).fetchall()
    )
    assert [(r[0], r[1]) for r in kept] == [(T0, 0), (T0 + 3600 * SECOND, 1)]
    assert all(len(r[2]) == 64 for r in kept)  # the journal entry itself stays


async def test_incident_counts_read_only_the_incidents_being_worked(tmp_path: Path) -> None:
    """/metrics counts triggered and acknowledged incidents through the (status, severity)
    index: the history (resolved, closed, mitigated) is never read. SQLite's query plan."""
    store = Store(tmp_path / "bridge.db")
    store.open()
    try:
        await _counted_through_the_index(store)
    finally:
        store.close()


async def _counted_through_the_index(store: Store) -> None:
    await ingest(store, fixture_body("firing-group-bearer.json"))

    def check(conn: sqlite3.Connection) -> tuple[dict[tuple[str, str], int], list[Any]]:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT severity, status, count(*) FROM incidents "
            "WHERE status IN ('triggered', 'acknowledged') GROUP BY severity, status"
        ).fetchall()
        return incident_counts(conn), plan

    counts, plan = await store.read(check)
    assert counts == {("sev1", "triggered"): 1}
    assert any("USING COVERING INDEX" in str(row[-1]) for row in plan), plan


async def test_alert_counts_follow_every_link_change(store: Store) -> None:
    for name in ("firing-group-bearer.json", "partially-resolved.json", "resolved-last.json"):
        await ingest(store, fixture_body(name))

    def both(conn: sqlite3.Connection) -> tuple[set[Any], set[Any]]:
        full = set(
            conn.execute(
                "SELECT incident_id, status, count(*) FROM incident_alerts "
                "GROUP BY incident_id, status"
            )
        )
        kept = set(
            conn.execute("SELECT incident_id, status, n FROM incident_alert_counts WHERE n > 0")
        )
        return full, kept

    full, kept = await store.read(both)
    assert full == kept and full
