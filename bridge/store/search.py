"""Full-text search and "seen this before": the store's side (migration ``0008_search``).

Nothing here runs on a webhook's path. The indexer loop (``bridge/indexer.py``) calls:

- ``index_pending`` in the writer: the incidents and timeline entries past the watermarks, a
  bounded batch per transaction, into ``search`` (what people search) and, for incidents,
  ``similar_terms`` and ``similar_keys`` (what a new incident is compared with);
- ``pending_similar`` and ``look_up_similar`` on a reader: the incidents indexed but not yet
  compared, and their similar past incidents (``find_similar``), off the writer thread;
- ``record_similar`` in the writer: one ``similar_incidents`` timeline entry per incident that
  has any (the list in its data) and its outbox rows (the incident's kept tiers, as a person's
  action does), and the watermark.

``index_document`` is the one way to put any other document in the index, with replace
semantics (``store/postmortem.record_publication`` indexes a published postmortem with it, and
``postmortem_url`` gives "seen this before" the link to it). ``search`` answers
``GET /api/v1/search``; ``fts_query`` turns what a person typed into a safe FTS5 query.

Everything here is shared by the two backends but what only a full-text engine does: adding and
deleting a document, the similar-terms table and its lookups, the ranked search with snippets,
and the engine's query language. That is the ``Fts`` protocol, chosen per connection
(``engine``): SQLite's FTS5 below (``SQLITE_FTS``), PostgreSQL's text search in
``store/postgres/fts.py`` (a ``PgConnection`` carries it as its ``fts`` attribute). What a
person types is read once (``parse_query``: words, phrases, prefixes, exclusions) and each
engine writes its own query from it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from bridge.core.actions import Outcome
from bridge.core.similar import (
    LIMIT,
    Candidate,
    choose,
    compared_values,
    query_terms,
    similar_event,
)
from bridge.core.timeutil import format_ns
from bridge.core.values import immutable
from bridge.store.changes import Change, write_changes
from bridge.store.errors import QueryError
from bridge.store.incidents import INCIDENT_COLUMNS, incident_from_row, together

# Kinds of documents besides the timeline's kinds (a timeline entry is indexed under its own
# kind: note, decision, alert_fired, ...).
INCIDENT = "incident"
POSTMORTEM = "postmortem"
# Timeline entries not indexed: the list of similar incidents names other incidents' titles,
# and would make the new incident a hit for every word of theirs; "Incident opened: <title>"
# says what the incident's own document says.
NOT_INDEXED = ("similar_incidents", "opened")
# Per writer transaction of the indexer: kept small so that a webhook queued behind it waits a
# few milliseconds at most (docs/performance.md).
INDEX_INCIDENTS = 32
INDEX_ENTRIES = 128
# The alerts of an incident whose labels are indexed (its first, by start), and label pairs.
MAX_ALERTS = 50
MAX_LABEL_PAIRS = 200
# The text lookup asks only for words that at most MAX_DF past incidents have, and at most
# MAX_SHARE of them (but MIN_DF are always allowed: in a short history every word is rare): a
# word most incidents share ("prod", "checkout" where most incidents are checkout's) tells
# nothing, and ranking every incident that has it would cost a third of a second with 100,000
# of them (docs/performance.md).
MAX_DF = 1000
MAX_SHARE = 0.1
MIN_DF = 20
# Same alert and service: the newest this many per pair are considered.
KEY_CANDIDATES = 20
# What a person's search may take before it is stopped (a 400 that asks for narrower words).
SEARCH_BUDGET_S = 5.0
PROGRESS_EVERY = 10_000  # SQLite VM steps between two looks at the time
MAX_TERMS = 32
SNIPPET_OPEN, SNIPPET_CLOSE, SNIPPET_ELLIPSIS = "«", "»", "…"
SNIPPET_TOKENS = 16


@immutable
class Marks:
    incidents: int  # incidents indexed: every id up to this
    timeline: int  # timeline entries indexed
    similar: int  # incidents looked at for similar ones


def marks(conn: sqlite3.Connection) -> Marks:
    values = dict(conn.execute("SELECT name, value FROM search_marks").fetchall())
    return Marks(values["incidents"], values["timeline"], values["similar"])


@immutable
class Backlog:
    marks: Marks
    newest_incident: int
    newest_entry: int

    @property
    def to_index(self) -> bool:
        return (
            self.newest_incident > self.marks.incidents or self.newest_entry > self.marks.timeline
        )

    @property
    def to_look_up(self) -> bool:
        return self.marks.incidents > self.marks.similar


def backlog(conn: sqlite3.Connection) -> Backlog:
    """What is left to do (a read: an idle indexer looks without a write transaction)."""
    newest = conn.execute(
        "SELECT (SELECT coalesce(max(id), 0) FROM incidents), "
        "(SELECT coalesce(max(id), 0) FROM timeline)"
    ).fetchone()
    return Backlog(marks(conn), int(newest[0]), int(newest[1]))


def _set_mark(conn: sqlite3.Connection, name: str, value: int) -> None:
    conn.execute("UPDATE search_marks SET value = max(value, ?) WHERE name = ?", (value, name))


# --- the full-text engine ---------------------------------------------------------------------


@immutable
class IncidentDoc:
    """What the indexer writes for one new incident (``Fts.add_incidents``)."""

    incident_id: int
    text: str  # its document (``incident_text``)
    title: str
    labels: str  # the label values it is compared by (``similar_terms.labels``)
    keys: tuple[tuple[str, str], ...]  # (alertname, service) pairs for ``similar_keys``


@immutable
class Hit:
    incident_id: int
    kind: str
    ref: str
    snippet: str
    score: float


class Fts(Protocol):
    """What only a full-text engine does, for the shared functions of this module. ``conn`` is
    the connection the engine belongs to (``sqlite3.Connection``, or ``PgConnection`` for
    ``store/postgres/fts.py``), in the caller's transaction."""

    def add(self, conn: Any, incident_id: int, kind: str, ref: str, text: str) -> int:
        """Index one document; its id (what ``search_docs.doc`` keeps)."""
        ...

    def add_many(self, conn: Any, docs: Sequence[tuple[int, str, str, str]]) -> None:
        """Index (incident_id, kind, ref, text) documents that are never replaced (no ids)."""
        ...

    def delete(self, conn: Any, doc: int) -> None: ...

    def add_similar(self, conn: Any, incident_id: int, title: str, labels: str) -> None:
        """What a new incident is compared with: the incident's title and label values."""
        ...

    def first_labels(self, conn: Any, ids: Sequence[int], limit: int) -> dict[int, list[str]]:
        """The labels (JSON text) of each incident's first ``limit`` alerts (by start, then
        fingerprint); an incident without alerts is left out. Here, beside the engine, because
        the indexer's job reads them for a whole batch of incidents at once where the engine's
        SQL can (PostgreSQL: one statement; SQLite, where a statement costs no round trip: one
        walk of the index per incident)."""
        ...

    def add_incidents(self, conn: Any, docs: Sequence[IncidentDoc]) -> None:
        """The indexer's new incidents: each one's document (kind ``incident``, named in
        ``search_docs``), ``similar_terms`` row and ``similar_keys`` (as ``index_pending`` did
        one at a time; PostgreSQL writes each table in one statement for the whole batch)."""
        ...

    def similar_count(self, conn: Any, term: str, before: int, cap: int) -> int:
        """How many incidents below ``before`` have the word ``term`` (counted up to ``cap``)."""
        ...

    def similar_ranked(
        self, conn: Any, terms: Sequence[tuple[str, int]], before: int, limit: int
    ) -> dict[int, float]:
        """The ``limit`` incidents below ``before`` that have any of ``terms`` (each with the
        count of incidents that have it), most relevant first: id -> score, higher is better."""
        ...

    def query(self, text: str) -> str:
        """What a person typed as the engine's query; ``QueryError`` when nothing is left."""
        ...

    def matches(self, conn: Any, text: str, limit: int, budget_s: float) -> list[Hit]:
        """The best document of each of the ``limit`` best-matching incidents, best first.
        ``QueryError`` for what cannot be searched, or a search past ``budget_s``."""
        ...


