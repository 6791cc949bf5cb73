"""Recording "seen this before" for a job of incidents, on both backends: each incident's entry
links the published postmortems of its similar incidents (read for the whole job at once)
and no other, and on PostgreSQL the job's statements do not grow with the candidates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.store.search import look_up_similar, marks, pending_similar, record_similar
from tests.store.test_pg_batches import counted
from tests.store.test_search import Db, PgDb, labels

URL = "https://bridge.example/incidents/{}".format


@pytest.fixture
def db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Db]:
    d = Db(tmp_path / "s.db") if backend == "sqlite" else PgDb(request.getfixturevalue("pg_url"))
    yield d
    d.close()


def publish(db: Db, incident_id: int, version: int) -> None:
    with db.transaction():
        db.conn.execute(
            "INSERT INTO postmortem_publications (incident_id, version, path, published_by, "
            "published_at) VALUES (?, ?, 'pm.md', 'alice', 1)",
            (incident_id, version),
        )


def record_all(db: Db) -> None:
    ids, upto = pending_similar(db.conn, 100)
    found = look_up_similar(db.conn, ids)
    with db.transaction():
        record_similar(db.conn, found, upto=upto, now=db.now, url=URL)


def test_the_similar_entries_of_a_job_link_the_published_postmortems_only(db: Db) -> None:
    past = [
        db.open(f"p{n}", f"Checkout errors {n}", labels("HighErrorRate", "checkout"))
        for n in range(4)
    ]
    publish(db, past[1], 1)
    publish(db, past[1], 2)  # published twice: one link
    publish(db, past[3], 1)
    db.index()
    record_all(db)
    new = [
        db.open(f"n{n}", f"Checkout errors again {n}", labels("HighErrorRate", "checkout"))
        for n in range(3)
    ]
    db.index()
    record_all(db)
    linked = 0
    for incident_id in new:
        ((data,),) = db.rows(
            "SELECT data FROM timeline WHERE incident_id = ? AND kind = 'similar_incidents'",
            incident_id,
        )
        listed = {c["id"]: c["postmortem_url"] for c in json.loads(data)["similar"]}
        assert past[3] in listed  # the newest past one
        for i, link in listed.items():
            expected = f"{URL(i)}/postmortem" if i in (past[1], past[3]) else None
            assert link == expected, (incident_id, i)
            linked += link is not None
    assert linked >= len(new)
    assert marks(db.conn).similar == new[-1]


def test_recording_a_job_reads_no_row_per_candidate(pg_url: str) -> None:
    db = PgDb(pg_url)
    try:
        past = [
            db.open(f"p{n}", f"Checkout {n}", labels("HighErrorRate", "checkout")) for n in range(5)
        ]
        publish(db, past[0], 1)
        db.index()
        record_all(db)
        for n in range(10):
            db.open(f"n{n}", f"Checkout again {n}", labels("HighErrorRate", "checkout"))
        db.index()
        ids, upto = pending_similar(db.conn, 100)
        found = look_up_similar(db.conn, ids)
        assert len(found) == 10 and all(len(c) >= 5 for _, c in found)
        with db.transaction(), counted(db) as sent:
            record_similar(db.conn, found, upto=upto, now=db.now, url=URL)
        # per incident its change (the next entry id, the entry); for the job the marks, the
        # incidents and the postmortems: it was also a read of the incident and one per
        # candidate (10 + 50 more here)
        assert sent[0] <= 2 * len(found) + 5, sent
    finally:
        db.close()


def dedicated_channel(db: Db, ids: list[int]) -> None:
    """The incidents' tiers name a dedicated channel, which hears of every entry: each
    "seen this before" entry then has an outbox row."""
    tiers = json.dumps({"general": [], "incident": "chan", "stakeholders": []})
    with db.transaction():
        for incident_id in ids:
            db.conn.execute("UPDATE incidents SET tiers = ? WHERE id = ?", (tiers, incident_id))


def test_a_job_writes_each_incidents_entry_and_outbox_row_in_order(db: Db) -> None:
    for n in range(3):
        db.open(f"p{n}", f"Disk full {n}", labels("DiskFull", "storage"))
    db.index()
    record_all(db)
    new = [
        db.open(f"n{n}", f"Disk full again {n}", labels("DiskFull", "storage")) for n in range(4)
    ]
    dedicated_channel(db, new)
    db.index()
    ids, upto = pending_similar(db.conn, 100)
    found = look_up_similar(db.conn, ids)
    (last,) = db.rows("SELECT max(id) FROM timeline")[0]
    with db.transaction():
        done = record_similar(db.conn, found, upto=upto, now=db.now, url=URL)
    assert done.linked == tuple(new)
    # the entries' ids follow the timeline's, in the job's order, one per incident, as one
    # change after the other gave them
    assert done.event_ids == tuple(range(last + 1, last + 1 + len(new)))
    entries = db.rows(
        "SELECT id, incident_id, time FROM timeline WHERE kind = 'similar_incidents' AND id > ? "
        "ORDER BY id",
        last,
    )
    assert entries == [(last + 1 + k, i, db.now) for k, i in enumerate(new)]
    assert done.notifications == len(new)
    outbox = db.rows(
        "SELECT incident_id, target, tier, event, event_id, idempotency_key, state FROM outbox "
        "WHERE event_id > ? ORDER BY id",
        last,
    )
    assert outbox == [
        (
            i,
            "chan",
            "incident",
            "timeline",
            last + 1 + k,
            f"incident-{i}/incident/chan/timeline/{last + 1 + k}",
            "pending",
        )
        for k, i in enumerate(new)
    ]


def test_recording_ten_incidents_sends_as_many_statements_as_recording_one(pg_url: str) -> None:
    db = PgDb(pg_url)
    try:
        for n in range(5):
            db.open(f"p{n}", f"Checkout {n}", labels("HighErrorRate", "checkout"))
        db.index()
        record_all(db)

        def recorded(count: int) -> tuple[int, int, int]:
            new = [
                db.open(f"n{count}-{n}", f"Checkout again {n}", labels("HighErrorRate", "checkout"))
                for n in range(count)
            ]
            dedicated_channel(db, new)
            db.index()
            ids, upto = pending_similar(db.conn, 100)
            found = look_up_similar(db.conn, ids)
            with db.transaction(), counted(db) as sent:
                done = record_similar(db.conn, found, upto=upto, now=db.now, url=URL)
            assert done.linked == tuple(new) and done.notifications == count
            return sent[0], len(done.event_ids), sent[1]

        recorded(2)  # the connection reads its tables' column types once, for its first rows
        one, ten = recorded(1), recorded(10)
        # each incident's change was its next entry id, its entry and its outbox row: three
        # round trips per incident while the writer held the webhooks queued behind it
        assert ten[1] == 10
        assert ten[0] == one[0], (one, ten)
        # the marks; the incidents and the postmortems, together; the next entry id; the rows
        # and the mark, together (it was six)
        assert ten[2] <= 4, ten
    finally:
        db.close()
