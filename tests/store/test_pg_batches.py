"""PostgreSQL's batches: the writer's jobs that handle many rows send a number of statements that
does not grow with the rows (each statement is a round trip and a server parse/plan/execute:
the webhooks' path waits behind them on one writer, docs/performance.md), and write what the
one-at-a-time code wrote.

Statements are counted where they leave the client: libpq's trace of the protocol messages
(``Query`` for a simple query, ``Bind`` for each execution of an extended one, so a pipeline's
or an ``executemany``'s rows count one each)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.core.alertmanager import parse_webhook
from bridge.store.ingest import IngestItem, apply_webhooks
from bridge.store.search import (
    INCIDENT,
    MAX_ALERTS,
    _keys,
    _labels,
    _similar_labels,
    incident_text,
    index_pending,
)
from tests.conftest import T0
from tests.store.test_search import POLICY, PgDb, labels, webhook


@pytest.fixture
def db(pg_url: str) -> Iterator[PgDb]:
    d = PgDb(pg_url)
    yield d
    d.close()


@contextlib.contextmanager
def counted(db: PgDb) -> Iterator[list[int]]:
    """The statements ``db``'s connection sends inside the block, in the list once it ends."""
    out: list[int] = []
    with tempfile.TemporaryFile("w+") as trace:
        db.raw.pgconn.trace(trace.fileno())
        try:
            yield out
        finally:
            db.raw.pgconn.untrace()
        trace.flush()
        os.lseek(trace.fileno(), 0, os.SEEK_SET)
        sent = [line.split("\t") for line in os.read(trace.fileno(), 1 << 24).decode().splitlines()]
    out.append(sum(1 for f in sent if len(f) > 3 and f[1] == "F" and f[3] in ("Query", "Bind")))
    # the times the client waited for the server: a simple query, or a Sync (the end of an
    # extended query, or of a pipeline's statements)
    out.append(sum(1 for f in sent if len(f) > 3 and f[1] == "F" and f[3] in ("Query", "Sync")))


def index_once(db: PgDb) -> Any:
    with db.transaction():
        return index_pending(db.conn, max_incidents=64)


def test_indexing_forty_new_incidents_sends_as_many_statements_as_indexing_one(
    db: PgDb,
) -> None:
    db.open("g0", "first", labels("A", "svc"))
    with counted(db) as one:
        assert index_once(db).incidents == 1
    for n in range(40):
        # two alerts each, the same (alertname, service) twice in one incident
        db.open(f"g{n + 1}", f"t{n}", labels("A", "svc", i="1"), labels("A", "svc", i="2"))
    with counted(db) as forty:
        assert index_once(db).incidents == 40
    # Per incident it used to be a labels read, two inserts for its document, one for its
    # terms and one per key: 5 statements each, 200 here
    assert forty[0] == one[0], (one, forty)
    assert forty[0] <= 12


def test_an_indexer_job_waits_for_the_server_four_times(db: PgDb) -> None:
    for n in range(10):
        db.open(f"r{n}", f"t{n}", labels("A", "svc", i=str(n)))
    with counted(db) as sent, db.transaction():
        done = index_pending(db.conn, max_incidents=64)
    assert done.incidents == 10 and done.entries > 0
    # the marks; the incidents and the timeline entries past them; their labels; the writes
    # (documents, terms, keys, entries, both marks); and the transaction's BEGIN and COMMIT.
    # It was eight round trips and those two, while the writer held the webhooks behind it
    assert sent[1] <= 4 + 2, sent


def test_a_batch_writes_what_each_incident_alone_would(db: PgDb) -> None:
    many = [labels("Big", "db", instance=f"db-{n:03}") for n in range(MAX_ALERTS + 10)]
    ids = [
        db.open("storm", "Big storm", *many),
        db.open("g1", "Disk full", labels("DiskFull", "db"), labels("DiskFull", "")),
        db.open("g2", "No service label", {"alertname": "Lonely", "severity": "critical"}),
        db.open("g3", "Two names", labels("A", "web"), labels("B", "web"), labels("A", "web")),
    ]
    assert index_once(db).incidents == len(ids)
    for incident_id in ids:
        key, title, team, service = db.rows(
            "SELECT key, title, team, service FROM incidents WHERE id = ?", incident_id
        )[0]
        first = _labels(db.conn, incident_id)  # one incident's own read, as before batches
        assert len(first) <= MAX_ALERTS
        text = incident_text(title, key, team, service, first)
        assert db.rows(
            "SELECT s.body FROM search_docs d JOIN search s ON s.id = d.doc "
            "WHERE d.incident_id = ? AND d.kind = ? AND d.ref = ?",
            incident_id,
            INCIDENT,
            str(incident_id),
        ) == [(text,)]
        assert db.rows(
            "SELECT title, labels FROM similar_terms WHERE incident_id = ?", incident_id
        ) == [(title, _similar_labels(first))]
        keys = db.rows(
            "SELECT alertname, service FROM similar_keys WHERE incident_id = ? "
            "ORDER BY alertname, service",
            incident_id,
        )
        assert keys == sorted(_keys(service, first))
    # the storm's document holds its first MAX_ALERTS alerts' labels (by start, fingerprint)
    storm = json.dumps(db.rows("SELECT body FROM search WHERE incident_id = ?", ids[0]))
    assert storm.count("instance=db-") == MAX_ALERTS


