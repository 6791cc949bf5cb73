"""What only the PostgreSQL store has to prove: writers of two processes on one database,
migrations raced by two starts, a foreign database refused untouched, the dialect's translation,
a schema with SQLite's tables and columns, and the MTTx aggregates equal to SQLite's after the
same story."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import sqlite3
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bridge.core.actions import AddEntry, AssignRole, Dismiss, Transition
from bridge.core.alertmanager import parse_webhook
from bridge.core.followup import DEFAULT_POLICY
from bridge.core.policy import BuiltinPolicy
from bridge.store import Store, StoreError
from bridge.store.actions import ActionRequest, Idempotency
from bridge.store.followup import OpenRequest
from bridge.store.ingest import IngestItem, WebhookResult
from bridge.store.outbox import Attempt
from bridge.store.postgres import PgStore, schema
from bridge.store.postgres.connection import PgConnection
from bridge.store.postgres.dialect import translate
from bridge.store.postmortem import PublishRecord, record_publication
from tests.conftest import SECOND, T0, fixture_body, rows
from tests.pgcluster import Cluster
from tests.store.test_reminders import MIN, open_incident, sent, sev1

POLICY = BuiltinPolicy()


def item(body: dict[str, Any], now: int, **changes: Any) -> IngestItem:
    raw = json.dumps({**body, **changes}).encode()
    payload = parse_webhook(raw)
    return IngestItem(
        payload, POLICY.evaluate(payload, now), hashlib.sha256(raw).hexdigest(), raw, now
    )


def opened(url: str) -> PgStore:
    store = PgStore(url)
    store.open()
    return store


# (a) Two processes' writers on one database -----------------------------------------------

PEOPLE = ("ann", "bob", "cyd", "dee", "eve")


def arrivals(peer: str) -> list[IngestItem]:
    """The group's firing webhook as one HA peer sends it, again and again."""
    body = fixture_body("firing-group-bearer.json")
    return [item(body, T0, externalURL=f"http://{peer}:9093") for _ in range(10)]


def later(peer: str, incident: int) -> tuple[list[IngestItem], list[ActionRequest]]:
    """What follows the opening, as one process sees it: the partial resolve (each peer's
    copies), everyone's note under their Idempotency-Key, and the same acknowledgement and
    role given in both processes."""
    body = fixture_body("partially-resolved.json")
    webhooks = [item(body, T0 + SECOND, externalURL=f"http://{peer}:9093") for _ in range(5)]
    actions = [
        ActionRequest(
            incident,
            AddEntry(who, "note", f"seen by {who}"),
            T0 + 2 * SECOND,
            Idempotency(who, f"note-{who}", f"digest-{who}"),
        )
        for who in PEOPLE
    ]
    actions.append(ActionRequest(incident, Transition("ann", "acknowledge"), T0 + 3 * SECOND))
    actions.append(ActionRequest(incident, AssignRole("ann", "commander", "bob"), T0 + 4 * SECOND))
    return webhooks, actions


def story_of(store: Any, incident: int) -> dict[str, Any]:
    """What must not depend on the order the writes took: the incident's state, each
    timeline entry and outbox row (counted), the alerts' states."""
    (state,) = rows(
        store,
        "SELECT status, severity, title, acknowledged_at, mitigated_at, resolved_at, roles, "
        "people FROM incidents WHERE id = ?",
        incident,
    )
    return {
        "incidents": rows(store, "SELECT count(*) FROM incidents"),
        "state": state,
        "timeline": Counter(rows(store, "SELECT kind, actor, text FROM timeline")),
        "outbox": Counter(rows(store, "SELECT target, tier, event FROM outbox")),
        "alerts": sorted(
            rows(store, "SELECT incident_id, fingerprint, status FROM incident_alerts")
        ),
        "webhooks": rows(store, "SELECT count(*) FROM webhooks"),
        "keys": rows(store, "SELECT scope, key FROM idempotency_keys ORDER BY scope"),
    }


