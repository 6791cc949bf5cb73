"""Full-text search on PostgreSQL: the ``Fts`` of ``store/search.py`` over PostgreSQL's own text
search, with no extension (the role may not be allowed to create one).

Tables (``create_search_tables``, in migration ``0008_search``):

- ``search``: one row per document, SQLite's columns (``incident_id``, ``kind``, ``ref``,
  ``body``) and ``id``, the document's id (SQLite's rowid, what ``search_docs.doc`` keeps);
- ``similar_terms``: per incident, its ``title`` and compared label values (``labels``), kept
  as text (SQLite's table is contentless);
- each has ``terms``, a tsvector column GENERATED ALWAYS from the text (STORED), with a GIN
  index: a row is inserted as text only, by the indexer or by a copy.

The text search configuration is ``english`` (the Snowball English stemmer and its stop words),
as SQLite's ``porter unicode61 remove_diacritics 2`` stems: "restart pod" finds "restarted the
pods". Diacritics are folded without ``unaccent``: the text is decomposed (``normalize(...,
NFD)``, built in since PostgreSQL 13, on a UTF8 database) and its combining marks removed
(``regexp_replace`` of ``MARKS``), all immutable, so a generated column can do it; a query's
words get the same fold in Python (``fold``), so "cafe" finds "Café" and "Zürich" "zurich". (A
``translate()`` table of accented letters was measured 17 times slower than the tsvector itself
on accented text; this costs about half of it, whatever the text.) Letters that do not decompose
(ß, ø, æ) stay as they are. Case is folded by ``to_tsvector`` (the database's LC_CTYPE decides
for letters beyond ASCII).

A query is built from ``search.parse_query`` (the same reading of what a person typed as on
SQLite) as ``to_tsquery`` text in which every word and phrase is a quoted string (quotes and
backslashes escaped, NUL dropped): words are ANDed, ``OR`` becomes ``|``, a phrase or a word
with punctuation (``node:exporter``) is a ``<->`` phrase, ``word*`` is ``:*``, excluded terms are
``!``. Nothing typed can be a syntax error. Stop words ("the", "on") are ignored: a query of only
stop words finds nothing (SQLite has no stop words).

Ranking: ``ts_rank_cd`` normalized by the document's length (1 + log of its length), not bm25:
PostgreSQL's ranking knows no word's rarity, so the order of equally good hits can differ from
SQLite's. Snippets come from ``ts_headline`` (one fragment of about ``SNIPPET_TOKENS`` words,
the whole document when it is that short), with the words found in «» and … where the document
is cut; the text is the document's own (its accents put back after the fold), not escaped, as on
SQLite (but ``ts_headline`` may leave HTML-like tags out of a fragment). A search is bounded by
``statement_timeout`` set for its own statements (inside a savepoint, so the reader's
transaction stays usable after a search that took too long).

"Seen this before" counts, as on SQLite, how many past incidents have each word (a GIN lookup,
at most ``max_df + 1`` rows) and keeps the rare ones; the candidates are ranked by the sum of
the words' inverse document frequency (bm25's idf of the counts just made) over the words each
has: the same candidates as SQLite, ordered by rarity of the shared words without bm25's length
and frequency terms.

A copy of a SQLite database (``db copy``, ``store/postgres/copy.py``) inserts ``search`` rows
with SQLite's rowid as ``id`` and no tsvector, then sets the identity past the largest id;
SQLite's ``similar_terms`` holds no text to copy, so it is derived again from the copied
incidents and alerts by ``search.rebuild_similar_terms``.
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
from collections.abc import Sequence
from typing import Any, Protocol

import psycopg

from bridge.store.errors import QueryError, StoreError
from bridge.store.incidents import together
from bridge.store.search import (
    INCIDENT,
    SNIPPET_CLOSE,
    SNIPPET_ELLIPSIS,
    SNIPPET_OPEN,
    SNIPPET_TOKENS,
    Fts,
    Hit,
    IncidentDoc,
    Term,
    parse_query,
)


class PgConnection(Protocol):
    """What this module needs of ``connection.PgConnection`` (which imports this module): its
    psycopg connection."""

    raw: psycopg.Connection[Any]


CONFIG = "english"
# The combining marks a canonical decomposition (NFD) leaves after a base letter, removed: the
# Combining Diacritical Marks and their Extended, Supplement, for Symbols and Half Marks blocks.
# One pattern for Python's re and PostgreSQL's regular expressions (both read \uXXXX).
MARKS = r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]"
_MARKS_RE = re.compile(MARKS)


def fold(text: str) -> str:
    """``text`` without diacritics, as the schema's generated columns fold it."""
    return _MARKS_RE.sub("", unicodedata.normalize("NFD", text))


