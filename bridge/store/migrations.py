"""Schema migrations: an ordered list of named steps, each applied once in its own transaction."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]


def _initial(db: sqlite_utils.Database) -> None:
    db.table("incidents").create(
        {
            "id": int,
            "key": str,
            "title": str,
            "severity": str,
            "status": str,
            "route": str,
            "team": str,
            "service": str,
            "started_at": int,
            "opened_at": int,
            "acknowledged_at": int,
            "mitigated_at": int,
            "resolved_at": int,
            "closed_at": int,
            "truncated_alerts": int,
            "previous_id": int,
            "updated_at": int,
        },
        pk="id",
        not_null={"key", "title", "severity", "status", "started_at", "opened_at"},
        defaults={"truncated_alerts": 0, "route": "default"},
        foreign_keys=[("previous_id", "incidents", "id")],
    )
    db.table("incidents").create_index(["key", "id"])
    db.table("incidents").create_index(["status", "severity"])
    db.table("alerts").create(
        {
            "fingerprint": str,
            "labels": str,
            "annotations": str,
            "status": str,
            "starts_at": int,
            "ends_at": int,
            "generator_url": str,
            "first_seen": int,
            "last_seen": int,
        },
        pk="fingerprint",
        not_null={"labels", "status", "starts_at", "first_seen", "last_seen"},
    )
    db.table("incident_alerts").create(
        {
            "incident_id": int,
            "fingerprint": str,
            "status": str,
            "starts_at": int,
            "ends_at": int,
            "first_seen": int,
            "last_seen": int,
        },
        pk=("incident_id", "fingerprint"),
        not_null={"status", "starts_at", "first_seen", "last_seen"},
        foreign_keys=[("incident_id", "incidents", "id"), ("fingerprint", "alerts", "fingerprint")],
    )
    db.table("incident_alerts").create_index(["fingerprint"])
    db.table("timeline").create(
        {
            "id": int,
            "incident_id": int,
            "time": int,
            "kind": str,
            "actor": str,
            "text": str,
            "data": str,
        },
        pk="id",
        not_null={"incident_id", "time", "kind", "actor", "text"},
        foreign_keys=[("incident_id", "incidents", "id")],
    )
    db.table("timeline").create_index(["incident_id", "id"])
    db.table("webhooks").create(
        {
            "id": int,
            "received_at": int,
            "sha256": str,
            "group_key": str,
            "receiver": str,
            "status": str,
            "alert_count": int,
            "incidents": str,
            "body": bytes,
        },
        pk="id",
        not_null={"received_at", "sha256", "status"},
    )
    db.table("webhooks").create_index(["sha256"])
    db.table("webhooks").create_index(["received_at"])


def _outbox(db: sqlite_utils.Database) -> None:
    db.table("incidents").add_column("roles", str)
    # One row per notification a change calls for, written in the change's transaction.
    db.table("outbox").create(
        {
            "id": int,
            "incident_id": int,
            "target": str,
            "tier": str,
            "event": str,
            "event_id": int,
            "idempotency_key": str,
            "state": str,  # pending | delivered | dead
            "attempts": int,
            "next_attempt_at": int,
            "created_at": int,
            "updated_at": int,
            "delivered_at": int,
            "last_error": str,
            "leader_id": int,  # the row whose message carried this one (coalescing)
            "provider_ids": str,
        },
        pk="id",
        not_null={"incident_id", "target", "tier", "event", "idempotency_key", "state"},
        defaults={"attempts": 0, "state": "pending"},
        foreign_keys=[
            ("incident_id", "incidents", "id"),
            ("event_id", "timeline", "id"),
            ("leader_id", "outbox", "id"),
        ],
    )
    db.table("outbox").create_index(["idempotency_key"], unique=True)
    db.table("outbox").create_index(["state", "incident_id", "target", "id"])
    db.table("outbox").create_index(["state", "next_attempt_at"])
    db.table("outbox").create_index(["leader_id"])
    # What a target remembers per incident between sends (channel id, thread, first Message-ID).
    db.table("target_state").create(
        {"incident_id": int, "target": str, "state": str, "updated_at": int},
        pk=("incident_id", "target"),
        foreign_keys=[("incident_id", "incidents", "id")],
    )


def _indexes(db: sqlite_utils.Database) -> None:
    """Indexes for what the service does under load.

    Dropped: two indexes no query reads. Their keys (a body hash, an alert fingerprint) are
    random, so each new row dirtied a random index page: with a journal of webhooks that was the
    largest share of the bytes every commit wrote (docs/performance.md).

    Added: the outbox in time order per target, so that finding the rows due is one short index
    walk per target however many rows wait (``outbox.due``)."""
    db.conn.execute("DROP INDEX IF EXISTS idx_webhooks_sha256")
    db.conn.execute("DROP INDEX IF EXISTS idx_incident_alerts_fingerprint")
    db.table("outbox").create_index(["state", "target", "next_attempt_at", "id"])


def _message_reads(db: sqlite_utils.Database) -> None:
    """What a message about an incident reads stays bounded however many alerts it has
    (``queries.get_incident_for_message``): its newest alerts are a short walk of an index on
    (incident_id, starts_at), keyed by incident first so that new links land at its end, and
    its alerts are counted by status in a table SQLite's triggers keep in the same transaction
    as every change of a link."""
    conn = db.conn
    conn.execute(
        "CREATE INDEX IF NOT EXISTS idx_incident_alerts_incident_starts "
        "ON incident_alerts (incident_id, starts_at, fingerprint)"
    )
    conn.execute(
        "CREATE TABLE incident_alert_counts (incident_id INTEGER NOT NULL, status TEXT NOT NULL, "
        "n INTEGER NOT NULL, PRIMARY KEY (incident_id, status)) WITHOUT ROWID"
    )
    conn.execute(
        "INSERT INTO incident_alert_counts (incident_id, status, n) "
        "SELECT incident_id, status, count(*) FROM incident_alerts GROUP BY incident_id, status"
    )
    _counting_triggers(conn, "incident_alerts", "incident_alert_counts", ("incident_id", "status"))


def _counting_triggers(
    conn: sqlite3.Connection, table: str, counts: str, keys: tuple[str, str]
) -> None:
    """Triggers that keep ``counts`` (``keys`` + ``n``) equal to ``table`` grouped by ``keys``."""
    a, b = keys
    add = (
        f"INSERT INTO {counts} ({a}, {b}, n) VALUES (new.{a}, new.{b}, 1) "
        f"ON CONFLICT ({a}, {b}) DO UPDATE SET n = n + 1;"
    )
    remove = f"UPDATE {counts} SET n = n - 1 WHERE {a} = old.{a} AND {b} = old.{b};"
    conn.execute(f"CREATE TRIGGER {counts}_insert AFTER INSERT ON {table} BEGIN {add} END")
    conn.execute(
        f"CREATE TRIGGER {counts}_update AFTER UPDATE OF {a}, {b} ON {table} "
        f"WHEN old.{a} IS NOT new.{a} OR old.{b} IS NOT new.{b} BEGIN {remove} {add} END"
    )
    conn.execute(f"CREATE TRIGGER {counts}_delete AFTER DELETE ON {table} BEGIN {remove} END")


def _people(db: sqlite_utils.Database) -> None:
    """The role holders' chat handles and addresses, as the rotations gave them when the incident
    opened: the targets invite and mention people by them."""
    db.conn.execute("ALTER TABLE incidents ADD COLUMN people TEXT NOT NULL DEFAULT '{}'")


def _during(db: sqlite_utils.Database) -> None:
    """People's actions: the tiers an incident notifies, kept on it (people's actions reach the
    same channels as its alerts), the answers to writes sent with an Idempotency-Key, and
    indexes for the incident list's filters."""
    conn = db.conn
    conn.execute("ALTER TABLE incidents ADD COLUMN tiers TEXT NOT NULL DEFAULT '{}'")
    conn.execute(
        "CREATE TABLE idempotency_keys (scope TEXT NOT NULL, key TEXT NOT NULL, "
        "request TEXT NOT NULL, status INTEGER NOT NULL, response TEXT NOT NULL, "
        "created_at INTEGER NOT NULL, PRIMARY KEY (scope, key)) WITHOUT ROWID"
    )
    # The open incidents (the list's usual filter, the reminder scheduler), newest first,
    # without a scan of every incident ever opened (bench/api.py, docs/performance.md). A team
    # index too cost 14,000 instructions per new incident for a filter that the status index
    # and the newest-first walk already serve.
    conn.execute("CREATE INDEX idx_incidents_status_id ON incidents (status, id)")