async def test_two_processes_writing_one_incident_at_once_write_it_once(
    pg_cluster: Cluster,
) -> None:
    url = pg_cluster.new_database(template=pg_cluster.template)
    a, b = opened(url), opened(url)
    try:
        first = await asyncio.gather(
            *(s.ingest.apply_webhooks(i) for s, peer in ((a, "am-1"), (b, "am-2"))
              for i in arrivals(peer))
        )  # fmt: skip
        assert {r.incidents[0].id for r in first} == {1}
        assert sum(r.incidents[0].created for r in first) == 1
        writes: list[Any] = []
        for s, peer in ((a, "am-1"), (b, "am-2")):
            webhooks, actions = later(peer, 1)
            writes += [s.ingest.apply_webhooks(i) for i in webhooks]
            writes += [s.actions.apply_action(r) for r in actions]
        answers = await asyncio.gather(*writes)
        assert all(isinstance(x, WebhookResult) or x.status == 200 for x in answers), [
            x.body for x in answers if not isinstance(x, WebhookResult)
        ]
        raced = story_of(a, 1)
        keys = rows(a, "SELECT idempotency_key FROM outbox")
        assert len(keys) == len(set(keys))
    finally:
        a.close()
        b.close()

    serial_url = pg_cluster.new_database(template=pg_cluster.template)
    one = opened(serial_url)
    try:
        for i in arrivals("am-1") + arrivals("am-2"):
            await one.ingest.apply_webhooks(i)
        for peer in ("am-1", "am-2"):
            webhooks, actions = later(peer, 1)
            for i in webhooks:
                await one.ingest.apply_webhooks(i)
            for r in actions:
                await one.actions.apply_action(r)
        serial = story_of(one, 1)
    finally:
        one.close()
    assert raced == serial
    assert serial["incidents"] == [(1,)] and serial["webhooks"] == [(30,)]
    assert serial["state"][0] == "acknowledged"
    assert serial["timeline"][("note", "ann", "Note: seen by ann")] == 1


async def test_a_write_waits_for_another_processes_write_transaction(pg_url: str) -> None:
    """Write transactions are serial across processes (the writer's advisory lock): while
    another process's write transaction is open, a webhook waits, and it is answered only once
    that one has committed. Without the lock both would run at once, each reading the tables as
    they were before the other's change (the racing tests above then rely on colliding ids)."""
    store = opened(pg_url)
    try:
        with psycopg.connect(pg_url, autocommit=True) as other:
            other.execute("BEGIN")
            other.execute("SELECT pg_advisory_xact_lock(%s)", (schema.WRITE_LOCK,))
            webhook = arrivals("am-1")[0]
            pending = asyncio.ensure_future(store.ingest.apply_webhooks(webhook))
            await asyncio.sleep(0.5)
            assert not pending.done()  # waiting for the lock, not writing beside it
            other.execute("COMMIT")
        result = await asyncio.wait_for(pending, 10)
        assert result.incidents[0].created
    finally:
        store.close()


async def test_two_processes_firing_reminders_at_once_send_each_item_once(
    pg_cluster: Cluster,
) -> None:
    """The PostgreSQL side of SQLite's racing writers (test_reminders): the writers of two
    processes fire the same due items at the same instant; each is claimed once."""
    url = pg_cluster.new_database(template=pg_cluster.template)
    a, b = opened(url), opened(url)
    try:
        incident = await open_incident(a)
        results = await asyncio.gather(
            *(s.reminders.fire_due(T0 + 31 * MIN, policy=sev1) for s in (a, b) for _ in range(4))
        )
        won = [r for r in results if r.fired]
        assert len(won) == 1 and [f.kind for f in won[0].fired] == ["escalated", "reminder"]
        assert rows(a, "SELECT count(*) FROM reminders") == [(2,)]
        kinds = rows(
            a, "SELECT kind, count(*) FROM timeline WHERE actor = 'incident-bridge' GROUP BY kind"
        )
        assert sorted(kinds) == [("escalated", 1), ("reminder", 1)]
        assert len(sent(a, incident)) == 3
    finally:
        a.close()
        b.close()