def engine(conn: Any) -> Fts:
    """The connection's full-text engine: its ``fts`` attribute, else SQLite's FTS5."""
    fts: Fts = getattr(conn, "fts", SQLITE_FTS)
    return fts


# --- documents --------------------------------------------------------------------------------


def index_document(
    conn: sqlite3.Connection, incident_id: int, kind: str, ref: str, text: str
) -> None:
    """Index ``text`` as the document (incident, kind, ref), replacing what was indexed under
    that name before (by this function, or an incident's own document, kind ``incident`` and
    ref its id); an empty text removes it. In a write transaction (``store.write``). Timeline
    entries are the indexer's: each once, never replaced (a correction is an entry of its own)."""
    row = conn.execute(
        "SELECT doc FROM search_docs WHERE incident_id = ? AND kind = ? AND ref = ?",
        (incident_id, kind, ref),
    ).fetchone()
    if row is not None:
        engine(conn).delete(conn, int(row[0]))
        conn.execute(
            "DELETE FROM search_docs WHERE incident_id = ? AND kind = ? AND ref = ?",
            (incident_id, kind, ref),
        )
    if text.strip():
        _add(conn, incident_id, kind, ref, text)


def _add(conn: sqlite3.Connection, incident_id: int, kind: str, ref: str, text: str) -> None:
    doc = engine(conn).add(conn, incident_id, kind, ref, text)
    conn.execute(
        "INSERT INTO search_docs (incident_id, kind, ref, doc) VALUES (?, ?, ?, ?)",
        (incident_id, kind, ref, doc),
    )