def _reminders(db: sqlite_utils.Database) -> None:
    """Reminders and escalation: the ones sent, one row per (incident, kind, due time), so that
    each is sent once across ticks, restarts and racing writers (the key is the claim; the
    timeline entry and outbox rows are written only by the transaction whose row went in).
    The incidents' newest status update is found through an index over status updates only, so
    that the other timeline rows pay nothing for it."""
    conn = db.conn
    conn.execute(
        "CREATE TABLE reminders (incident_id INTEGER NOT NULL REFERENCES incidents (id), "
        "kind TEXT NOT NULL, due_at INTEGER NOT NULL, fired_at INTEGER NOT NULL, "
        "event_id INTEGER REFERENCES timeline (id), "
        "PRIMARY KEY (incident_id, kind, due_at)) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE INDEX idx_timeline_status_updates ON timeline (incident_id, id) "
        "WHERE kind = 'status_update'"
    )


# FTS5's tokenizer for every text index: Unicode words, case and diacritics folded ("Café" is
# "cafe"), then Porter's English stemmer, because timelines and postmortems are prose ("restarted
# the pods" is found by "restart pod"). Identifiers are stemmed alike in the index and in the
# query, so they still match each other.
SEARCH_TOKENIZER = "porter unicode61 remove_diacritics 2"