def items(groups: list[str], now: int) -> list[IngestItem]:
    out = []
    for n, group in enumerate(groups):
        raw = webhook(group, f"summary {group}", labels("A", "svc", group=group))
        payload = parse_webhook(raw)
        sha = hashlib.sha256(raw).hexdigest()
        out.append(IngestItem(payload, POLICY.evaluate(payload, now + n), sha, None, now + n))
    return out


def test_a_batch_of_new_incidents_waits_for_the_server_four_times(db: PgDb) -> None:
    with db.transaction():  # a connection reads the column types of a table once
        apply_webhooks(db.conn, items([f"first-{n}" for n in range(30)], T0))
    with db.transaction(), counted(db) as sent:
        results = apply_webhooks(db.conn, items([f"g{n}" for n in range(30)], T0 + 10**9))
    assert all(r.incidents[0].created for r in results)
    # the links of the groups (store/declared.py); the next ids and the keys' newest
    # incidents, together; the alerts; the other rows. The next ids were a round trip of their
    # own, which under load costs the writer's thread a wait for the GIL too
    assert sent[1] <= 4, sent


def test_a_batchs_lookup_of_its_keys_reads_no_whole_table(db: PgDb) -> None:
    # A table that grew after its statistics were taken, as in a storm of new incidents: the
    # lookup of each key's newest incident must stay index lookups, whatever the planner
    # believes of the table's size (a scan of it per batch grows with every incident)
    db.conn.execute("ANALYZE incidents")
    for start in range(0, 3000, 500):
        with db.transaction():
            apply_webhooks(db.conn, items([f"old-{n}" for n in range(start, start + 500)], T0))
    # the counts not yet flushed to the statistics, the earlier transactions' with them
    scans = "SELECT seq_scan, seq_tup_read FROM pg_stat_xact_user_tables WHERE relname = ?"
    with db.transaction():
        before = db.rows(scans, "incidents")
        results = apply_webhooks(
            db.conn, items(["old-7", "old-2999", *(f"new-{n}" for n in range(30))], T0 + 10**9)
        )
        after = db.rows(scans, "incidents")
    assert after == before
    # the two old groups' webhooks found their incidents: no new one for them
    assert [r.incidents[0].created for r in results[:2]] == [False, False]
    assert all(r.incidents[0].created for r in results[2:])


def test_a_batch_of_thirty_webhooks_sends_as_many_statements_as_one(db: PgDb) -> None:
    with db.transaction():  # a connection reads the column types of a table once
        apply_webhooks(db.conn, items([f"first-{n}" for n in range(30)], T0))
    with db.transaction(), counted(db) as one:
        apply_webhooks(db.conn, items(["solo"], T0 + 10**9))
    with db.transaction(), counted(db) as thirty:
        apply_webhooks(db.conn, items([f"g{n}" for n in range(30)], T0 + 2 * 10**9))
    # each table's rows in one statement: per webhook it was an alert, an incident, its link,
    # two timeline entries and the journal's row, one Bind each (180 more here)
    assert thirty[0] == one[0], (one, thirty)


def raw_webhook(group: str, alerts: list[tuple[str, str, str, str]]) -> bytes:
    """(instance, status, startsAt, endsAt) alerts of one group."""
    return json.dumps(
        {
            "version": "4",
            "groupKey": group,
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "bridge",
            "groupLabels": {},
            "commonLabels": {"alertname": "A", "service": "svc"},
            "commonAnnotations": {"summary": group},
            "externalURL": "http://alertmanager:9093",
            "alerts": [
                {
                    "status": status,
                    "labels": {"alertname": "A", "service": "svc", "instance": instance},
                    "annotations": {"summary": f"{instance} {status} {starts}"},
                    "startsAt": starts,
                    "endsAt": ends,
                    "generatorURL": "",
                }
                for instance, status, starts, ends in alerts
            ],
        }
    ).encode()


