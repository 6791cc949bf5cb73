"""The search index and "seen this before" in the store: what the indexer writes, what a search
finds and how it ranks and cuts, that nothing a person types is an SQL error, and which past
incidents a new one is linked to. On both backends (the ``db`` fixture): SQLite's FTS5 and
PostgreSQL's text search (tests/store/test_search_pg.py has what is PostgreSQL's own)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from bridge.core.actions import AddEntry
from bridge.core.alertmanager import fingerprint, parse_webhook
from bridge.core.policy import BuiltinPolicy
from bridge.store.actions import ActionRequest, apply_action
from bridge.store.ingest import apply_webhook
from bridge.store.migrations import MIGRATIONS, migrate
from bridge.store.search import (
    QueryError,
    find_similar,
    fts_query,
    index_document,
    index_pending,
    look_up_similar,
    marks,
    pending_similar,
    rebuild_similar_terms,
    record_similar,
    search,
)
from tests.conftest import SECOND, T0, execute

POLICY = BuiltinPolicy()


def webhook(group: str, summary: str, *labels: dict[str, str]) -> bytes:
    return json.dumps(
        {
            "version": "4",
            "groupKey": group,
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "bridge",
            "groupLabels": {},
            "commonLabels": {k: v for k, v in labels[0].items() if k != "instance"},
            "commonAnnotations": {"summary": summary},
            "externalURL": "http://alertmanager:9093",
            "alerts": [
                {
                    "status": "firing",
                    "labels": one,
                    "annotations": {},
                    "startsAt": "2026-11-27T04:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "",
                    "fingerprint": fingerprint(one),
                }
                for one in labels
            ],
        }
    ).encode()


class Db:
    """A migrated database on one connection: each call is its own transaction, as the writer's
    would be. ``doc_id`` is the name of a ``search`` row's id (SQLite's rowid)."""

    doc_id = "rowid"

    def __init__(self, path: Path) -> None:
        self.conn: Any = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA foreign_keys = ON")
        migrate(sqlite_utils.Database(self.conn))
        self.now = T0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def forget_similar_terms(self) -> None:
        """``similar_terms`` emptied, as a copy of the database leaves it."""
        self.conn.execute("INSERT INTO similar_terms (similar_terms) VALUES ('delete-all')")

    def open(self, group: str, summary: str, *labels: dict[str, str]) -> int:
        raw = webhook(group, summary, *labels)
        payload = parse_webhook(raw)
        self.now += SECOND
        with self.transaction():
            result = apply_webhook(
                self.conn,
                payload=payload,
                decisions=POLICY.evaluate(payload, self.now),
                sha256=hashlib.sha256(raw).hexdigest(),
                body=raw,
                now=self.now,
            )
        return result.incidents[0].id

    def note(self, incident_id: int, text: str, kind: str = "note") -> None:
        request = ActionRequest(incident_id, AddEntry("alice", kind, text), self.now)  # type: ignore[arg-type]
        with self.transaction():
            answer = apply_action(self.conn, request)
        assert answer.status == 200, answer.body

    def index(self) -> None:
        while True:
            with self.transaction():
                done = index_pending(self.conn, max_incidents=3, max_entries=5)
            if not done.more:
                return

    def link(self, url: Any = None) -> list[int]:
        """Look up and record the similar incidents of everything indexed; the incidents
        linked."""
        linked: list[int] = []
        while True:
            ids, upto = pending_similar(self.conn, 2)
            if not ids and upto <= marks(self.conn).similar:
                return linked
            found = look_up_similar(self.conn, ids)
            with self.transaction():
                done = record_similar(self.conn, found, upto=upto, now=self.now, url=url)
            linked += done.linked

    def search(self, text: str, limit: int = 20) -> list[dict[str, Any]]:
        return search(self.conn, text, limit=limit)

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, args).fetchall())


class PgDb(Db):
    """The same on PostgreSQL: a database of the test's own (the schema made by the store's
    migrations), one connection, each call in its own transaction."""

    doc_id = "id"

    def __init__(self, url: str) -> None:
        import psycopg

        from bridge.store.postgres.connection import PgConnection, configure

        self.raw = psycopg.connect(url, autocommit=True)
        configure(self.raw)
        self.conn = PgConnection(self.raw)
        self.now = T0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self.raw.transaction():
            yield

    def close(self) -> None:
        self.raw.close()

    def forget_similar_terms(self) -> None:
        self.conn.execute("DELETE FROM similar_terms")


@pytest.fixture
def db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Db]:
    d = Db(tmp_path / "s.db") if backend == "sqlite" else PgDb(request.getfixturevalue("pg_url"))
    yield d
    d.close()


def labels(alertname: str, service: str, **more: str) -> dict[str, str]:
    return {"alertname": alertname, "service": service, "severity": "critical", **more}


# --- indexing -----------------------------------------------------------------------------------


def test_incidents_and_timeline_entries_are_indexed_in_bounded_batches_by_watermark(
    db: Db,
) -> None:
    ids = [
        db.open(f"g{n}", f"Disk full on db-{n}", labels("DiskFull", "db", instance=f"db-{n}:9100"))
        for n in range(7)
    ]
    db.note(ids[0], "the backup job filled /var; rotated its logs")
    with db.transaction():
        first = index_pending(db.conn, max_incidents=3, max_entries=5)
    assert (first.incidents, first.entries, first.more) == (3, 5, True)
    assert first.marks.incidents == ids[2]
    db.index()
    m = marks(db.conn)
    assert m.incidents == ids[-1]
    assert m.timeline == db.rows("SELECT max(id) FROM timeline")[0][0]
    # Each incident once, each timeline entry once (but "Incident opened: <title>", which the
    # incident's own document says): nothing indexed twice across batches.
    kinds = dict(db.rows("SELECT kind, count(*) FROM search GROUP BY kind"))
    timeline = dict(db.rows("SELECT kind, count(*) FROM timeline GROUP BY kind"))
    assert kinds.pop("incident") == 7
    assert timeline.pop("opened") == 7
    assert kinds == timeline
    # Only what can be replaced is listed by name: the incidents' documents.
    assert db.rows("SELECT count(*) FROM search_docs WHERE kind = 'incident'") == [(7,)]
    assert db.rows("SELECT count(*) FROM search_docs") == [(7,)]
    # The incident's document: its title, key, service and its alerts' labels.
    (body,) = db.rows(
        f"SELECT body FROM search WHERE {db.doc_id} = (SELECT doc FROM search_docs "
        "WHERE kind = 'incident' AND ref = ?)",
        str(ids[3]),
    )[0]
    assert body.splitlines()[:2] == ["Disk full on db-3", "g3"]
    assert "service=db" in body and "instance=db-3:9100" in body
    db.index()  # nothing new: nothing more
    assert db.rows("SELECT count(*) FROM search")[0][0] == 7 + sum(timeline.values())


def test_index_document_replaces_what_was_indexed_under_its_name(db: Db) -> None:
    incident = db.open("g", "Checkout slow", labels("Latency", "checkout"))
    index_document(db.conn, incident, "postmortem", "pm-1", "root cause: a connection pool leak")
    assert [h["kind"] for h in db.search("leak")] == ["postmortem"]
    index_document(db.conn, incident, "postmortem", "pm-1", "root cause: DNS cache poisoning")
    assert db.search("leak") == []
    assert db.search("poisoning")[0]["ref"] == "pm-1"
    assert db.rows("SELECT count(*) FROM search_docs WHERE kind = 'postmortem'")[0][0] == 1
    index_document(db.conn, incident, "postmortem", "pm-1", "")  # empty: removed
    assert db.search("poisoning") == []


def test_a_new_database_links_from_its_first_incident_and_an_upgraded_one_from_its_next(
    tmp_path: Path,
) -> None:
    """SQLite only: an upgrade through SQLite's migrations (PostgreSQL's schema starts with its
    0008 as a new database does)."""
    conn = sqlite3.connect(tmp_path / "u.db", isolation_level=None)
    db = sqlite_utils.Database(conn)
    before = [m for m in MIGRATIONS if m[0] != "0008_search"]
    migrate(db, before)
    conn.execute(
        "INSERT INTO incidents (id, key, title, severity, status, started_at, opened_at) "
        "VALUES (41, 'k', 't', 'sev3', 'resolved', 1, 1)"
    )
    migrate(db)
    # Incidents from before the upgrade are indexed (searchable) but never announced.
    assert marks(conn).similar == 41 and marks(conn).incidents == 0
    conn.close()


# --- search ------------------------------------------------------------------------------------


def test_search_finds_an_incident_by_a_word_of_a_timeline_note_with_a_snippet(db: Db) -> None:
    target = db.open("g1", "Checkout errors", labels("HighErrorRate", "checkout"))
    other = db.open("g2", "Search latency", labels("Latency", "search"))
    db.note(target, "Rolled back release 42 after the flamegraph showed lock contention")
    db.note(other, "Scaled the search cluster out")
    db.index()
    (hit,) = db.search("flamegraph")
    assert hit["incident_id"] == target and hit["kind"] == "note"
    assert hit["title"] == "Checkout errors" and hit["status"] == "triggered"
    assert hit["severity"] == "sev1" and hit["opened_at"].endswith("Z")
    assert "«flamegraph»" in hit["snippet"]
    entry = db.rows("SELECT id FROM timeline WHERE kind = 'note' AND incident_id = ?", target)
    assert hit["ref"] == str(entry[0][0])
    # The Porter stemmer: "rolling back" finds "Rolled back".
    assert [h["incident_id"] for h in db.search("rolling back")] == [target]


def test_case_accents_and_word_endings_do_not_matter(db: Db) -> None:
    cafe = db.open("g1", "Café checkout FAILING", labels("CheckoutFailing", "checkout"))
    pods = db.open("g2", "Queue backlog", labels("QueueBacklog", "jobs"))
    db.note(pods, "We restarted the pods of the Zürich workers")
    db.index()
    (hit,) = db.search("cafe failing")
    assert hit["incident_id"] == cafe
    # the snippet is the document's own text, accents kept
    assert "«Café»" in hit["snippet"] and "«FAILING»" in hit["snippet"]
    assert [h["incident_id"] for h in db.search("CAFÉ")] == [cafe]
    (hit,) = db.search("restart pod zurich")
    assert hit["incident_id"] == pods and hit["kind"] == "note"
    assert "«restarted»" in hit["snippet"] and "«Zürich»" in hit["snippet"]


def test_search_ranks_by_bm25_and_gives_one_hit_per_incident(db: Db) -> None:
    for n in range(10):  # bm25 tells little in a corpus where every other document matches
        db.open(f"f{n}", f"Filler {n}", labels(f"Filler{n}", "other"))
    strong = db.open("g1", "Kafka lag on orders", labels("KafkaLag", "orders"))
    weak = db.open("g2", "Checkout errors", labels("HighErrorRate", "checkout"))
    for text in ("kafka consumer stuck", "kafka rebalance storm", "restarted kafka brokers"):
        db.note(strong, text)
    db.note(weak, "a long note that mentions kafka once among many other words about checkout")
    db.index()
    hits = db.search("kafka")
    assert [h["incident_id"] for h in hits] == [strong, weak]
    assert hits[0]["score"] > hits[1]["score"] > 0
    assert len(db.search("kafka", limit=1)) == 1
    # Every word must be in one document; OR takes either.
    assert [h["incident_id"] for h in db.search("kafka checkout")] == [weak]
    assert {h["incident_id"] for h in db.search("brokers OR checkout")} == {strong, weak}


def test_search_words_operators_and_prefixes(db: Db) -> None:
    a = db.open("g1", "Disk full on db-1", labels("DiskFull", "db"))
    b = db.open("g2", "Disk slow on db-2", labels("DiskSlow", "db"))
    db.note(a, "the node:exporter said 100% at 03:00")
    db.index()
    assert {h["incident_id"] for h in db.search("disk")} == {a, b}
    assert [h["incident_id"] for h in db.search("disk -full")] == [b]
    assert [h["incident_id"] for h in db.search("disk NOT full")] == [b]
    assert [h["incident_id"] for h in db.search('"disk full"')] == [a]
    assert [h["incident_id"] for h in db.search('-"disk full" disk')] == [b]
    assert {h["incident_id"] for h in db.search("disksl*")} == {b}
    # A colon is no column filter: node:exporter is the phrase "node exporter".
    assert [h["incident_id"] for h in db.search("node:exporter")] == [a]
    assert [h["incident_id"] for h in db.search("03:00")] == [a]


@pytest.mark.parametrize(
    "text",
    [
        '"',
        '"""',
        'say "hi',
        "-x",
        "a:b",
        "*",
        "**a",
        "a*b*",
        "col:(a OR b)",
        "NEAR(a b)",
        "^start",
        "a + b",
        "OR",
        "AND OR NOT",
        "a OR",
        "OR a",
        "NOT a",
        "'; DROP TABLE incidents; --",
        "\x00\x1b[2J",
        "{a b}: c",
        "ünïcödé Straße",
        "日本語",
        "x" * 500,
    ],
)
def test_nothing_a_person_types_is_an_sql_error(db: Db, text: str) -> None:
    db.open("g1", "a b c", labels("A", "b"))
    db.index()
    try:
        found = db.search(text)
    except QueryError as exc:
        assert str(exc)  # a message for the 400
    else:
        assert isinstance(found, list)