# (b) Two starts on a fresh database ---------------------------------------------------------


def test_two_stores_opening_a_new_database_at_once_migrate_it_once(pg_cluster: Cluster) -> None:
    url = pg_cluster.new_database()
    stores = [PgStore(url), PgStore(url)]
    start = threading.Barrier(len(stores))
    applied: list[list[str]] = [[], []]
    errors: list[BaseException] = []

    def open_(n: int) -> None:
        try:
            start.wait()
            applied[n] = stores[n].open()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_, args=(n,)) for n in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        names = [name for name, _ in schema.MIGRATIONS]
        # each migration applied by one of them, the other found it done
        assert sorted(applied[0] + applied[1]) == sorted(names)
        recorded = rows(stores[0], "SELECT name FROM _migrations ORDER BY name")
        assert recorded == [(n,) for n in sorted(names)]
    finally:
        for s in stores:
            s.close()


def test_migrating_again_changes_nothing(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as raw:
        before = catalog(raw)
        assert schema.migrate(raw) == []
        assert catalog(raw) == before


def test_a_failing_migration_leaves_nothing_behind(pg_cluster: Cluster) -> None:
    def broken(conn: PgConnection) -> None:
        conn.raw.execute("CREATE TABLE half (id BIGINT PRIMARY KEY)")
        raise ValueError("boom")

    with psycopg.connect(pg_cluster.new_database(), autocommit=True) as raw:
        with pytest.raises(ValueError):
            schema.migrate(raw, [*schema.MIGRATIONS[:1], ("0002_broken", broken)])
        assert "half" not in schema.user_tables(raw)
        done = raw.execute("SELECT name FROM _migrations").fetchall()
        assert done == [("0001_initial",)]


def catalog(raw: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """The schema's tables, columns, indexes, triggers and functions, as PostgreSQL lists them."""
    return raw.execute(
        "SELECT 'column', table_name || '.' || column_name, data_type, "
        "coalesce(column_default, '') FROM information_schema.columns "
        "WHERE table_schema = current_schema() "
        "UNION ALL SELECT 'index', indexname, indexdef, '' FROM pg_indexes "
        "WHERE schemaname = current_schema() "
        "UNION ALL SELECT 'trigger', tgname, tgrelid::regclass::text, '' FROM pg_trigger "
        "WHERE NOT tgisinternal "
        "UNION ALL SELECT 'function', proname, md5(prosrc), '' FROM pg_proc "
        "WHERE pronamespace = current_schema()::regnamespace ORDER BY 1, 2, 3"
    ).fetchall()


# (c) A database that is not the bridge's ----------------------------------------------------


def test_a_database_with_tables_and_no_migrations_is_refused_untouched(
    pg_cluster: Cluster,
) -> None:
    url = pg_cluster.new_database()
    with psycopg.connect(url, autocommit=True) as raw:
        raw.execute("CREATE TABLE customers (id BIGINT PRIMARY KEY, name TEXT)")
        raw.execute("INSERT INTO customers VALUES (1, 'ada')")
    store = PgStore(url)
    with pytest.raises(StoreError) as err:
        store.open()
    assert "customers" in str(err.value) and "_migrations" in str(err.value)
    assert not store.is_open
    with psycopg.connect(url, autocommit=True) as raw:
        assert schema.user_tables(raw) == ["customers"]
        assert raw.execute("SELECT id, name FROM customers").fetchall() == [(1, "ada")]
        functions = raw.execute(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = current_schema()::regnamespace"
        ).fetchone()
        assert functions == (0,)


# (d) The dialect ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shared", "postgres", "order"),
    [
        ("SELECT a FROM t WHERE b = ? AND c = ?", "SELECT a FROM t WHERE b = %s AND c = %s", None),
        # a literal's ? is no placeholder; every % is doubled for psycopg, in a literal too
        (
            "SELECT 'why?', '50%', a % 2 FROM t WHERE b LIKE 'x%' AND c = ?",
            "SELECT 'why?', '50%%', a %% 2 FROM t WHERE b LIKE 'x%%' AND c = %s",
            None,
        ),
        ("SELECT 'it''s ?' WHERE a = ?", "SELECT 'it''s ?' WHERE a = %s", None),
        ('SELECT "odd?name" FROM t WHERE a = ?', 'SELECT "odd?name" FROM t WHERE a = %s', None),
        # numbered placeholders: one %s each, the arguments in the order they are used
        ("SELECT ?1 WHERE a = ?2 OR b = ?1", "SELECT %s WHERE a = %s OR b = %s", (0, 1, 0)),
        (
            "INSERT OR IGNORE INTO r (a, b) VALUES (?, ?)",
            "INSERT INTO r (a, b) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            None,
        ),
        (
            "INSERT OR IGNORE INTO r (a) VALUES (?) RETURNING a",
            "INSERT INTO r (a) VALUES (%s) ON CONFLICT DO NOTHING RETURNING a",
            None,
        ),
        # scalar max/min (two arguments) are greatest/least; the aggregates stay
        (
            "SELECT max(a, coalesce(b, 0)), min(a, ?), max(a), min(b) FROM t",
            "SELECT greatest(a, coalesce(b, 0)), least(a, %s), max(a), min(b) FROM t",
            None,
        ),
        (
            "SELECT a FROM t WHERE a IN () OR b NOT IN ( )",
            "SELECT a FROM t WHERE a IN (SELECT NULL WHERE false) OR b NOT "
            "IN (SELECT NULL WHERE false)",
            None,
        ),
        ("SELECT CAST(a AS INTEGER) FROM t", "SELECT CAST(a AS BIGINT) FROM t", None),
        (
            "SELECT a FROM t INDEXED BY idx_t_a WHERE a = ?",
            "SELECT a FROM t WHERE a = %s",
            None,
        ),
        # an upsert names the stored row's columns with their table (the shared dialect): they
        # pass as they are, a literal's ? is no placeholder
        (
            "INSERT INTO c (k, n, s) VALUES (?, 1, ?) ON CONFLICT(k) DO UPDATE SET "
            "n = c.n + excluded.n, s = max(c.s, excluded.s, 1e9) RETURNING 'a?', n",
            "INSERT INTO c (k, n, s) VALUES (%s, 1, %s) ON CONFLICT(k) DO UPDATE SET "
            "n = c.n + excluded.n, s = greatest(c.s, excluded.s, 1e9) RETURNING 'a?', n",
            None,
        ),
    ],
)
def test_translate(shared: str, postgres: str, order: tuple[int, ...] | None) -> None:
    assert translate(shared) == (postgres, order)


def test_translated_statements_run_as_sqlite_runs_them(pg_url: str, tmp_path: Path) -> None:
    """The same statements and arguments, on both databases, give the same rows."""
    statements: list[tuple[str, tuple[Any, ...]]] = [
        ("CREATE TABLE c (k TEXT PRIMARY KEY, n BIGINT NOT NULL, s BIGINT)", ()),
        ("INSERT OR IGNORE INTO c (k, n, s) VALUES (?, ?, ?)", ("a%?", 1, 5)),
        ("INSERT OR IGNORE INTO c (k, n, s) VALUES (?, ?, ?)", ("a%?", 9, 9)),
        (
            "INSERT INTO c (k, n, s) VALUES (?, 1, ?) ON CONFLICT(k) DO UPDATE SET "
            "n = c.n + excluded.n, s = max(c.s, excluded.s)",
            ("a%?", 7),
        ),
        ("INSERT INTO c (k, n, s) VALUES (?1, 2, ?2), (?1 || '-copy', 3, ?2)", ("b", None)),
    ]
    reads = [
        ("SELECT k, n, s FROM c WHERE k LIKE 'a%' OR k = ?", ("b",)),
        ("SELECT k, min(n, 2), max(coalesce(s, 0), 1) FROM c WHERE k NOT IN () ORDER BY k", ()),
        ("SELECT '?', count(*) FROM c WHERE k IN ()", ()),
    ]
    lite = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    try:
        with psycopg.connect(pg_url, autocommit=True) as raw:
            pg = PgConnection(raw)
            for sql, args in statements:
                lite.execute(sql, args)
                pg.execute(sql, args)
            for sql, args in reads:
                expected = sorted(lite.execute(sql, args).fetchall(), key=repr)
                assert sorted(map(tuple, pg.execute(sql, args).fetchall()), key=repr) == expected
    finally:
        lite.close()


# (e) The schema -----------------------------------------------------------------------------


def test_the_schema_has_sqlites_tables_and_columns(pg_url: str, tmp_path: Path) -> None:
    """Table by table, the same column names in the same order; the full-text search's
    tables (FTS5's virtual tables on SQLite) are each engine's own."""
    lite = Store(tmp_path / "bridge.db")
    lite.open()
    lite.close()
    conn = sqlite3.connect(lite.path)
    try:
        virtual = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND sql LIKE 'CREATE VIRTUAL TABLE%'"
            )
        ]
        # FTS5's shadow tables of each virtual table
        shadows = ("data", "idx", "content", "docsize", "config")
        engine_own = set(virtual) | {f"{v}_{s}" for v in virtual for s in shadows}
        sqlite_tables: dict[str, list[str]] = {}
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ):
            if name in engine_own:
                continue
            sqlite_tables[name] = [r[1] for r in conn.execute(f"PRAGMA table_info({name})")]
    finally:
        conn.close()
    assert virtual, "the SQLite schema has its FTS5 tables"
    with psycopg.connect(pg_url, autocommit=True) as raw:
        pg_tables: dict[str, list[str]] = {}
        for table, column in raw.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        ):
            pg_tables.setdefault(table, []).append(column)
    for name in engine_own:
        pg_tables.pop(name, None)
    assert pg_tables == sqlite_tables