def _search(db: sqlite_utils.Database) -> None:
    """Full-text search and "seen this before" (``store/search.py``), kept up to date by the
    indexer loop (``bridge/indexer.py``) from watermarks, never by triggers on the tables a
    webhook writes.

    ``search``: one row per document (an incident's title, key, team, service and alert labels;
    a timeline entry's text; later a postmortem); ``search_docs`` finds the row of a document
    that can be replaced (an incident's, or one given to ``index_document``) by (incident, kind,
    ref); timeline entries never change and are not listed there. ``similar_terms`` (rowid: the
    incident's id; the index only, no copy of the text) holds what a new incident is compared
    with, titles and label values, and ``similar_keys`` its (alertname, service) pairs. The
    similar incidents found are kept in their timeline entry's data, no table of their own.
    ``search_marks``: what is indexed (the highest incident and timeline ids) and which
    incidents were looked at for similar ones; on an existing database that starts at its
    newest incident, so that nothing that opened before the upgrade is announced."""
    conn = db.conn
    conn.execute(
        "CREATE VIRTUAL TABLE search USING fts5(incident_id UNINDEXED, kind UNINDEXED, "
        f"ref UNINDEXED, body, tokenize = '{SEARCH_TOKENIZER}')"
    )
    conn.execute(
        "CREATE TABLE search_docs (incident_id INTEGER NOT NULL, kind TEXT NOT NULL, "
        "ref TEXT NOT NULL, doc INTEGER NOT NULL, PRIMARY KEY (incident_id, kind, ref)) "
        "WITHOUT ROWID"
    )
    conn.execute(
        "CREATE VIRTUAL TABLE similar_terms USING fts5(title, labels, content = '', "
        f"tokenize = '{SEARCH_TOKENIZER}')"
    )
    conn.execute(
        "CREATE TABLE similar_keys (alertname TEXT NOT NULL, service TEXT NOT NULL, "
        "incident_id INTEGER NOT NULL, PRIMARY KEY (alertname, service, incident_id)) "
        "WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE search_marks (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID"
    )
    conn.execute(
        "INSERT INTO search_marks (name, value) VALUES ('incidents', 0), ('timeline', 0), "
        "('similar', (SELECT coalesce(max(id), 0) FROM incidents))"
    )