_FIRST_LABELS = (
    "SELECT a.labels FROM incident_alerts ia JOIN alerts a ON a.fingerprint = ia.fingerprint "
    "WHERE ia.incident_id = ? ORDER BY ia.starts_at, ia.fingerprint LIMIT ?"
)


def _labels(conn: sqlite3.Connection, incident_id: int) -> list[dict[str, str]]:
    """The labels of the incident's first ``MAX_ALERTS`` alerts (a walk of its index)."""
    rows = conn.execute(_FIRST_LABELS, (incident_id, MAX_ALERTS)).fetchall()
    return [json.loads(text) for (text,) in rows]


def _pairs(labels: Iterable[Mapping[str, str]]) -> list[tuple[str, str]]:
    out: dict[tuple[str, str], None] = {}
    for one in labels:
        for pair in one.items():
            out.setdefault(pair)
            if len(out) >= MAX_LABEL_PAIRS:
                return list(out)
    return list(out)


def incident_text(
    title: str, key: str, team: str | None, service: str | None, labels: Sequence[Mapping[str, str]]
) -> str:
    """An incident's document: its title, key, team and service, and its alerts' labels as
    ``name=value`` (each pair once)."""
    lines = [title, key]
    owners = " ".join(f"{k}={v}" for k, v in (("team", team), ("service", service)) if v)
    if owners:
        lines.append(owners)
    pairs = _pairs(labels)
    if pairs:
        lines.append(" ".join(f"{k}={v}" for k, v in pairs))
    return "\n".join(lines)


def _keys(service: str | None, labels: Sequence[Mapping[str, str]]) -> list[tuple[str, str]]:
    """(alertname, service) of the incident's alerts: the incident's service (the rules'), else
    the alerts' ``service`` label."""
    out: dict[tuple[str, str], None] = {}
    for one in labels:
        name = one.get("alertname")
        if name:
            out.setdefault((name, service or one.get("service") or ""))
    return list(out)


@immutable
class Indexed:
    incidents: int  # incidents indexed by this call
    entries: int  # timeline entries looked at (those of NOT_INDEXED kinds are skipped)
    more: bool  # there is more to index than one call takes
    marks: Marks


