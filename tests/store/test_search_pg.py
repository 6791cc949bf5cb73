"""Search on PostgreSQL, what is its own (tests/store/test_search.py runs the rest on both
backends): the tsquery written from what a person typed, that nothing typed is anything but a
QueryError, stop words, snippets cut from long documents, the budget as the server's
statement_timeout, and rows inserted as text only (a copy)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridge.core.dburl import DatabaseUrl
from bridge.store import new_store
from bridge.store.errors import QueryError, StoreError
from bridge.store.postgres import schema
from bridge.store.postgres.fts import PG_FTS
from bridge.store.search import index_document, search
from tests.pgcluster import Cluster
from tests.store.test_search import PgDb, labels


@pytest.fixture
def db(pg_url: str) -> Iterator[PgDb]:
    d = PgDb(pg_url)
    yield d
    d.close()


def test_the_tsquery_quotes_every_word_and_folds_accents() -> None:
    assert PG_FTS.query('a:b -c "d e" foo* OR g') == (
        "(('a:b') & ('d e') & ('foo':* | 'g')) & !('c')"
    )
    assert PG_FTS.query("it's x\\y NOT \"z\x00'\"") == r"(('it''s') & ('x\\y')) & !('z''')"
    assert PG_FTS.query("Café* ÉTÉ") == "('Cafe':*) & ('ETE')"
    with pytest.raises(QueryError):
        PG_FTS.query("-only -excluded")


# What to_tsquery reads as syntax, and what PostgreSQL's text refuses (NUL).
HOSTILE = st.one_of(
    st.lists(
        st.sampled_from([*"ab \"'\\:*()&|!<->-09\x00é日", " OR ", " NOT ", " AND "]),
        max_size=40,
    ).map("".join),
    st.text(max_size=40),
)


def test_nothing_typed_is_anything_but_a_query_error(db: PgDb) -> None:
    incident = db.open("g1", "a b c", labels("A", "b"))
    index_document(db.conn, incident, "postmortem", "pm", "a:b (c) d's e\\f 1<->2 x!y")
    db.index()

    @settings(
        max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(HOSTILE)
    @example("x" * 10_000)
    @example("\x00")
    @example("'\\'")
    @example("a:* & !b | (c <-> d)")
    @example("(((((")
    @example("'; DROP TABLE incidents; --")
    @example("x" * 300 + ":" + "(" * 300)
    def typed(text: str) -> None:
        try:
            found = search(db.conn, text)
        except QueryError as exc:
            assert str(exc)
        else:
            assert isinstance(found, list)

    typed()
    # the connection is as it was
    assert [h["incident_id"] for h in search(db.conn, "a:b")] == [incident]


def test_stop_words_are_ignored_and_never_match_everything(db: PgDb) -> None:
    cafe = db.open("g1", "Café checkout failing", labels("CheckoutFailing", "checkout"))
    other = db.open("g2", "Queue backlog", labels("QueueBacklog", "jobs"))
    db.note(other, "restarted the pods")
    db.index()
    assert db.search("the") == []
    # nothing wanted is left: not "every document without cafe"
    assert db.search("the -cafe") == []
    assert [h["incident_id"] for h in db.search("the cafe")] == [cafe]
    assert [h["incident_id"] for h in db.search('"restarted the pods"')] == [other]


def test_a_long_document_is_cut_around_the_words_found(db: PgDb) -> None:
    incident = db.open("g1", "Checkout errors", labels("HighErrorRate", "checkout"))
    words = [f"filler{n}" for n in range(60)]
    text = " ".join([*words[:30], "the", "Zürich", "flamegraph", *words[30:]])
    index_document(db.conn, incident, "postmortem", "pm", text)
    (hit,) = db.search("zurich")
    snippet = hit["snippet"]
    assert snippet.startswith("…") and snippet.endswith("…")
    assert "«Zürich» flamegraph" in snippet
    assert len(snippet.split()) <= 16


def test_a_search_past_its_budget_is_stopped_by_the_server_and_the_read_goes_on(
    db: PgDb,
) -> None:
    db.open("g1", "anything", labels("A", "b"))
    db.raw.execute(
        "INSERT INTO search (incident_id, kind, ref, body) "
        "SELECT 1, 'note', g::text, 'anything at all number ' || g FROM generate_series(1, 100000) g"
    )
    db.raw.autocommit = False  # as the store's readers: one transaction per read
    db.raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    db.raw.execute("SET LOCAL statement_timeout = '30s'")
    with pytest.raises(QueryError, match="rarer words"):
        search(db.conn, "anything", budget_s=0.01)
    # still the same transaction, usable, with its own statement_timeout back
    assert db.raw.execute("SHOW statement_timeout").fetchone() == ("30s",)
    assert len(search(db.conn, "number", limit=3)) == 1
    assert db.raw.execute("SHOW statement_timeout").fetchone() == ("30s",)
    # the store's own statement_timeout is never raised by a search's budget
    db.raw.execute("SET LOCAL statement_timeout = '5ms'")
    with pytest.raises(QueryError, match="rarer words"):
        search(db.conn, "anything")
    assert db.raw.execute("SHOW statement_timeout").fetchone() == ("5ms",)
    db.raw.rollback()


def test_rows_inserted_as_text_with_their_ids_are_searchable(db: PgDb) -> None:
    """A copy inserts SQLite's rows, rowid as id, text only: the index follows."""
    incident = db.open("g1", "Checkout errors", labels("HighErrorRate", "checkout"))
    db.conn.execute(
        "INSERT INTO search (id, incident_id, kind, ref, body) VALUES (500, ?, 'note', '7', ?)",
        (incident, "Rolled back after the flamegraph"),
    )
    db.conn.execute(
        "INSERT INTO search_docs (incident_id, kind, ref, doc) VALUES (?, 'postmortem', 'p', 500)",
        (incident,),
    )
    (hit,) = db.search("rolling flamegraph")
    assert (hit["incident_id"], hit["ref"]) == (incident, "7")
    # as db copy sets every identity after the rows
    db.raw.execute("SELECT setval(pg_get_serial_sequence('search', 'id'), 500)")
    index_document(db.conn, incident, "postmortem", "p", "a pool leak")  # replaces id 500
    assert db.search("flamegraph") == []
    assert db.rows("SELECT id FROM search") == [(501,)]


def test_snippets_keep_the_documents_own_characters(db: PgDb) -> None:
    incident = db.open("g1", "Dessert menu", labels("Menu", "kitchen"))
    # a decomposed accent (e + U+0301), precomposed ones, Hangul, tags (kept: the whole short
    # document is the snippet)
    body = "Cafe\u0301 <b>crème</b> brûlée 한국어 ÅNGSTRÖM"
    index_document(db.conn, incident, "postmortem", "pm", body)
    (hit,) = db.search("cafe creme angstrom")
    assert hit["snippet"] == "«Cafe\u0301» <b>«crème»</b> brûlée 한국어 «ÅNGSTRÖM»"
    (hit,) = db.search("한국어")
    assert "«한국어»" in hit["snippet"]


def test_a_database_that_is_not_utf8_is_refused_untouched(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    url = pg_cluster.new_database()
    name = url.rsplit("/", 1)[1]
    pg_cluster.sql(f"DROP DATABASE {name}")
    pg_cluster.sql(
        f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
    )
    store = new_store(tmp_path / "unused", url=DatabaseUrl.parse(url))
    with pytest.raises(StoreError, match=r"encoding is SQL_ASCII: .* needs UTF8"):
        store.open()
    store.close()
    with psycopg.connect(url) as raw:
        assert schema.user_tables(raw) == []  # refused before any migration: untouched