def _followup(db: sqlite_utils.Database) -> None:
    """The follow-up phase (``store/followup.py``): one ``followups`` row per incident that
    reached ``mitigated`` (its route, ticket target, stabilization window and PromQL checks,
    fixed when the phase opened, and the validation's outcome), and its checklist's items in
    ``followup_items`` (state open / done / waived, who and why, and a JSON ``detail``: the
    findings of the review item, the validation's results). A ticket's key and URL live in the
    ticket target's saved state (``target_state``), where the outbox worker records them."""
    conn = db.conn
    conn.execute(
        "CREATE TABLE followups (incident_id INTEGER PRIMARY KEY REFERENCES incidents (id), "
        "route TEXT NOT NULL, opened_at INTEGER NOT NULL, stabilize_until INTEGER NOT NULL, "
        "window_s REAL NOT NULL DEFAULT 0, "
        "ticket_target TEXT, checks TEXT NOT NULL DEFAULT '[]', "
        "validated_at INTEGER, validation TEXT)"
    )
    conn.execute(
        "CREATE TABLE followup_items (id INTEGER PRIMARY KEY, "
        "incident_id INTEGER NOT NULL REFERENCES incidents (id), kind TEXT NOT NULL, "
        "text TEXT NOT NULL, owner TEXT, state TEXT NOT NULL DEFAULT 'open', "
        "reason TEXT, detail TEXT NOT NULL DEFAULT '{}', created_by TEXT NOT NULL, "
        "created_at INTEGER NOT NULL, updated_by TEXT, updated_at INTEGER)"
    )
    conn.execute("CREATE INDEX idx_followup_items_incident ON followup_items (incident_id, id)")
    # The scheduler's walk: follow-ups whose validation is still to run, by the window's end.
    conn.execute(
        "CREATE INDEX idx_followups_pending ON followups (stabilize_until) "
        "WHERE validated_at IS NULL"
    )
    # Incidents already mitigated when this release starts get an empty follow-up, settled:
    # opening hundreds of checklists at once (and telling their channels) helps nobody.
    conn.execute(
        "INSERT INTO followups (incident_id, route, opened_at, stabilize_until, checks, "
        "validated_at, validation) SELECT id, route, coalesce(mitigated_at, opened_at), "
        "coalesce(mitigated_at, opened_at), '[]', coalesce(mitigated_at, opened_at), "
        '\'{"skipped": "mitigated before the follow-up phase existed"}\' '
        "FROM incidents WHERE status = 'mitigated'"
    )


def _postmortem(db: sqlite_utils.Database) -> None:
    """Postmortems (``store/postmortem.py``): every saved version of an incident's narrative
    sections (JSON) with its author and time, never overwritten, and every publication into the
    knowledge base (the version, the file relative to the knowledge base's folder, empty when
    there is none, the commit when it is a Git repository, and the Markdown published, which
    the API serves). Publications are numbered (``id``): two in the same nanosecond are two."""
    conn = db.conn
    conn.execute(
        "CREATE TABLE postmortem_versions (incident_id INTEGER NOT NULL REFERENCES incidents (id), "
        "version INTEGER NOT NULL, narrative TEXT NOT NULL, author TEXT NOT NULL, "
        "created_at INTEGER NOT NULL, PRIMARY KEY (incident_id, version)) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE postmortem_publications (id INTEGER PRIMARY KEY, "
        "incident_id INTEGER NOT NULL REFERENCES incidents (id), "
        "version INTEGER NOT NULL, path TEXT NOT NULL, commit_sha TEXT, "
        "published_by TEXT NOT NULL, published_at INTEGER NOT NULL, "
        "markdown TEXT NOT NULL DEFAULT '')"
    )
    conn.execute(
        "CREATE INDEX idx_postmortem_publications_incident "
        "ON postmortem_publications (incident_id, id)"
    )