def test_the_migrations_are_sqlites_by_name_and_order() -> None:
    from bridge.store.migrations import MIGRATIONS

    assert [n for n, _ in schema.MIGRATIONS] == [n for n, _ in MIGRATIONS]


# (f) The MTTx aggregates --------------------------------------------------------------------


async def mttx_story(store: Any) -> None:
    """Incidents acknowledged, mitigated, reopened, resolved, dismissed and published."""

    async def act(incident: int, command: Any, at: int) -> None:
        answer = await store.actions.apply_action(ActionRequest(incident, command, T0 + at))
        assert answer.status == 200, answer.body

    checkout = fixture_body("firing-group-bearer.json")
    first = await store.ingest.apply_webhooks(item(checkout, T0))
    one = first.incidents[0].id
    await act(one, Transition("ann", "acknowledge"), 75 * SECOND)
    await store.ingest.apply_webhooks(
        item(fixture_body("partially-resolved.json"), T0 + 90 * SECOND)
    )
    await store.ingest.apply_webhooks(item(fixture_body("resolved-last.json"), T0 + 300 * SECOND))
    await act(one, Transition("ann", "resolve"), 4000 * SECOND)

    # reopened within its window, mitigated again, then resolved by hand
    firing, resolved = (
        fixture_body("ha-slow-receiver/01.json"),
        fixture_body("ha-slow-receiver/04.json"),
    )
    two = (await store.ingest.apply_webhooks(item(firing, T0 + 10 * SECOND))).incidents[0].id
    await store.ingest.apply_webhooks(item(resolved, T0 + 700 * SECOND))
    refire = json.loads(json.dumps(firing))
    refire["alerts"][0]["startsAt"] = "2026-11-27T06:00:00Z"
    await store.ingest.apply_webhooks(item(refire, T0 + 900 * SECOND))
    await act(two, Transition("bob", "resolve"), 20_000 * SECOND)

    # a false alarm dismissed, and one more left open in another group
    other = {**checkout, "groupKey": "{}:{other}"}
    three = (await store.ingest.apply_webhooks(item(other, T0 + 30 * SECOND))).incidents[0].id
    await act(three, Dismiss("cyd", "a test"), 40 * SECOND)
    again = {**checkout, "groupKey": "{}:{again}"}
    await store.ingest.apply_webhooks(item(again, T0 + 50 * SECOND))

    # the first one's postmortem published: no longer pending
    record = PublishRecord(one, 1, "", None, "ann", T0 + 5000 * SECOND, "# pm\n", "pm")
    await store.write(lambda conn: record_publication(conn, record))