def _folded_sql(expression: str) -> str:
    # E'' so that the backslashes reach the regular expression whatever
    # standard_conforming_strings says
    pattern = MARKS.replace("\\", "\\\\")
    return f"regexp_replace(normalize({expression}, NFD), E'{pattern}', '', 'g')"


def _tsvector_sql(expression: str) -> str:
    return f"to_tsvector('{CONFIG}'::regconfig, {_folded_sql(expression)})"


_TITLE_AND_LABELS = "title || ' ' || labels"


def require_utf8(raw: psycopg.Connection[Any]) -> None:
    """``StoreError`` unless the database is UTF8 (``PgStore.open`` asks before any migration,
    so that a database of another encoding is refused untouched)."""
    row = raw.execute("SELECT current_setting('server_encoding')").fetchone()
    value = row[0] if row else b"unknown"
    # psycopg gives an SQL_ASCII database's text as bytes
    encoding = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    if encoding != "UTF8":
        raise StoreError(
            f"the database's encoding is {encoding}: incident-bridge's search needs UTF8 "
            "(CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)"
        )


def create_search_tables(conn: PgConnection) -> None:
    """The two full-text tables of migration ``0008_search`` (the plain ones are the schema's).
    ``StoreError`` on a database that is not UTF8: the fold's ``normalize`` would fail at every
    insert (the indexer stuck), so the schema is refused at once."""
    require_utf8(conn.raw)
    for statement in (
        "CREATE TABLE search (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
        "incident_id BIGINT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL, body TEXT NOT NULL, "
        f"terms tsvector GENERATED ALWAYS AS ({_tsvector_sql('body')}) STORED)",
        "CREATE INDEX search_terms ON search USING gin (terms)",
        "CREATE TABLE similar_terms (incident_id BIGINT PRIMARY KEY, title TEXT NOT NULL, "
        "labels TEXT NOT NULL, terms tsvector GENERATED ALWAYS AS "
        f"({_tsvector_sql(_TITLE_AND_LABELS)}) STORED)",
        "CREATE INDEX similar_terms_terms ON similar_terms USING gin (terms)",
    ):
        conn.raw.execute(statement)