def _metrics(db: sqlite_utils.Database) -> None:
    """The incident metrics' aggregates, kept by triggers in the milestone's transaction and
    filled from the incidents already stored (``store/metrics.py``, docs/metrics.md)."""
    from bridge.store.metrics import install

    install(db.conn)


def _reconcile(db: sqlite_utils.Database) -> None:
    """Reconciliation with Alertmanager's API (``store/reconcile.py``, docs/reconcile.md): the
    Alertmanager receiver that opened each incident (the reconciler compares only incidents of
    receivers the configured Alertmanager has), filled for the open incidents from the webhooks
    journal in one pass over it; and per incident alert what the reconciler last recorded of it
    (silenced, inhibited, resolved by the API), so that each change is recorded once."""
    conn = db.conn
    conn.execute("ALTER TABLE incidents ADD COLUMN receiver TEXT")
    conn.execute("ALTER TABLE incident_alerts ADD COLUMN mark TEXT")
    conn.execute(
        "UPDATE incidents SET receiver = r.receiver FROM ("
        "SELECT j.value AS incident_id, w.receiver AS receiver, max(w.id) FROM webhooks w, "
        "json_each(CASE WHEN json_valid(w.incidents) THEN w.incidents ELSE '[]' END) j "
        "WHERE w.receiver IS NOT NULL GROUP BY j.value) r "
        "WHERE incidents.id = r.incident_id AND incidents.status IN "
        "('triggered', 'acknowledged', 'mitigated')"
    )


def _dismiss(db: sqlite_utils.Database) -> None:
    """Dismissing a false alarm or a test incident (``store/actions.py``, docs/incidents.md):
    ``incidents.dismissed_at``, its counter, and the postmortem aggregate that leaves dismissed
    incidents out (``store/metrics.install_dismiss``)."""
    from bridge.store.metrics import install_dismiss

    install_dismiss(db.conn)


def _sessions(db: sqlite_utils.Database) -> None:
    """The web pages' sessions, ended on the server by a sign-out or a token's removal
    (``store/sessions.py``, docs/web.md)."""
    from bridge.store.sessions import create_table

    create_table(db.conn)


def _outbox_claims(db: sqlite_utils.Database) -> None:
    """The outbox across replicas (``store/outbox.py``, docs/delivery.md): a head's claim by one
    replica's worker with its lease (``claimed_by``, ``claim_until``; an index on the live
    claims only, which ``next_due_at`` walks for the leases that run out), a target's pause
    after a Retry-After seen by any replica (``outbox_pauses``), and the next send slot of each
    paced (target, channel) (``outbox_pace``, its stale rows forgotten by ``next_at``)."""
    conn = db.conn
    conn.execute("ALTER TABLE outbox ADD COLUMN claimed_by TEXT")
    conn.execute("ALTER TABLE outbox ADD COLUMN claim_until INTEGER")
    conn.execute(
        "CREATE INDEX idx_outbox_claim_until ON outbox (claim_until) WHERE claim_until IS NOT NULL"
    )
    conn.execute(
        "CREATE TABLE outbox_pauses (target TEXT PRIMARY KEY, paused_until INTEGER NOT NULL, "
        "reason TEXT NOT NULL) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE outbox_pace (target TEXT NOT NULL, channel TEXT NOT NULL, "
        "next_at INTEGER NOT NULL, PRIMARY KEY (target, channel)) WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX idx_outbox_pace_next_at ON outbox_pace (next_at)")


def _coordination(db: sqlite_utils.Database) -> None:
    """Replicas on one database (``store/coordination.py``): the background loops' leases, the
    replicas seen, the secrets they share. On SQLite one process holds the file, so it always
    wins its leases; the tables are there so that the same code runs on both backends."""
    from bridge.store.coordination import create_tables

    create_tables(db.conn)