def normalized(scraped: Any) -> Any:
    counts, stats, aggregates = scraped
    return (
        counts,
        stats,
        sorted(aggregates.histograms),
        sorted(aggregates.counters),
        sorted(aggregates.postmortems),
        aggregates.followup_items_open,
    )


def types(scraped: Any) -> Any:
    """The Python types of every value (an int stays an int, a sum of seconds a float)."""
    _, _, aggregates = scraped
    return {
        tuple(type(v).__name__ for v in row)
        for row in [*aggregates.histograms, *aggregates.counters, *aggregates.postmortems]
    }


async def test_the_mttx_aggregates_are_sqlites_after_the_same_story(
    pg_url: str, tmp_path: Path
) -> None:
    lite, pg = Store(tmp_path / "bridge.db"), PgStore(pg_url)
    lite.open()
    pg.open()
    try:
        for store in (lite, pg):
            await mttx_story(store)
        for teams in ((), ("checkout",), ("checkout", "payments")):
            a, b = await lite.metrics.scrape(teams), await pg.metrics.scrape(teams)
            assert normalized(b) == normalized(a)
            assert types(b) == types(a)
        _, _, aggregates = await pg.metrics.scrape(())
        metrics = {row[0] for row in aggregates.histograms}
        assert metrics == {"detect", "ack", "mitigate", "resolve"}
        assert {row[0] for row in aggregates.counters} >= {"opened", "reopened", "dismissed"}
    finally:
        lite.close()
        pg.close()


