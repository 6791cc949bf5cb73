"""Applying webhooks: runs in the writer thread, inside the writer's transaction.

The writer hands over every webhook queued at the same moment. They are planned one after the
other against an in-memory view of the incidents they touch, and their rows are written with one
``executemany`` per table at the end: a burst of N webhooks costs a handful of SQLite calls
instead of a dozen per webhook (each call releases and retakes the GIL that the event loop
needs). Reads that the view cannot answer first flush what is buffered, so they always see the
batch's own earlier writes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bridge.core import jsontext
from bridge.core.alertmanager import Alert, WebhookPayload, fingerprint
from bridge.core.incidents import AlertState, Incident, Plan, plan_webhook
from bridge.core.notify import plan_notifications
from bridge.core.policy import Decision, Tiers
from bridge.core.text import escape_controls
from bridge.core.values import immutable
from bridge.store import declared
from bridge.store.incidents import (
    INCIDENT_COLUMNS,
    INCIDENT_FIELDS,
    INSERT_EVENT,
    INSERT_OUTBOX,
    UPSERT_INCIDENT,
    incident_from_row,
    incident_values,
    insert_rows,
    together,
)

_INCIDENT_ROW = ", ".join(f"incidents.{f}" for f in INCIDENT_FIELDS)
# incidents.next_ids of the three tables a batch adds to, as a statement of its own: the batch
# sends it together with its other reads
_NEXT_IDS = "SELECT " + ", ".join(
    f"(SELECT coalesce(max(id), 0) + 1 FROM {t})" for t in ("incidents", "timeline", "webhooks")
)

log = logging.getLogger("bridge.store")

# The alerts table holds the newest occurrence per fingerprint; a stale copy (older startsAt,
# or "firing" for an occurrence already resolved) only refreshes last_seen. The stored row's
# columns are named with their table: PostgreSQL calls a bare one ambiguous beside excluded.
_NEWER = (
    "(excluded.starts_at > alerts.starts_at OR (excluded.starts_at = alerts.starts_at "
    "AND alerts.status = 'firing'))"
)
_UPSERT_ALERT = (
    "INSERT INTO alerts (fingerprint, labels, annotations, status, starts_at, ends_at, "
    "generator_url, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(fingerprint) DO UPDATE SET last_seen = excluded.last_seen, "
    "labels = CASE WHEN excluded.starts_at >= alerts.starts_at THEN excluded.labels "
    "ELSE alerts.labels END, "
    "annotations = CASE WHEN excluded.starts_at >= alerts.starts_at "
    "THEN excluded.annotations ELSE alerts.annotations END, "
    "generator_url = CASE WHEN excluded.starts_at >= alerts.starts_at "
    "THEN excluded.generator_url ELSE alerts.generator_url END, "
    f"status = CASE WHEN {_NEWER} THEN excluded.status ELSE alerts.status END, "
    f"ends_at = CASE WHEN {_NEWER} THEN excluded.ends_at ELSE alerts.ends_at END, "
    "starts_at = max(alerts.starts_at, excluded.starts_at) "
    # A fingerprint stored with other labels is not overwritten: the row is left alone, the
    # change count says so, and the batch is redone with the labels checked (LabelConflict).
    "WHERE alerts.labels = excluded.labels"
)
_UPSERT_LINK = (
    "INSERT INTO incident_alerts (incident_id, fingerprint, status, starts_at, ends_at, "
    "first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(incident_id, fingerprint) DO UPDATE SET status = excluded.status, "
    "starts_at = excluded.starts_at, ends_at = excluded.ends_at, last_seen = excluded.last_seen"
)
_INSERT_WEBHOOK = (
    "INSERT INTO webhooks (id, received_at, sha256, group_key, receiver, status, alert_count, "
    "incidents, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@immutable
class IngestItem:
    """One accepted webhook, parsed and evaluated by the rules, waiting for the writer."""

    payload: WebhookPayload
    decisions: Sequence[Decision]
    sha256: str
    body: bytes | None
    now: int
    # "api": alerts the reconciler fetched from Alertmanager's API for a truncated group,
    # replayed as the webhook that left them out would have carried them
    via: str = "webhook"


@immutable
class Touched:
    id: int
    key: str
    status: str
    severity: str
    created: bool
    changed: bool

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "key": self.key, "status": self.status, "changed": self.changed}


@immutable
class WebhookResult:
    webhook_id: int
    incidents: tuple[Touched, ...]
    plans: tuple[Plan, ...]
    # ids of the timeline events each plan wrote, in plan order
    event_ids: tuple[tuple[int, ...], ...] = ()
    notifications: int = 0  # outbox rows written

    @property
    def changed(self) -> bool:
        return any(t.changed for t in self.incidents)


@dataclass
class _Batch:
    """The incidents a batch has seen, and the rows it has yet to write."""

    conn: sqlite3.Connection
    latest: dict[str, Incident | None] = field(default_factory=dict)
    links: dict[int, dict[str, AlertState]] = field(default_factory=dict)
    alerts: list[tuple[Any, ...]] = field(default_factory=list)
    incidents: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    link_rows: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    outbox: list[tuple[Any, ...]] = field(default_factory=list)
    webhooks: list[tuple[Any, ...]] = field(default_factory=list)
    # labels (as stored JSON text) per fingerprint: written by this batch, and in the careful
    # mode also those stored before it
    labels: dict[str, str] = field(default_factory=dict)
    careful: bool = False
    next_incident: int = 0
    next_event: int = 0
    next_webhook: int = 0

    def start(self, keys: set[str], fingerprints: set[str] | None) -> None:
        """Load what the batch needs; with ``fingerprints`` (the careful mode), also the labels
        stored under them, so that a fingerprint that names other labels is caught before its
        rows are written."""
        conn = self.conn
        wanted = list(fingerprints or ())
        # Per key its newest incident's id (the max of the (key, id) index, a subquery per
        # key: no join for a planner to turn into a scan), then those rows by their ids.
        # PostgreSQL's statistics lag a table that grows fast (a storm of new incidents): with
        # "key IN (...) GROUP BY key" it chose scans of the whole table, and it hashed a join of
        # the keys with "incidents.id = (SELECT max ...)" over a scan of the whole table too
        # (a batch's cost growing with every incident). A batch of new keys (a storm) stops
        # after the first statement.
        values = ", ".join("(?)" for _ in keys)
        # The next ids, the stored labels and the keys' newest ids sent together: on
        # PostgreSQL one round trip, which under load costs the writer's thread a wait for the
        # GIL besides the server's answer (docs/performance.md)
        with together(conn):
            ids_read = conn.execute(_NEXT_IDS)
            labels_read = [
                conn.execute(
                    "SELECT fingerprint, labels FROM alerts WHERE fingerprint IN "
                    f"({','.join('?' * len(chunk))})",
                    chunk,
                )
                for chunk in (wanted[i : i + 500] for i in range(0, len(wanted), 500))
            ]
            newest_read = (
                conn.execute(
                    "SELECT (SELECT max(i.id) FROM incidents i WHERE i.key = wanted.column1) "
                    f"FROM (VALUES {values}) AS wanted",
                    tuple(keys),
                )
                if keys
                else None
            )
        self.next_incident, self.next_event, self.next_webhook = (
            int(v) for v in ids_read.fetchone()
        )
        for cur in labels_read:
            self.labels.update(cur.fetchall())
        if newest_read is None:
            return
        newest = [int(i) for (i,) in newest_read.fetchall() if i is not None]
        rows = []
        if newest:
            rows = conn.execute(
                f"SELECT {_INCIDENT_ROW} FROM incidents WHERE incidents.id IN "
                f"({','.join('?' * len(newest))})",
                newest,
            ).fetchall()
        self.latest = dict.fromkeys(keys)
        for row in rows:
            incident = incident_from_row(row)
            self.latest[incident.key] = incident
            self.links[row[0]] = {}
        if self.links:
            marks = ",".join("?" * len(self.links))
            for fp, incident_id, status, starts_at, ends_at in conn.execute(
                "SELECT fingerprint, incident_id, status, starts_at, ends_at FROM incident_alerts "
                f"WHERE incident_id IN ({marks})",
                tuple(self.links),
            ):
                self.links[incident_id][fp] = AlertState(fp, status, starts_at, ends_at)

    def known(
        self, key: str, fingerprints: Sequence[str], links: dict[str, AlertState]
    ) -> dict[str, AlertState]:
        """Newest state per fingerprint across every incident with this key."""
        known = {fp: links[fp] for fp in fingerprints if fp in links}
        missing = [fp for fp in fingerprints if fp not in known]
        if missing:
            # The query must see this batch's own writes, but only a link row of one of these
            # fingerprints can change its answer (an incident row joins it only through one):
            # without such a row buffered, nothing is flushed, and the batch's other rows still
            # go together (on PostgreSQL a flush is round trips per webhook)
            wanted = set(missing)
            if any(row[1] in wanted for row in self.link_rows):
                self.flush()
            marks = ",".join("?" * len(missing))
            rows = self.conn.execute(
                "SELECT ia.fingerprint, ia.status, ia.starts_at, ia.ends_at FROM incident_alerts ia "
                f"JOIN incidents i ON i.id = ia.incident_id WHERE i.key = ? AND ia.fingerprint IN ({marks}) "
                "ORDER BY ia.incident_id DESC",
                (key, *missing),
            )
            for fp, status, starts_at, ends_at in rows:
                known.setdefault(fp, AlertState(fp, status, starts_at, ends_at))
        return known

    def flush(self) -> None:
        conn = self.conn
        # Order matters: links and events refer to alerts and incidents.
        if self.alerts:
            written = conn.total_changes
            insert_rows(conn, _UPSERT_ALERT, self.alerts)
            if not self.careful and conn.total_changes - written != len(self.alerts):
                raise LabelConflict  # a row was refused: a fingerprint with other labels
        with together(conn):
            if self.incidents:
                insert_rows(conn, UPSERT_INCIDENT, list(self.incidents.values()))
            if self.link_rows:
                insert_rows(conn, _UPSERT_LINK, self.link_rows)
            if self.events:
                insert_rows(conn, INSERT_EVENT, self.events)
            if self.outbox:
                insert_rows(conn, INSERT_OUTBOX, self.outbox)
            if self.webhooks:
                insert_rows(conn, _INSERT_WEBHOOK, self.webhooks)
        # Cleared in place: callers hold the lists' bound ``append``s across a flush.
        for rows in (self.alerts, self.incidents, self.link_rows, self.events, self.outbox):
            rows.clear()
        self.webhooks.clear()

    def apply(self, item: IngestItem) -> WebhookResult:
        """One webhook: its alerts, then each decision planned and its rows buffered, then the
        webhook's journal row. Nothing is written until ``flush``."""
        payload, now = item.payload, item.now
        by_fp, more = self._take_alerts(payload, now)
        touched: list[Touched] = []
        plans: list[Plan] = []
        event_ids: list[tuple[int, ...]] = []
        notifications = 0
        for decision in item.decisions:
            alerts = [by_fp[fp] for fp in dict.fromkeys(decision.fingerprints) if fp in by_fp]
            if more:
                alerts += [
                    a for fp in dict.fromkeys(decision.fingerprints) for a in more.get(fp, ())
                ]
            current, plan = self._plan(item, decision, alerts)
            plans.append(plan)
            if plan.incident is None:
                event_ids.append(())
                continue
            ids, notified = self._buffer_plan(plan, current, decision.tiers, now)
            event_ids.append(ids)
            notifications += notified
            touched.append(_touched(plan))
        webhook_id = self._journal(item, touched)
        return WebhookResult(
            webhook_id, tuple(touched), tuple(plans), tuple(event_ids), notifications
        )

    def _take_alerts(
        self, payload: WebhookPayload, now: int
    ) -> tuple[dict[str, Alert], dict[str, list[Alert]]]:
        """Buffer the payload's alert rows (a fingerprint stored with other labels moved first:
        ``_checked``); the alerts by the fingerprint they came with, and the further alerts
        under a fingerprint supplied more than once."""
        dumps = jsontext.dumps
        add_alert = self.alerts.append
        by_fp: dict[str, Alert] = {}
        more: dict[str, list[Alert]] = {}  # further alerts under one supplied fingerprint
        stored = self.labels
        for a in payload.alerts:
            supplied = a.fingerprint
            text = dumps(a.labels)
            prev = stored.get(supplied)
            if prev is not None and prev != text:
                fp = self._checked(a, text, payload.group_key)
                if fp != supplied:
                    a = a.model_copy(update={"fingerprint": fp})
                elif (kept := stored.get(fp)) is not None and json.loads(kept) == a.labels:
                    text = kept  # the same labels in another order: the upsert must match them
            if supplied in by_fp:
                more.setdefault(supplied, []).append(a)
            else:
                by_fp[supplied] = a
            stored[a.fingerprint] = text
            add_alert(
                (
                    a.fingerprint,
                    text,
                    dumps(a.annotations),
                    a.status,
                    a.starts_at,
                    a.ends_at if a.status == "resolved" else None,
                    a.generator_url,
                    now,
                    now,
                )
            )
        return by_fp, more

    def _plan(
        self, item: IngestItem, decision: Decision, alerts: list[Alert]
    ) -> tuple[Incident | None, Plan]:
        """The incident the decision's key has now (loaded once per batch) and the plan for
        the alerts that arrived (``core/incidents.plan_webhook``)."""
        payload = item.payload
        if decision.key not in self.latest:
            self.flush()
            self._load_key(decision.key)
        current = self.latest[decision.key]
        if current is None or current.id is None:
            links: dict[str, AlertState] = {}
            known: dict[str, AlertState] = {}  # no incident ever had this key
        else:
            links = self.links[current.id]
            known = self.known(decision.key, [a.fingerprint for a in alerts], links)
        plan = plan_webhook(
            decision=decision,
            alerts=alerts,
            truncated=payload.truncated_alerts,
            current=current,
            current_links=links,
            known=known,
            now=item.now,
            new_id=self.next_incident,
            receiver=payload.receiver or None,
            group=_group(payload) if payload.truncated_alerts else None,
            via=item.via,
        )
        return current, plan

    def _buffer_plan(
        self, plan: Plan, current: Incident | None, tiers: Tiers, now: int
    ) -> tuple[tuple[int, ...], int]:
        """Buffer a plan's rows (the incident, its links, its timeline events and the outbox
        rows the tiers call for) and keep the view up to date; the events' ids and how many
        outbox rows."""
        incident = plan.incident
        assert incident is not None
        if plan.created:
            self.links[self.next_incident] = {}
            self.next_incident += 1
        incident_id = incident.id
        assert incident_id is not None
        if plan.changed:
            self.latest[incident.key] = incident
            self.incidents[incident_id] = (*incident_values(incident), now)
        held = self.links[incident_id]
        add_link = self.link_rows.append
        for st in plan.links:
            held[st.fingerprint] = st
            add_link((incident_id, st.fingerprint, st.status, st.starts_at, st.ends_at, now, now))
        first = self.next_event
        self.next_event += len(plan.events)
        ids = tuple(range(first, self.next_event))
        add_event = self.events.append
        dumps = jsontext.dumps
        for eid, e in zip(ids, plan.events, strict=True):
            add_event((eid, incident_id, now, e.kind, e.actor, e.text, dumps(e.data)))
        if not (tiers.general or tiers.incident or tiers.stakeholders):
            return ids, 0
        entries = plan_notifications(
            before=current if current is not None and current.id == incident_id else None,
            after=incident,
            events=list(zip(ids, plan.events, strict=True)),
            tiers=tiers,
        )
        add_outbox = self.outbox.append
        for entry in entries:
            add_outbox(
                (
                    incident_id,
                    entry.target,
                    entry.tier,
                    entry.event,
                    entry.event_id,
                    entry.idempotency_key,
                    now,
                    now,
                    now,
                )
            )
        return ids, len(entries)

    def _journal(self, item: IngestItem, touched: list[Touched]) -> int:
        """Buffer the webhook's journal row; its id."""
        payload = item.payload
        webhook_id = self.next_webhook
        self.next_webhook += 1
        self.webhooks.append(
            (
                webhook_id,
                item.now,
                item.sha256,
                payload.group_key,
                payload.receiver,
                "applied" if any(t.changed for t in touched) else "unchanged",
                len(payload.alerts),
                jsontext.dumps([t.id for t in touched]),
                item.body,
            )
        )
        return webhook_id

    def _checked(self, alert: Alert, text: str, group_key: str) -> str:
        """The fingerprint to store ``alert`` under, when the one it came with is already stored
        with other labels.

        Alertmanager derives a fingerprint from the labels, so two label sets under one
        fingerprint mean that a sender supplied a false one (or that FNV-1a collided). A false
        fingerprint must not let one group rewrite another incident's alert, so whichever side's
        fingerprint does not match its labels moves to the fingerprint computed from them.
        """
        fp = alert.fingerprint
        for _ in range(3):  # a moved alert may meet another false fingerprint; give up after that
            prev = self.labels.get(fp)
            if prev is None or prev == text or json.loads(prev) == alert.labels:
                return fp
            computed = fingerprint(alert.labels)
            if computed != fp:
                log.warning(
                    "webhook alert fingerprint %s does not match its labels, stored under %s "
                    "instead (group %s)",
                    escape_controls(fp),
                    computed,
                    escape_controls(group_key),
                )
                fp = computed
                continue
            if not self._move(fp, prev, group_key):
                return fp  # both label sets hash to fp: a real collision, stored as before
        return fp

    def _move(self, fp: str, text: str, group_key: str) -> bool:
        """Move the stored alert under ``fp``, whose labels (``text``) do not hash to it, to the
        fingerprint they do hash to, with its incidents' links. False if they do hash to ``fp``."""
        real = fingerprint(json.loads(text))
        if real == fp:
            return False
        log.warning(
            "stored alert fingerprint %s does not match its labels, moved to %s (group %s sent "
            "the alert that owns it)",
            escape_controls(fp),
            real,
            escape_controls(group_key),
        )
        self.flush()
        conn = self.conn
        conn.execute(
            "INSERT INTO alerts (fingerprint, labels, annotations, status, starts_at, ends_at, "
            "generator_url, first_seen, last_seen) SELECT ?, labels, annotations, status, "
            "starts_at, ends_at, generator_url, first_seen, last_seen FROM alerts "
            "WHERE fingerprint = ? ON CONFLICT(fingerprint) DO NOTHING",
            (real, fp),
        )
        # An incident that already holds the real fingerprint keeps that link (the NOT EXISTS
        # is SQLite's UPDATE OR IGNORE written so that PostgreSQL reads it too).
        conn.execute(
            "UPDATE incident_alerts SET fingerprint = ? WHERE fingerprint = ? AND NOT EXISTS "
            "(SELECT 1 FROM incident_alerts held WHERE held.incident_id = "
            "incident_alerts.incident_id AND held.fingerprint = ?)",
            (real, fp, real),
        )
        conn.execute("DELETE FROM incident_alerts WHERE fingerprint = ?", (fp,))
        conn.execute("DELETE FROM alerts WHERE fingerprint = ?", (fp,))
        for held in self.links.values():
            st = held.pop(fp, None)
            if st is not None:
                held.setdefault(real, AlertState(real, st.status, st.starts_at, st.ends_at))
        self.labels.setdefault(real, text)
        del self.labels[fp]
        return True

    def _load_key(self, key: str) -> None:
        row = self.conn.execute(
            f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE key = ? ORDER BY id DESC LIMIT 1",
            (key,),
        ).fetchone()
        if row is None:
            self.latest[key] = None
            return
        incident = incident_from_row(row)
        self.latest[key] = incident
        self.links[row[0]] = {
            r[0]: AlertState(*r)
            for r in self.conn.execute(
                "SELECT fingerprint, status, starts_at, ends_at FROM incident_alerts "
                "WHERE incident_id = ?",
                (row[0],),
            )
        }