def _oncall(db: sqlite_utils.Database) -> None:
    """On-call overrides made at run time (``store/oncall.py``, docs/oncall.md)."""
    from bridge.store.oncall import create_table

    create_table(db.conn)


def _escalation(db: sqlite_utils.Database) -> None:
    """Escalation policies (``store/escalation.py``): their steps are claimed in ``reminders``;
    the incidents' newest reopen, where a policy starts again, through an index of its own."""
    from bridge.store.escalation import REOPENS_INDEX

    db.conn.execute(REOPENS_INDEX)


def _drills(db: sqlite_utils.Database) -> None:
    """Drills (``store/drills.py``): the incidents' drill flag and its partial index, the
    scheduled drills' claims, the triggers that keep drills' MTTx apart."""
    from bridge.store.drills import DDL, install_metric_moves

    for statement in DDL:
        db.conn.execute(statement)
    install_metric_moves(db.conn)  # the drills' MTTx kept apart


def _insights(db: sqlite_utils.Database) -> None:
    """The insights' aggregates kept by the write path (``store/insights.py``): a row per
    incident, their sums per day and group, people's pages and acknowledgements; filled from
    the history, then kept by triggers."""
    from bridge.store.insights import install

    install(db.conn)


def _status(db: sqlite_utils.Database) -> None:
    """The public status page (``store/status.py``): the newest status updates by id."""
    from bridge.store.status import STATUS_UPDATES_INDEX

    db.conn.execute(STATUS_UPDATES_INDEX)


def _heartbeats(db: sqlite_utils.Database) -> None:
    """The dead man's switch (``store/heartbeats.py``): first sight, last beat, the episode
    raised, per heartbeat."""
    from bridge.store.heartbeats import create_table

    create_table(db.conn)


def _declared(db: sqlite_utils.Database) -> None:
    """Incidents people start (``store/declared.py``, docs/incidents.md): a declared incident's
    source, the links that send a group's or a merged incident's webhooks to an incident, the
    merges."""
    from bridge.store.declared import create_tables

    create_tables(db.conn)


def _messages(db: sqlite_utils.Database) -> None:
    """Channel messages (``store/messages.py``, docs/delivery.md): notifications tied to no
    incident (a rotation's hand-off, a scheduled drill's announcement), one row per target."""
    from bridge.store.messages import SQLITE_DDL

    for statement in SQLITE_DDL:
        db.conn.execute(statement)


MIGRATIONS: list[tuple[str, Migration]] = [
    ("0001_initial", _initial),
    ("0002_outbox", _outbox),
    ("0003_indexes", _indexes),
    ("0004_message_reads", _message_reads),
    ("0005_people", _people),
    ("0006_during", _during),
    ("0007_reminders", _reminders),
    ("0008_search", _search),
    ("0009_followup", _followup),
    ("0010_postmortem", _postmortem),
    ("0011_metrics", _metrics),
    ("0012_reconcile", _reconcile),
    ("0013_sessions", _sessions),
    ("0014_dismiss", _dismiss),
    ("0015_outbox_claims", _outbox_claims),
    ("0016_coordination", _coordination),
    ("0018_declared", _declared),
    ("0019_oncall", _oncall),
    ("0020_heartbeats", _heartbeats),
    ("0021_escalation", _escalation),
    ("0023_drills", _drills),
    ("0024_insights", _insights),
    ("0025_status", _status),
    ("0026_messages", _messages),
]


def migrate(
    db: sqlite_utils.Database, migrations: list[tuple[str, Migration]] | None = None
) -> list[str]:
    """Apply the migrations not yet applied; return their names. Running it again is a no-op."""
    conn = db.conn
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    applied: list[str] = []
    for name, step in migrations if migrations is not None else MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            step(db)
            conn.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (name, time.time_ns()),
            )
        except (sqlite3.Error, ValueError):
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        applied.append(name)
    return applied
