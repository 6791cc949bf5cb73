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