@pytest.mark.parametrize("text", ["", "   ", "*", "-x", '""', "- -", "NOT x", ":::"])
def test_nothing_to_look_for_is_a_query_error(text: str) -> None:
    with pytest.raises(QueryError):
        fts_query(text)


def test_the_query_quotes_every_word() -> None:
    """FTS5's syntax (PostgreSQL's tsquery: tests/store/test_search_pg.py)."""
    assert (
        fts_query('a:b -c "d e" foo* OR g') == '(("a:b") AND ("d e") AND ("foo"* OR "g")) NOT ("c")'
    )
    assert fts_query('it\'s "x""y"') == '("it\'s") AND ("x") AND ("y")'
    assert fts_query('say "hi') == '("say") AND ("hi")'
    assert fts_query('x"y') == '("x") AND ("y")'
    assert fts_query("a*") == '("a")'  # a one-letter prefix is a word


def test_a_search_that_takes_too_long_is_a_query_error(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bridge.store.search.PROGRESS_EVERY", 1)
    db.open("g1", "anything", labels("A", "b"))
    db.index()
    with pytest.raises(QueryError, match="rarer words"):
        search(db.conn, "anything", budget_s=-1)
    assert db.search("anything")  # the connection is usable again


# --- seen this before --------------------------------------------------------------------------


def test_a_second_incident_with_the_same_alert_and_service_links_the_first(db: Db) -> None:
    first = db.open("g1", "Checkout errors", labels("HighErrorRate", "checkout"))
    db.conn.execute("UPDATE incidents SET status = 'resolved' WHERE id = ?", (first,))
    unrelated = db.open("g2", "Disk full", labels("DiskFull", "db"))
    db.index()
    assert db.link() == []  # nothing before them is like them
    second = db.open("g3", "Checkout failing", labels("HighErrorRate", "checkout", instance="w2"))
    db.index()
    assert db.link(url=lambda i: f"https://bridge.example/incidents/{i}") == [second]
    ((actor, text, data),) = db.rows(
        "SELECT actor, text, data FROM timeline WHERE incident_id = ? AND kind = ?",
        second,
        "similar_incidents",
    )
    assert actor == "incident-bridge"
    assert text.startswith(f"Seen before: #{first} Checkout errors (resolved, opened 2026-11-27)")
    assert f"https://bridge.example/incidents/{first}" in text
    (listed,) = json.loads(data)["similar"]
    assert listed["id"] == first and listed["reason"] == "same_alert_and_service"
    assert listed["url"] == f"https://bridge.example/incidents/{first}"
    assert listed["postmortem_url"] is None and listed["status"] == "resolved"
    assert listed["score"] is None and listed["title"] == "Checkout errors"
    assert listed["opened_at"].startswith("2026-11-27T")
    assert unrelated != listed["id"]
    # The entry is not itself indexed: a word of the first's title finds the first only.
    db.index()
    assert [h["incident_id"] for h in db.search("errors")] == [first]
    # Nothing is looked up twice.
    assert db.link() == []


def test_similar_text_fills_up_after_the_same_alert_and_service(db: Db) -> None:
    same = db.open("g1", "Payments down", labels("PaymentsDown", "payments"))
    text_only = db.open(
        "g2", "Payments gateway timeouts", labels("GatewayTimeout", "gateway", provider="stripe")
    )
    noise = [db.open(f"n{n}", f"Noise {n}", labels(f"Noise{n}", "other")) for n in range(3)]
    db.index()
    db.link()
    new = db.open(
        "g3", "Payments down again", labels("PaymentsDown", "payments", provider="stripe")
    )
    db.index()
    found = find_similar(db.conn, new)
    assert [(c.id, c.reason) for c in found] == [
        (same, "same_alert_and_service"),
        (text_only, "similar_text"),
    ]
    assert found[1].score is not None and found[1].score > 0
    assert not set(noise) & {c.id for c in found}


def test_similar_prefers_the_ones_that_ended_then_the_newest_and_keeps_five(db: Db) -> None:
    ids = [db.open(f"g{n}", "Queue backlog", labels("QueueBacklog", "jobs")) for n in range(8)]
    db.conn.execute("UPDATE incidents SET status = 'closed' WHERE id = ?", (ids[1],))
    db.index()
    db.link()
    new = db.open("g9", "Queue backlog", labels("QueueBacklog", "jobs"))
    db.index()
    found = [c.id for c in find_similar(db.conn, new)]
    assert found == [ids[1], ids[7], ids[6], ids[5], ids[4]]


def test_words_most_past_incidents_share_are_not_asked_for(db: Db) -> None:
    for n in range(6):
        db.open(f"g{n}", f"Common words {n}", labels(f"Alert{n}", f"svc{n}", job="node"))
    rare = db.open("r", "Rare flux capacitor", labels("Flux", "timeline", job="node"))
    db.index()
    db.link()
    new = db.open("new", "flux", labels("Other", "elsewhere", job="node", env="prod"))
    db.index()
    # "node" is in every incident: above the threshold it is not asked for; "flux" is rare.
    assert [c.id for c in find_similar(db.conn, new, max_df=3)] == [rare]
    # With no threshold to speak of, "node" brings the others too.
    assert len(find_similar(db.conn, new, max_df=1000)) == 5


def test_similar_text_ranks_a_rarer_shared_word_first(db: Db) -> None:
    rare = db.open("r", "Flux capacitor drift", labels("FluxDrift", "timeline"))
    common = [
        db.open(f"g{n}", f"Exporter {n} stale", labels(f"Stale{n}", f"svc{n}", job="node"))
        for n in range(6)
    ]
    db.index()
    db.link()
    new = db.open("new", "flux", labels("Other", "elsewhere", job="node"))
    db.index()
    found = find_similar(db.conn, new)
    assert found[0].id == rare and {c.id for c in found[1:]} <= set(common)
    assert len(found) == 5
    assert found[0].score is not None and found[1].score is not None
    assert found[0].score > found[1].score > 0


def test_facets_are_not_compared(db: Db) -> None:
    db.open("g1", "Checkout errors", labels("HighErrorRate", "checkout", env="prod"))
    db.index()
    db.link()
    # The same severity and environment, nothing else: not similar.
    new = db.open("g2", "Disk full", labels("DiskFull", "db", env="prod"))
    db.index()
    assert find_similar(db.conn, new) == []


def test_an_incident_with_nothing_similar_gets_no_entry(db: Db) -> None:
    db.open("g1", "Something", labels("A", "x"))
    db.index()
    db.link()
    assert db.rows("SELECT count(*) FROM timeline WHERE kind = 'similar_incidents'")[0][0] == 0
    assert marks(db.conn).similar == marks(db.conn).incidents


def test_similar_terms_rebuilt_after_a_copy_find_the_same(db: Db) -> None:
    ids = [
        db.open("g1", "Payments gateway timeouts", labels("GatewayTimeout", "gateway")),
        db.open("g2", "Payments down", labels("PaymentsDown", "payments", provider="stripe")),
        db.open("g3", "Disk full", labels("DiskFull", "db")),
    ]
    db.index()
    new = db.open("g4", "Stripe payments slow", labels("Slow", "api", provider="stripe"))
    db.index()
    before = find_similar(db.conn, new)
    assert {c.id for c in before} == set(ids[:2])
    db.forget_similar_terms()
    assert find_similar(db.conn, new) == []
    with db.transaction():
        assert rebuild_similar_terms(db.conn) == 4
    assert find_similar(db.conn, new) == before


async def test_the_store_functions_run_in_the_writer_and_the_readers(
    any_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bridge.store.search.PROGRESS_EVERY", 1)  # SQLite looks at every step
    assert await any_store.read(lambda conn: search(conn, "nothing")) == []
    execute(
        any_store,
        "INSERT INTO incidents (id, key, title, severity, status, started_at, opened_at) "
        "VALUES (1, 'k', 'Kafka lag on orders', 'sev2', 'triggered', 1, 1)",
    )
    indexed = await any_store.write(index_pending)
    assert (indexed.incidents, indexed.more) == (1, False)
    await any_store.write(lambda conn: index_document(conn, 1, "postmortem", "pm", "a broker"))
    hits = await any_store.read(lambda conn: search(conn, "kafka"))
    assert [(h["incident_id"], h["kind"]) for h in hits] == [(1, "incident")]
    # a search past its budget leaves the reader's connection as it was
    with pytest.raises(QueryError):
        await any_store.read(lambda conn: search(conn, "kafka", budget_s=-1))
    hits = await any_store.read(lambda conn: search(conn, "broker"))
    assert [(h["kind"], h["snippet"]) for h in hits] == [("postmortem", "a «broker»")]