def index_pending(
    conn: sqlite3.Connection,
    *,
    max_incidents: int = INDEX_INCIDENTS,
    max_entries: int = INDEX_ENTRIES,
) -> Indexed:
    """Index the next incidents and timeline entries past the watermarks, and move the
    watermarks past them, in the caller's (the writer's) transaction."""
    m = marks(conn)
    # Both reads sent together, and every write after them: on PostgreSQL the job is four
    # round trips (the marks, these reads, the labels, the writes), not eight, while the
    # writer holds the webhooks queued behind it (docs/performance.md)
    with together(conn):
        incidents_read = conn.execute(
            "SELECT id, key, title, team, service FROM incidents WHERE id > ? ORDER BY id LIMIT ?",
            (m.incidents, max_incidents + 1),
        )
        entries_read = conn.execute(
            "SELECT id, incident_id, kind, text FROM timeline WHERE id > ? ORDER BY id LIMIT ?",
            (m.timeline, max_entries + 1),
        )
    incidents = incidents_read.fetchall()
    entries = entries_read.fetchall()
    more = len(incidents) > max_incidents or len(entries) > max_entries
    incidents = incidents[:max_incidents]
    entries = entries[:max_entries]
    fts = engine(conn)
    first = fts.first_labels(conn, [row[0] for row in incidents], MAX_ALERTS)
    docs = []
    for incident_id, key, title, team, service in incidents:
        labels = [json.loads(text) for text in first.get(incident_id, ())]
        docs.append(
            IncidentDoc(
                incident_id,
                incident_text(title, key, team, service, labels),
                title,
                _similar_labels(labels),
                tuple(_keys(service, labels)),
            )
        )
    after = Marks(
        incidents[-1][0] if incidents else m.incidents,
        entries[-1][0] if entries else m.timeline,
        m.similar,
    )
    with together(conn):
        fts.add_incidents(conn, docs)
        fts.add_many(
            conn,
            [
                (incident_id, kind, str(entry_id), text)
                for entry_id, incident_id, kind, text in entries
                if kind not in NOT_INDEXED and text
            ],
        )
        if after.incidents != m.incidents:
            _set_mark(conn, "incidents", after.incidents)
        if after.timeline != m.timeline:
            _set_mark(conn, "timeline", after.timeline)
    return Indexed(len(incidents), len(entries), more, after)


def _similar_labels(labels: Sequence[Mapping[str, str]]) -> str:
    """The label values a new incident is compared by, as ``similar_terms.labels``."""
    return " ".join(compared_values(_pairs(labels)))


def rebuild_similar_terms(conn: sqlite3.Connection) -> int:
    """Fill an empty ``similar_terms`` for every incident indexed so far, as ``index_pending``
    did; how many. For a copy of a database (``db copy``): SQLite's ``similar_terms`` keeps no
    text to copy, so the copy re-derives it from the incidents and their alerts."""
    upto = marks(conn).incidents
    rows = conn.execute(
        "SELECT id, title FROM incidents WHERE id <= ? ORDER BY id", (upto,)
    ).fetchall()
    fts = engine(conn)
    for incident_id, title in rows:
        fts.add_similar(conn, incident_id, title, _similar_labels(_labels(conn, incident_id)))
    return len(rows)


# --- seen this before -------------------------------------------------------------------------


def postmortem_url(
    conn: sqlite3.Connection, incident_id: int, url: Callable[[int], str] | None = None
) -> str | None:
    """The link to the incident's published postmortem (``<its page>/postmortem``, which serves
    the Markdown last published), or None: never published, or no page link is known (``url``,
    the incident page's link, is None without ``--external-url``)."""
    if url is None:
        return None
    published = conn.execute(
        "SELECT 1 FROM postmortem_publications WHERE incident_id = ? LIMIT 1", (incident_id,)
    ).fetchone()
    return None if published is None else f"{url(incident_id)}/postmortem"


def pending_similar(conn: sqlite3.Connection, limit: int) -> tuple[list[int], int]:
    """The next incidents indexed but not yet looked at for similar ones (at most ``limit``),
    and the watermark to set once they are recorded."""
    m = marks(conn)
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM incidents WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
            (m.similar, m.incidents, limit),
        )
    ]
    upto = ids[-1] if len(ids) == limit else m.incidents
    return ids, max(upto, m.similar)


def _score(rank: float) -> float:
    """FTS5's rank (bm25, lower is better) as a relevance, higher is better, 4 digits."""
    return float(f"{-rank:.4g}")