NEVER = "0001-01-01T00:00:00Z"


def test_a_fingerprint_repeated_in_a_batch_is_written_as_one_at_a_time_would(
    db: PgDb, pg_cluster: Any
) -> None:
    # the same alerts again and again in one batch: newer, stale, resolved, firing again; the
    # upserts may not touch a row twice in one statement, and the order decides the result
    story = [
        [
            ("a", "firing", "2026-11-27T04:00:00Z", NEVER),
            ("b", "firing", "2026-11-27T04:00:00Z", NEVER),
        ],
        [("a", "firing", "2026-11-27T03:00:00Z", NEVER)],  # stale: only last_seen moves
        [("a", "resolved", "2026-11-27T04:00:00Z", "2026-11-27T04:05:00Z")],
        [("b", "resolved", "2026-11-27T04:00:00Z", "2026-11-27T04:01:00Z")],
        [
            ("a", "firing", "2026-11-27T04:10:00Z", NEVER),
            ("b", "firing", "2026-11-27T04:00:00Z", NEVER),
        ],
        # new alerts for the incident (asked of the database), all resolved, then back: the
        # answers must see the batch's own links
        [("c", "firing", "2026-11-27T04:11:00Z", NEVER)],
        [
            ("a", "resolved", "2026-11-27T04:10:00Z", "2026-11-27T04:12:00Z"),
            ("b", "resolved", "2026-11-27T04:00:00Z", "2026-11-27T04:12:00Z"),
            ("c", "resolved", "2026-11-27T04:11:00Z", "2026-11-27T04:12:00Z"),
        ],
        [
            ("c", "firing", "2026-11-27T04:20:00Z", NEVER),
            ("d", "firing", "2026-11-27T04:20:00Z", NEVER),
        ],
        [("a", "firing", "2026-11-27T04:21:00Z", NEVER)],
    ]
    batch = []
    for n, alerts in enumerate(story):
        raw = raw_webhook("one-group", alerts)
        payload = parse_webhook(raw)
        sha = hashlib.sha256(raw).hexdigest()
        at = T0 + n * 86400 * 10**9  # a day apart: past the reopen window, a new incident
        batch.append(IngestItem(payload, POLICY.evaluate(payload, at), sha, None, at))
    one_at_a_time = PgDb(pg_cluster.new_database(template=pg_cluster.template))
    try:
        for item in batch:
            with one_at_a_time.transaction():
                apply_webhooks(one_at_a_time.conn, [item])
        with db.transaction():
            apply_webhooks(db.conn, batch)
        for sql in (
            "SELECT * FROM alerts ORDER BY fingerprint",
            "SELECT * FROM incident_alerts ORDER BY incident_id, fingerprint",
            "SELECT * FROM incident_alert_counts ORDER BY incident_id, status",
            "SELECT * FROM incidents ORDER BY id",
            "SELECT id, incident_id, kind, text, data FROM timeline ORDER BY id",
            "SELECT id, status, alert_count, incidents FROM webhooks ORDER BY id",
        ):
            assert db.rows(sql) == one_at_a_time.rows(sql), sql
    finally:
        one_at_a_time.close()


def test_new_alerts_for_existing_incidents_do_not_flush_the_batch_per_webhook(db: PgDb) -> None:
    groups = [f"g{n}" for n in range(20)]
    with db.transaction():  # the incidents, and a connection that knows the column types
        apply_webhooks(db.conn, items(groups, T0))

    def more(suffix: str, at: int) -> list[IngestItem]:
        out = []
        for n, group in enumerate(groups):
            raw = webhook(group, f"summary {group}", labels("A", "svc", group=group, i=suffix))
            payload = parse_webhook(raw)
            sha = hashlib.sha256(raw).hexdigest()
            out.append(IngestItem(payload, POLICY.evaluate(payload, at + n), sha, None, at + n))
        return out

    with db.transaction(), counted(db) as one:
        apply_webhooks(db.conn, more("x", T0 + 10**9)[:1])
    with db.transaction(), counted(db) as twenty:
        results = apply_webhooks(db.conn, more("y", T0 + 2 * 10**9))
    assert all(not r.incidents[0].created for r in results)
    # each webhook still asks which incident of its group last held its new alert (one read),
    # but the batch's rows are no longer sent before each of those reads
    assert twenty[0] <= one[0] + 2 * 19, (one, twenty)
    assert db.rows("SELECT count(*) FROM incident_alerts")[0][0] == 20 * 3 - 19
