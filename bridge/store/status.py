"""What the public status page reads (docs/status-page.md), in one read transaction: the
status updates marked public, newest first, and the facts of the incidents that decide the
components' states (core/status.py decides).

Privacy starts here: of a public update only its public text and public title leave the
database (``json_extract`` of those two keys), never the entry's own text, its actor or the
incident's title. The incidents' labels leave only to be matched against the components'.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from bridge.core.status import HURTING, LINK_KIND, IncidentFacts, LinkChange, PublicUpdate
from bridge.core.values import immutable

# Migration 0025_status (the same statement on both backends): the status updates by id alone,
# so that the page's newest-first read walks back from the newest and stops after ``limit``
# public ones. The reminders' index of status updates (0007) is by incident first: through it
# every status update was sorted on each read (155 ms for 101,000 of them on SQLite).
STATUS_UPDATES_INDEX = (
    "CREATE INDEX idx_timeline_status_updates_id ON timeline (id) WHERE kind = 'status_update'"
)
# IN lists at most this long (SQLite's variables), read in chunks.
_CHUNK = 500


@immutable
class StatusRead:
    updates: tuple[PublicUpdate, ...]
    incidents: tuple[IncidentFacts, ...]  # the open ones and those of the updates

    def open_incidents(self) -> list[IncidentFacts]:
        return [i for i in self.incidents if i.status in HURTING]

    def by_id(self) -> dict[int, IncidentFacts]:
        return {i.id: i for i in self.incidents}


def _labels(text: Any) -> dict[str, str] | None:
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    return {str(k): str(v) for k, v in value.items()}


def _names(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _chunks(ids: Sequence[int]) -> list[Sequence[int]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


def read_status(conn: sqlite3.Connection, *, limit: int) -> StatusRead:
    """The newest ``limit`` public updates, and the incidents triggered or acknowledged now
    with those the updates belong to."""
    rows = conn.execute(
        "SELECT id, incident_id, time, json_extract(data, '$.public_text'), "
        "json_extract(data, '$.public_title') FROM timeline "
        "WHERE kind = 'status_update' AND json_extract(data, '$.public_text') IS NOT NULL "
        "ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    updates = tuple(
        PublicUpdate(r[0], r[1], r[2], str(r[3]), str(r[4]) if r[4] else None) for r in rows
    )
    open_ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM incidents WHERE status IN (?, ?) ORDER BY id", HURTING
        ).fetchall()
    ]
    ids = sorted(set(open_ids) | {u.incident_id for u in updates})
    head: dict[int, tuple[str, str, str]] = {}
    label_sets: dict[int, list[dict[str, str]]] = {i: [] for i in ids}
    changes: dict[int, list[LinkChange]] = {i: [] for i in ids}
    for chunk in _chunks(ids):
        marks = ", ".join("?" * len(chunk))
        for r in conn.execute(
            f"SELECT id, severity, status, coalesce(route, 'default') FROM incidents "
            f"WHERE id IN ({marks})",
            tuple(chunk),
        ):
            head[r[0]] = (r[1], r[2], r[3])
        for r in conn.execute(
            f"SELECT DISTINCT ia.incident_id, a.labels FROM incident_alerts ia "
            f"JOIN alerts a ON a.fingerprint = ia.fingerprint WHERE ia.incident_id IN ({marks})",
            tuple(chunk),
        ):
            labels = _labels(r[1])
            if labels is not None:
                label_sets[r[0]].append(labels)
        for r in conn.execute(
            f"SELECT incident_id, labels FROM incident_sources WHERE incident_id IN ({marks})",
            tuple(chunk),
        ):
            labels = _labels(r[1])
            if labels:
                label_sets[r[0]].append(labels)
        for r in conn.execute(
            f"SELECT incident_id, data FROM timeline WHERE kind = ? "
            f"AND incident_id IN ({marks}) ORDER BY id",
            (LINK_KIND, *chunk),
        ):
            data = json.loads(r[1]) if r[1] else {}
            changes[r[0]].append(LinkChange(_names(data.get("add")), _names(data.get("remove"))))
    incidents = tuple(
        IncidentFacts(i, *head[i], tuple(label_sets[i]), tuple(changes[i]))
        for i in ids
        if i in head
    )
    return StatusRead(updates, incidents)