# Text order ---------------------------------------------------------------------------------


async def test_alerts_of_one_start_are_in_sqlites_order_whatever_the_databases_collation(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    """Fingerprints break the tie between alerts that started together; a database created
    with a language's collation (ICU's en-US sorts "a" before "B") orders them as SQLite's
    bytes do."""
    name = f"icu_{uuid.uuid4().hex[:12]}"
    pg_cluster.sql(
        f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' "
        "LOCALE 'C.UTF-8'"
    )
    body = fixture_body("firing-group-bearer.json")
    template = body["alerts"][0]
    fingerprints = ["b0000000000000e1", "B0000000000000e2", "_000000000000003", "a0000000000000e4"]
    body["alerts"] = [
        {**template, "fingerprint": fp, "labels": {**template["labels"], "instance": fp}}
        for fp in fingerprints
    ]
    lite, pg = Store(tmp_path / "bridge.db"), PgStore(pg_cluster.url(name))
    lite.open()
    pg.open()
    try:
        orders = []
        for store in (lite, pg):
            result = await store.ingest.apply_webhooks(item(body, T0))
            incident = await store.queries.get_incident(result.incidents[0].id)
            orders.append([a["fingerprint"] for a in incident["alerts"]])
    finally:
        lite.close()
        pg.close()
    assert orders[0] == sorted(fingerprints)  # SQLite: by bytes
    assert orders[1] == orders[0]


# The interface's reads ----------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A read's answer as nested lists and dicts of (type name, value): an int read back as a
    bool, a float or a Decimal differs from SQLite's."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, range):
        return ("range", value.start, value.stop)
    if hasattr(value, "__slots__") and not isinstance(value, str | bytes | int | float):
        return {k: plain(getattr(value, k)) for k in value.__slots__ if hasattr(value, k)}
    return (type(value).__name__, value)


async def more_story(store: Any) -> None:
    """After ``mttx_story``: the open group mitigated, its follow-up opened; notifications
    delivered, failed and dead."""
    for name, at in (("partially-resolved.json", 6000), ("resolved-last.json", 6100)):
        body = {**fixture_body(name), "groupKey": "{}:{again}"}
        await store.ingest.apply_webhooks(item(body, T0 + at * SECOND))
    request = OpenRequest(
        now=T0 + 6200 * SECOND,
        policy=lambda _: DEFAULT_POLICY,
        acknowledge_within=lambda *_: 300.0,
    )
    assert await store.followups.open_due(request)
    due = await store.outbox.due(now=T0 + 10**6 * SECOND, limit=100, per_target=100)
    groups = await store.outbox.claim_groups([r.id for r in due[:3]], 5)
    now = T0 + 7000 * SECOND
    outcomes = [
        Attempt(leader_id=due[0].id, now=now, state={"ts": "1.2"}),
        Attempt(leader_id=due[1].id, now=now, error="timeout", retry_at=now + 60 * SECOND),
        Attempt(leader_id=due[2].id, now=now, error="gone", retry_at=None),
    ]
    assert len(groups) == 3
    for outcome in outcomes:
        await store.outbox.record(outcome)


async def everything_read(store: Any) -> Any:
    q, late = store.queries, T0 + 10**6 * SECOND
    answers: dict[str, Any] = {
        "list": await q.list_incidents(),
        "list filtered": await q.list_incidents(
            statuses=["resolved", "triggered", "closed"], severities=["sev1"], before=4, limit=2
        ),
        "list by team": await q.list_incidents(
            teams=["checkout"], routes=["default"], services=["checkout"], since=T0, until=late
        ),
        "activity": await q.activity(),
        "rows": await store.outbox.list_rows(state=None, before=None, limit=100),
        "pending rows": await store.outbox.list_rows(state="pending", before=20, limit=5),
        "due": await store.outbox.due(now=late, limit=100, per_target=2),
        "next due": await store.outbox.next_due_at(after=T0 + 7000 * SECOND),
        "candidates": await store.reconcile.candidates(["bridge", "default"]),
        "follow-up work": await store.followups.has_work(late),
        "validations": await store.followups.due_validations(late),
        "next validation": await store.followups.next_validation_at(T0),
        "published": await store.postmortems.published_index(),
        "scrape": normalized(await store.metrics.scrape(("checkout",))),  # rows in no order
    }
    for i in range(1, 6):
        answers[f"incident {i}"] = (
            await q.get_incident(i),
            await q.incident_page(i),
            await q.incident_summary(i),
            await q.timeline_since(i, 3),
            await q.last_change(i),
            await store.followups.incident_followup(i),
            await store.postmortems.history(i),
            await store.postmortems.read(i),
            await store.postmortems.previous_path(i),
        )
    return plain(answers)


async def test_every_read_of_the_interface_answers_as_sqlite_after_the_same_story(
    pg_url: str, tmp_path: Path
) -> None:
    lite, pg = Store(tmp_path / "bridge.db"), PgStore(pg_url)
    lite.open()
    pg.open()
    try:
        for store in (lite, pg):
            await mttx_story(store)
            await more_story(store)
        expected, got = await everything_read(lite), await everything_read(pg)
    finally:
        lite.close()
        pg.close()
    for name in expected:
        assert got[name] == expected[name], name