def _touched(plan: Plan) -> Touched:
    incident = plan.incident
    assert incident is not None and incident.id is not None
    return Touched(
        id=incident.id,
        key=incident.key,
        status=incident.status,
        severity=incident.severity,
        created=plan.created,
        changed=plan.changed,
    )


def _group(payload: WebhookPayload) -> dict[str, Any]:
    """What the reconciler needs to fetch a truncated group's other alerts."""
    return {
        "group_key": payload.group_key,
        "group_labels": dict(payload.group_labels),
        "receiver": payload.receiver,
    }


class LabelConflict(Exception):
    """A webhook's fingerprint is stored with other labels: the writer rolls the batch back and
    runs each webhook again, and for a while every batch is checked before it writes."""


class CarefulMode:
    """Whether a store's next batches read the stored labels first: for ``SECONDS`` after a
    ``LabelConflict`` (monotonic). Each store has its own (``Store.careful``); only its writer
    thread applies webhooks, so this needs no lock."""

    SECONDS = 300.0

    def __init__(self) -> None:
        self.until = 0.0

    def active(self) -> bool:
        return time.monotonic() < self.until

    def start(self) -> None:
        self.until = time.monotonic() + self.SECONDS


def apply_webhooks(
    conn: sqlite3.Connection,
    items: Sequence[IngestItem],
    *,
    careful: CarefulMode | None = None,
) -> list[WebhookResult]:
    """Store the webhooks' alerts, update their incidents and write the timeline.

    A sender's fingerprint is trusted while it names one label set. Checking every alert's
    stored labels first would cost a read per batch (about 24,000 instructions a webhook), so
    the fast path lets the alerts' upsert refuse a fingerprint stored with other labels, sees it
    in the change count, and raises ``LabelConflict``: the writer rolls back and runs each
    webhook again, now in the careful mode (``careful``, the store's) that reads the labels
    first and moves a false fingerprint (``_Batch._checked``). Without ``careful`` (a tool on a
    connection of its own) the call starts on the fast path."""
    mode = careful if careful is not None else CarefulMode()
    # A group linked into an incident by hand, or a merged incident's key, names the incident
    # its webhooks update (store/declared.py): the decisions are re-keyed before the lookup.
    links = declared.redirect(
        conn, [i.payload.group_key for i in items], [d.key for i in items for d in i.decisions]
    )
    if links:
        items = [
            replace(i, decisions=declared.redirected(i.decisions, i.payload.group_key, links))
            for i in items
        ]
    on = mode.active()
    batch = _Batch(conn, careful=on)
    batch.start(
        {d.key for item in items for d in item.decisions},
        {a.fingerprint for item in items for a in item.payload.alerts} if on else None,
    )
    try:
        results = [batch.apply(item) for item in items]
        batch.flush()
    except LabelConflict:
        mode.start()
        raise
    return results


def apply_webhook(
    conn: sqlite3.Connection,
    *,
    payload: WebhookPayload,
    decisions: Sequence[Decision],
    sha256: str,
    body: bytes | None,
    now: int,
) -> WebhookResult:
    """One webhook on its own (tests and tools); the service batches through ``apply_webhooks``."""
    return apply_webhooks(conn, [IngestItem(payload, decisions, sha256, body, now)])[0]