def _quoted(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def _by_key(
    conn: sqlite3.Connection, incident_id: int, keys: Sequence[tuple[str, str]]
) -> dict[int, tuple[str, str, int]]:
    """The newest past incidents with the same (alertname, service): id -> title, status,
    opened_at."""
    found: dict[int, tuple[str, str, int]] = {}
    for name, service in keys[:LIMIT]:
        for i, title, status, opened_at in conn.execute(
            "SELECT i.id, i.title, i.status, i.opened_at FROM similar_keys k "
            "JOIN incidents i ON i.id = k.incident_id WHERE k.alertname = ? AND k.service = ? "
            "AND k.incident_id < ? AND i.drill = 0 ORDER BY k.incident_id DESC LIMIT ?",
            (name, service, incident_id, KEY_CANDIDATES),
        ):
            found.setdefault(i, (title, status, opened_at))
    return found


def _by_text(
    conn: sqlite3.Connection, incident_id: int, terms: Sequence[str], limit: int, max_df: int
) -> dict[int, float]:
    """Past incidents whose title and labels share the rarer of ``terms``, most relevant
    first (bm25 on SQLite)."""
    # Incident ids run from 1 without gaps: there are incident_id - 1 past ones.
    max_df = min(max_df, max(MIN_DF, int((incident_id - 1) * MAX_SHARE)))
    fts = engine(conn)
    kept = []
    for term in terms:
        # How many past incidents have the word, counted up to max_df + 1 only: bounded.
        df = fts.similar_count(conn, term, incident_id, max_df + 1)
        if 0 < df <= max_df:
            kept.append((term, df))
    if not kept:
        return {}
    return fts.similar_ranked(conn, kept, incident_id, limit)


def find_similar(
    conn: sqlite3.Connection, incident_id: int, *, limit: int = LIMIT, max_df: int = MAX_DF
) -> list[Candidate]:
    """The past incidents most like ``incident_id`` (``core/similar.choose``): the same
    alertname on the same service, then a similar title and labels."""
    row = conn.execute(
        "SELECT title, service FROM incidents WHERE id = ?", (incident_id,)
    ).fetchone()
    if row is None:
        return []
    title, service = row
    labels = _labels(conn, incident_id)
    keyed = _by_key(conn, incident_id, _keys(service, labels))
    scores: dict[int, float] = {}
    if len(keyed) < limit:
        terms = query_terms(title, compared_values(_pairs(labels)))
        scores = {
            i: score
            for i, score in _by_text(conn, incident_id, terms, limit + len(keyed), max_df).items()
            if i not in keyed
        }
    details: dict[int, tuple[str, str, int]] = {}
    if scores:
        details = {
            r[0]: (r[1], r[2], r[3])
            for r in conn.execute(
                # a drill is never "seen before" for another incident (core/drills.py)
                "SELECT id, title, status, opened_at FROM incidents WHERE drill = 0 AND id IN "
                f"({','.join('?' * len(scores))})",
                list(scores),
            )
        }
    return choose(
        incident_id,
        [Candidate(i, *d, "same_alert_and_service") for i, d in keyed.items()],
        [
            Candidate(i, *details[i], "similar_text", score)
            for i, score in scores.items()
            if i in details
        ],
        limit,
    )


def look_up_similar(
    conn: sqlite3.Connection, ids: Sequence[int]
) -> list[tuple[int, list[Candidate]]]:
    """``find_similar`` for each of ``ids`` (on a reader: the writer is not held)."""
    return [(i, find_similar(conn, i)) for i in ids]


@immutable
class Recorded:
    linked: tuple[int, ...]  # incidents that got a similar_incidents entry
    event_ids: tuple[int, ...]
    notifications: int  # outbox rows written


def record_similar(
    conn: sqlite3.Connection,
    found: Sequence[tuple[int, Sequence[Candidate]]],
    *,
    upto: int,
    now: int,
    url: Callable[[int], str] | None = None,
) -> Recorded:
    """Write what ``look_up_similar`` found: for each incident with similar ones, one
    ``similar_incidents`` entry (the list in its data) and its outbox rows; then the watermark,
    so that nothing is announced twice (an incident at or below the watermark is skipped)."""
    done = marks(conn).similar
    linked: list[int] = []
    event_ids: list[int] = []
    notifications = 0
    found = [(i, candidates) for i, candidates in found if i > done and candidates]
    # The job's incidents and their candidates' postmortems read in one statement each, not
    # one per incident and per candidate: on PostgreSQL each is a round trip while the writer
    # holds the webhooks behind it (docs/performance.md)
    # (and the two sent together: one round trip)
    with together(conn):
        incidents_read = _select_by_id(
            conn, f"SELECT {INCIDENT_COLUMNS} FROM incidents", [i for i, _ in found]
        )
        published_read = (
            _select_by_id(
                conn,
                "SELECT DISTINCT incident_id FROM postmortem_publications",
                sorted({c.id for _, candidates in found for c in candidates}),
                column="incident_id",
            )
            if url is not None
            else []
        )
    rows = _by_first(incidents_read)
    published = set(_by_first(published_read))
    changes = []
    for incident_id, candidates in found:
        row = rows.get(incident_id)
        if row is None:
            continue
        incident = incident_from_row(row)
        postmortems = {
            c.id: f"{url(c.id)}/postmortem" for c in candidates if url and c.id in published
        }
        event = similar_event(candidates, url=url, postmortems=postmortems)
        changes.append(Change(incident, Outcome(incident, (event,))))
        linked.append(incident_id)
    # The job's entries and their outbox rows in one statement per table, not two round trips
    # per incident while the writer holds the webhooks behind it (docs/performance.md); the
    # mark sent with them
    with together(conn):
        for ids, written in write_changes(conn, changes, now):
            event_ids.extend(ids)
            notifications += written
        _set_mark(conn, "similar", upto)
    return Recorded(tuple(linked), tuple(event_ids), notifications)


def _select_by_id(
    conn: sqlite3.Connection, select: str, ids: Sequence[int], *, column: str = "id"
) -> list[Any]:
    """The statements for the rows of ``select`` whose ``column`` is one of ``ids`` (a few
    hundred at a time), their rows not read yet: ``_by_first`` reads them, after the statements
    were sent together."""
    cursors = []
    for k in range(0, len(ids), 500):
        part = list(ids[k : k + 500])
        marks = ",".join("?" * len(part))
        cursors.append(conn.execute(f"{select} WHERE {column} IN ({marks})", part))
    return cursors


def _by_first(cursors: Sequence[Any]) -> dict[int, tuple[Any, ...]]:
    """The rows of ``_select_by_id``'s statements, by their first column."""
    return {int(row[0]): tuple(row) for cur in cursors for row in cur.fetchall()}


# --- search -----------------------------------------------------------------------------------

_OPERATORS = ("OR", "AND", "NOT")


def _has_word(text: str) -> bool:
    return any(c.isalnum() for c in text)


@immutable
class Term:
    """A word or ``"a phrase"`` as typed (without its quotes), or a prefix (``word*``)."""

    text: str
    phrase: bool = False
    prefix: bool = False


@immutable
class Parsed:
    """What a person typed, read: every group must match (AND), any term of a group (OR), and
    no ``excluded`` term."""

    groups: tuple[tuple[Term, ...], ...]
    excluded: tuple[Term, ...]


def _terms(text: str) -> list[tuple[str | None, bool, Term | None]]:
    """(operator, excluded, term) of what a person typed: ``"a phrase"`` (an unclosed quote
    runs to the end), ``-word`` or ``-"a phrase"`` (excluded), ``word*`` (a prefix), ``OR``,
    ``NOT``, ``AND``; everything else, ``:`` and ``(`` included, is a word to find as typed."""
    out: list[tuple[str | None, bool, Term | None]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        negated = text[i] == "-" and i + 1 < n and not text[i + 1].isspace()
        if negated:
            i += 1
        if text[i] == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end
            phrase, i = text[i + 1 : end], end + 1
            if _has_word(phrase):
                out.append((None, negated, Term(phrase, phrase=True)))
            continue
        end = i
        while end < n and not text[end].isspace() and text[end] != '"':
            end += 1
        word, i = text[i:end], end
        if not negated and word in _OPERATORS:
            out.append((word, False, None))
            continue
        prefix = word.endswith("*")
        word = word.rstrip("*")
        if not _has_word(word):
            continue
        # A one-letter prefix would walk most of the index: it is searched as a word.
        out.append((None, negated, Term(word, prefix=prefix and len(word) >= 2)))
    return out


def parse_query(text: str) -> Parsed:
    """What a person typed, read the same for every engine: words all required (AND), ``OR``
    between two of them either, ``-word`` or ``NOT word`` excluded, ``word*`` a prefix.
    ``QueryError`` when nothing is left to look for, or for more than ``MAX_TERMS`` terms."""
    groups: list[list[Term]] = []
    excluded: list[Term] = []
    either = negate = False
    for operator, negated, term in _terms(text):
        if operator is not None:
            either = operator == "OR" and bool(groups)
            negate = operator == "NOT"
            continue
        assert term is not None
        if negated or negate:
            excluded.append(term)
        elif either:
            groups[-1].append(term)
        else:
            groups.append([term])
        either = negate = False
    if not groups:
        raise QueryError(
            "nothing to look for: give at least one word (a word with - before it only excludes)"
        )
    if sum(map(len, groups)) + len(excluded) > MAX_TERMS:
        raise QueryError(f"at most {MAX_TERMS} words")
    return Parsed(tuple(tuple(g) for g in groups), tuple(excluded))


def _fts5_term(term: Term) -> str:
    return _quoted(term.text) + ("*" if term.prefix else "")


def fts_query(text: str) -> str:
    """What a person typed as an FTS5 query that cannot be a syntax error: every word and
    phrase quoted (so ``a:b`` is no column filter and ``"`` no syntax), words all required
    (AND), ``OR`` between two of them either, ``-word`` or ``NOT word`` excluded, ``word*`` a
    prefix. ``QueryError`` when nothing is left to look for."""
    parsed = parse_query(text)
    query = " AND ".join(f"({' OR '.join(map(_fts5_term, g))})" for g in parsed.groups)
    if parsed.excluded:
        query = f"({query}) NOT ({' OR '.join(map(_fts5_term, parsed.excluded))})"
    return query


def _phrase(text: str) -> str:
    """The fallback: every word of ``text`` as one phrase."""
    words = [w for w in "".join(c if c.isalnum() else " " for c in text).split() if w]
    if not words:
        raise QueryError("nothing to look for: give at least one word")
    return _quoted(" ".join(words))


class SqliteFts:
    """SQLite's FTS5 (migration ``0008_search``): ``search`` (rowid: the document's id,
    ``body`` indexed) and the contentless ``similar_terms`` (rowid: the incident's id), both
    with the Porter stemmer over unicode61 without diacritics; ranked by bm25."""

    def add(self, conn: Any, incident_id: int, kind: str, ref: str, text: str) -> int:
        cur = conn.execute(
            "INSERT INTO search (incident_id, kind, ref, body) VALUES (?, ?, ?, ?)",
            (incident_id, kind, ref, text),
        )
        return int(cur.lastrowid)

    def add_many(self, conn: Any, docs: Sequence[tuple[int, str, str, str]]) -> None:
        conn.executemany(
            "INSERT INTO search (incident_id, kind, ref, body) VALUES (?, ?, ?, ?)", docs
        )

    def delete(self, conn: Any, doc: int) -> None:
        conn.execute("DELETE FROM search WHERE rowid = ?", (doc,))

    def add_similar(self, conn: Any, incident_id: int, title: str, labels: str) -> None:
        conn.execute(
            "INSERT INTO similar_terms (rowid, title, labels) VALUES (?, ?, ?)",
            (incident_id, title, labels),
        )

    def first_labels(self, conn: Any, ids: Sequence[int], limit: int) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for incident_id in ids:
            rows = conn.execute(_FIRST_LABELS, (incident_id, limit)).fetchall()
            if rows:
                out[incident_id] = [text for (text,) in rows]
        return out

    def add_incidents(self, conn: Any, docs: Sequence[IncidentDoc]) -> None:
        for d in docs:
            _add(conn, d.incident_id, INCIDENT, str(d.incident_id), d.text)
            self.add_similar(conn, d.incident_id, d.title, d.labels)
            conn.executemany(
                "INSERT OR IGNORE INTO similar_keys (alertname, service, incident_id) "
                "VALUES (?, ?, ?)",
                [(name, svc, d.incident_id) for name, svc in d.keys],
            )

    def similar_count(self, conn: Any, term: str, before: int, cap: int) -> int:
        (df,) = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM similar_terms WHERE similar_terms MATCH ? "
            "AND rowid < ? LIMIT ?)",
            (_quoted(term), before, cap),
        ).fetchone()
        return int(df)

    def similar_ranked(
        self, conn: Any, terms: Sequence[tuple[str, int]], before: int, limit: int
    ) -> dict[int, float]:
        rows = conn.execute(
            "SELECT rowid, rank FROM similar_terms WHERE similar_terms MATCH ? AND rowid < ? "
            "ORDER BY rank LIMIT ?",
            (" OR ".join(_quoted(term) for term, _ in terms), before, limit),
        ).fetchall()
        return {int(rowid): _score(rank) for rowid, rank in rows}

    def query(self, text: str) -> str:
        return fts_query(text)

    def matches(self, conn: Any, text: str, limit: int, budget_s: float) -> list[Hit]:
        query = fts_query(text)
        deadline = time.monotonic() + budget_s
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), PROGRESS_EVERY)
        try:
            try:
                return self._matches(conn, query, limit)
            except sqlite3.OperationalError as exc:
                if "interrupt" in str(exc):
                    raise QueryError(
                        "this search matches too much to rank in time: use rarer words"
                    ) from None
                # A query the quoting did not make safe after all: every word as one phrase.
                return self._matches(conn, _phrase(text), limit)
        except sqlite3.OperationalError as exc:
            raise QueryError(f"cannot search for this: {exc}") from None
        finally:
            conn.set_progress_handler(None, 0)

    def _matches(self, conn: Any, query: str, limit: int) -> list[Hit]:
        """The best documents are read by rank (bm25) in a growing window until it holds
        ``limit`` incidents or every match."""
        window = limit * 4
        while True:
            rows = conn.execute(
                "SELECT incident_id, kind, ref, snippet(search, 3, ?, ?, ?, ?), rank "
                "FROM search WHERE search MATCH ? ORDER BY rank LIMIT ?",
                (SNIPPET_OPEN, SNIPPET_CLOSE, SNIPPET_ELLIPSIS, SNIPPET_TOKENS, query, window),
            ).fetchall()
            best: dict[int, Hit] = {}
            for incident_id, kind, ref, snippet, rank in rows:
                if incident_id not in best:
                    best[incident_id] = Hit(incident_id, kind, ref, snippet, _score(rank))
            if len(best) >= limit or len(rows) < window or window >= 64 * limit:
                return list(best.values())[:limit]
            window *= 4