def _clean(text: str) -> str:
    """PostgreSQL's text holds no NUL."""
    return text.replace("\x00", "")


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column: the arrays an ``unnest(...)`` insert takes."""
    return [[row[k] for row in rows] for k in range(width)]


def _quoted(term: Term) -> str:
    """``term`` as one quoted string of ``to_tsquery``: its words (a phrase when there are
    several), folded; a prefix with ``:*``."""
    text = fold(_clean(term.text)).replace("\\", "\\\\").replace("'", "''")
    return f"'{text}'" + (":*" if term.prefix else "")


def query_parts(text: str) -> tuple[str, str]:
    """What a person typed as two ``to_tsquery`` texts: what must match, and what must not
    (empty for nothing). ``QueryError`` as ``search.parse_query`` raises it."""
    parsed = parse_query(text)
    wanted = " & ".join(f"({' | '.join(map(_quoted, g))})" for g in parsed.groups)
    return wanted, " | ".join(map(_quoted, parsed.excluded))


def _unfold(body: str, headline: str) -> str:
    """``headline`` (``ts_headline`` of the folded ``body``) in the body's own characters, with
    … where it cuts the body. The headline is the folded text with markers (and HTML-like tags
    as spaces): walked along the body folded a character at a time, each character found is
    taken from the body, with the combining marks that followed it there."""
    folded = fold(body)
    pieces: Sequence[str] = body  # most bodies fold to themselves: one character each
    owner: Sequence[int] = range(len(body))
    if folded != body:
        pieces = [fold(c) for c in body]
        folded = "".join(pieces)
        owner = [k for k, piece in enumerate(pieces) for _ in piece]
    plain = headline.replace(SNIPPET_OPEN, "").replace(SNIPPET_CLOSE, "")
    j = max(folded.find(plain), 0)
    first: int | None = None
    out: list[str] = []
    for c in headline:
        if j < len(folded) and folded[j] == c:
            k = j
        elif c in (SNIPPET_OPEN, SNIPPET_CLOSE) or c.isspace():
            out.append(c)
            continue
        else:
            k = folded.find(c, j)
            if k < 0:
                out.append(c)
                continue
        j = k + 1
        if k > 0 and owner[k - 1] == owner[k]:
            continue  # the rest of one character's fold (a syllable's jamo)
        first = k if first is None else first
        source = owner[k]
        end = source + 1
        while end < len(body) and not pieces[end]:
            end += 1  # the marks that were folded away
        out.append(body[source:end])
    if first is None:
        return headline
    before = SNIPPET_ELLIPSIS if folded[:first].strip() else ""
    after = SNIPPET_ELLIPSIS if folded[j:].strip() else ""
    return before + "".join(out) + after


def _score(rank: float) -> float:
    return float(f"{rank:.4g}")


_SHORT = f"HighlightAll=true, StartSel={SNIPPET_OPEN}, StopSel={SNIPPET_CLOSE}"
_FRAGMENT = (
    f"MaxFragments=1, MaxWords={SNIPPET_TOKENS}, MinWords={SNIPPET_TOKENS // 2}, "
    f"StartSel={SNIPPET_OPEN}, StopSel={SNIPPET_CLOSE}"
)
# what a search's statements match: the wanted terms and none of the excluded ones
_MATCH = f"(to_tsquery('{CONFIG}', %(wanted)s) && !! to_tsquery('{CONFIG}', %(excluded)s))"


class PgFts:
    """PostgreSQL's text search as ``store/search.py``'s ``Fts``."""

    def add(self, conn: Any, incident_id: int, kind: str, ref: str, text: str) -> int:
        row = conn.raw.execute(
            "INSERT INTO search (incident_id, kind, ref, body) VALUES (%s, %s, %s, %s) "
            "RETURNING id",
            (incident_id, kind, ref, _clean(text)),
        ).fetchone()
        return int(row[0])

    def add_many(self, conn: Any, docs: Sequence[tuple[int, str, str, str]]) -> None:
        if not docs:
            return
        # One statement for the whole batch, its rows as arrays: a row costs the server and
        # the client less than one Bind/Execute each (docs/performance.md)
        conn.raw.execute(
            "INSERT INTO search (incident_id, kind, ref, body) "
            "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[])",
            _columns([(i, kind, ref, _clean(text)) for i, kind, ref, text in docs], 4),
        )

    def first_labels(self, conn: Any, ids: Sequence[int], limit: int) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        if not ids:
            return out
        # Each incident's own walk of its (incident_id, starts_at, fingerprint) index, bounded
        # by the limit (an incident of a storm may hold thousands of alerts), all in one
        # statement: one round trip for the batch.
        rows = conn.raw.execute(
            "SELECT i.id, f.labels FROM unnest(%s::bigint[]) AS i (id) CROSS JOIN LATERAL "
            "(SELECT a.labels, ia.starts_at, ia.fingerprint FROM incident_alerts ia "
            "JOIN alerts a ON a.fingerprint = ia.fingerprint WHERE ia.incident_id = i.id "
            "ORDER BY ia.starts_at, ia.fingerprint LIMIT %s) AS f "
            "ORDER BY i.id, f.starts_at, f.fingerprint",
            (list(ids), limit),
        ).fetchall()
        for incident_id, labels in rows:
            out.setdefault(int(incident_id), []).append(labels)
        return out

    def add_incidents(self, conn: Any, docs: Sequence[IncidentDoc]) -> None:
        if not docs:
            return
        raw: psycopg.Connection[Any] = conn.raw
        keys = [(name, svc, d.incident_id) for d in docs for name, svc in d.keys]
        # One statement per table for the whole batch, the three sent together (one round
        # trip, in the pipeline of the indexer's writes): per incident, they were five
        # statements.
        with together(conn):
            raw.execute(
                "WITH added AS (INSERT INTO search (incident_id, kind, ref, body) "
                "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[]) "
                "RETURNING id, incident_id, kind, ref) "
                "INSERT INTO search_docs (incident_id, kind, ref, doc) "
                "SELECT incident_id, kind, ref, id FROM added",
                _columns(
                    [(d.incident_id, INCIDENT, str(d.incident_id), _clean(d.text)) for d in docs],
                    4,
                ),
            )
            raw.execute(
                "INSERT INTO similar_terms (incident_id, title, labels) "
                "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[])",
                _columns([(d.incident_id, _clean(d.title), _clean(d.labels)) for d in docs], 3),
            )
            if keys:
                raw.execute(
                    "INSERT INTO similar_keys (alertname, service, incident_id) "
                    "SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[]) "
                    "ON CONFLICT DO NOTHING",
                    _columns([(_clean(n), _clean(s), i) for n, s, i in keys], 3),
                )

    def delete(self, conn: Any, doc: int) -> None:
        conn.raw.execute("DELETE FROM search WHERE id = %s", (doc,))

    def add_similar(self, conn: Any, incident_id: int, title: str, labels: str) -> None:
        conn.raw.execute(
            "INSERT INTO similar_terms (incident_id, title, labels) VALUES (%s, %s, %s)",
            (incident_id, _clean(title), _clean(labels)),
        )

    def similar_count(self, conn: Any, term: str, before: int, cap: int) -> int:
        row = conn.raw.execute(
            "SELECT count(*) FROM (SELECT 1 FROM similar_terms "
            f"WHERE terms @@ to_tsquery('{CONFIG}', %s) AND incident_id < %s LIMIT %s) AS t",
            (_quoted(Term(term)), before, cap),
        ).fetchone()
        return int(row[0])

    def similar_ranked(
        self, conn: Any, terms: Sequence[tuple[str, int]], before: int, limit: int
    ) -> dict[int, float]:
        # bm25's idf of each word, from the counts the caller made: a rarer word weighs more
        past = max(before - 1, 1)
        args: list[Any] = []
        parts = []
        for term, df in terms:
            parts.append(f"CASE WHEN terms @@ to_tsquery('{CONFIG}', %s) THEN %s ELSE 0 END")
            args += [_quoted(Term(term)), math.log(1 + max(past - df, 0.0) / (df + 0.5))]
        either = " | ".join(_quoted(Term(term)) for term, _ in terms)
        rows = conn.raw.execute(
            f"SELECT incident_id, {' + '.join(parts)} AS score FROM similar_terms "
            f"WHERE terms @@ to_tsquery('{CONFIG}', %s) AND incident_id < %s "
            "ORDER BY score DESC, incident_id DESC LIMIT %s",
            (*args, either, before, limit),
        ).fetchall()
        return {int(i): _score(float(score)) for i, score in rows}

    def query(self, text: str) -> str:
        wanted, excluded = query_parts(text)
        return f"({wanted}) & !({excluded})" if excluded else wanted

    def matches(self, conn: Any, text: str, limit: int, budget_s: float) -> list[Hit]:
        wanted, excluded = query_parts(text)
        raw: psycopg.Connection[Any] = conn.raw
        deadline = time.monotonic() + budget_s
        # The store's own statement_timeout (ms, 0 for none), which the search's never exceeds.
        # This first statement also opens the reader's transaction, so that the block below is
        # a savepoint in it.
        row = raw.execute(
            "SELECT setting FROM pg_settings WHERE name = 'statement_timeout'"
        ).fetchone()
        before = int(row[0]) if row else 0
        try:
            with raw.transaction():
                ranked = self._ranked(raw, wanted, excluded, limit, (deadline, before))
                hits = self._snippets(raw, ranked, wanted, (deadline, before))
                raw.execute("SELECT set_config('statement_timeout', %s, true)", (str(before),))
                return hits
        except psycopg.errors.QueryCanceled:
            raise QueryError(
                "this search matches too much to rank in time: use rarer words"
            ) from None
        except (psycopg.errors.SyntaxError, psycopg.errors.DataError) as exc:
            # Nothing typed should get here (every word is quoted): said, never a 500.
            raise QueryError(f"cannot search for this: {str(exc).strip()}") from None

    def _bound(self, raw: psycopg.Connection[Any], bound: tuple[float, int]) -> None:
        """The next statement gets what is left of the search's time (``bound``: its
        deadline, and the store's statement_timeout in ms)."""
        deadline, store_ms = bound
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            raise QueryError("this search matches too much to rank in time: use rarer words")
        if store_ms > 0:
            left_ms = min(left_ms, store_ms)
        raw.execute("SELECT set_config('statement_timeout', %s, true)", (str(left_ms),))

    def _ranked(
        self,
        raw: psycopg.Connection[Any],
        wanted: str,
        excluded: str,
        limit: int,
        bound: tuple[float, int],
    ) -> list[tuple[int, Hit]]:
        """The best document of each of the best incidents (its id, and the hit without its
        snippet), read by rank in a growing window until it holds ``limit`` incidents or every
        match (as on SQLite)."""
        window = limit * 4
        args = {"wanted": wanted, "excluded": excluded}
        while True:
            self._bound(raw, bound)
            rows = raw.execute(
                "SELECT id, incident_id, kind, ref, "
                f"ts_rank_cd(terms, to_tsquery('{CONFIG}', %(wanted)s), 1) AS r FROM search "
                f"WHERE numnode(to_tsquery('{CONFIG}', %(wanted)s)) > 0 AND terms @@ {_MATCH} "
                "ORDER BY r DESC, id DESC LIMIT %(window)s",
                {**args, "window": window},
            ).fetchall()
            best: dict[int, tuple[int, Hit]] = {}
            for doc, incident_id, kind, ref, rank in rows:
                if incident_id not in best:
                    best[incident_id] = (int(doc), Hit(incident_id, kind, ref, "", _score(rank)))
            if len(best) >= limit or len(rows) < window or window >= 64 * limit:
                return list(best.values())[:limit]
            window *= 4

    def _snippets(
        self,
        raw: psycopg.Connection[Any],
        hits: list[tuple[int, Hit]],
        wanted: str,
        bound: tuple[float, int],
    ) -> list[Hit]:
        """The hits with their documents' snippets."""
        if not hits:
            return []
        self._bound(raw, bound)
        rows = raw.execute(
            f"SELECT id, body, ts_headline('{CONFIG}', {_folded_sql('body')}, "
            f"to_tsquery('{CONFIG}', %(wanted)s), CASE WHEN "
            "coalesce(array_length(regexp_split_to_array(btrim(body), '\\s+'), 1), 0) "
            "<= %(words)s THEN %(short)s ELSE %(fragment)s END) "
            "FROM search WHERE id = ANY(%(ids)s)",
            {
                "wanted": wanted,
                "words": SNIPPET_TOKENS,
                "short": _SHORT,
                "fragment": _FRAGMENT,
                "ids": [doc for doc, _ in hits],
            },
        ).fetchall()
        snippets = {int(doc): _unfold(body, headline) for doc, body, headline in rows}
        return [
            Hit(h.incident_id, h.kind, h.ref, snippets.get(doc, ""), h.score) for doc, h in hits
        ]


PG_FTS: Fts = PgFts()