SQLITE_FTS: Fts = SqliteFts()


def search(
    conn: sqlite3.Connection, text: str, *, limit: int = 20, budget_s: float = SEARCH_BUDGET_S
) -> list[dict[str, Any]]:
    """Incidents matching what a person typed, best first, each with its best-matching
    document: ``incident_id``, ``title``, ``status``, ``severity``, ``opened_at``, ``kind``
    (``incident``, a timeline kind such as ``note``, or ``postmortem``), ``ref`` (the timeline
    entry's id, ...), ``snippet`` (the match in «», cut with …) and ``score`` (the engine's
    relevance, higher is better). ``QueryError`` for nothing to look for, or a search that
    takes more than ``budget_s`` (too broad)."""
    hits = engine(conn).matches(conn, text, limit, budget_s)
    if not hits:
        return []
    ids = [h.incident_id for h in hits]
    incidents = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT id, title, status, severity, opened_at FROM incidents WHERE id IN "
            f"({','.join('?' * len(ids))})",
            ids,
        )
    }
    out = []
    for h in hits:
        if h.incident_id not in incidents:
            continue
        title, status, severity, opened_at = incidents[h.incident_id]
        out.append(
            {
                "incident_id": h.incident_id,
                "title": title,
                "status": status,
                "severity": severity,
                "opened_at": format_ns(opened_at),
                "kind": h.kind,
                "ref": h.ref,
                "snippet": h.snippet,
                "score": h.score,
            }
        )
    return out
