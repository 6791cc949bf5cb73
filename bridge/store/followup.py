"""The follow-up phase in the store: opening a follow-up for each mitigated incident, people's
commands on its items, the validation at the end of its stabilization window, and the view the
API shows. Every write runs in the writer thread, one transaction with its timeline events and
outbox rows (``store/actions._write``); the decisions are ``core/followup``'s."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bridge.core.actions import Outcome, Refusal
from bridge.core.checks import CheckResult
from bridge.core.followup import (
    RECURRENCE_DAYS,
    Evidence,
    FollowUp,
    FollowUpCommand,
    FollowUpPolicy,
    Item,
    ItemOutcome,
    PastIncident,
    decide_item,
    open_followup,
    validate,
)
from bridge.core.incidents import Event, Incident
from bridge.core.timeutil import NS, format_ns
from bridge.core.values import immutable
from bridge.store.changes import write_change
from bridge.store.incidents import INCIDENT_COLUMNS, INCIDENT_FIELDS, incident_from_row, next_id

# Alerts looked at for the findings (a large group's first ones tell as much).
MAX_EVIDENCE_ALERTS = 1000
# Incidents opened per scheduler tick, at most (the rest at the next tick).
OPEN_BATCH = 50
_ITEM_COLUMNS = "id, kind, text, state, owner, reason, detail"


def _item(row: Sequence[Any]) -> Item:
    return Item(*row)


def load_followup(conn: sqlite3.Connection, incident_id: int) -> FollowUp | None:
    row = conn.execute(
        "SELECT ticket_target FROM followups WHERE incident_id = ?", (incident_id,)
    ).fetchone()
    if row is None:
        return None
    items = conn.execute(
        f"SELECT {_ITEM_COLUMNS} FROM followup_items WHERE incident_id = ? ORDER BY id",
        (incident_id,),
    ).fetchall()
    return FollowUp(incident_id, row[0], tuple(_item(r) for r in items))


def _write_items(
    conn: sqlite3.Connection,
    incident_id: int,
    items: Sequence[Item],
    first_id: int,
    actor: str,
    now: int,
) -> None:
    new = [i for i in items if i.id is None]
    conn.executemany(
        "INSERT INTO followup_items (id, incident_id, kind, text, owner, state, reason, detail, "
        "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                first_id + n,
                incident_id,
                i.kind,
                i.text,
                i.owner,
                i.state,
                i.reason,
                i.detail,
                actor,
                now,
            )
            for n, i in enumerate(new)
        ],
    )
    conn.executemany(
        "UPDATE followup_items SET state = ?, reason = ?, detail = ?, updated_by = ?, "
        "updated_at = ? WHERE id = ?",
        [(i.state, i.reason, i.detail, actor, now, i.id) for i in items if i.id is not None],
    )


def _write_change(
    conn: sqlite3.Connection,
    before: Incident,
    outcome: ItemOutcome,
    ticket_target: str | None,
    now: int,
) -> tuple[range, int]:
    return write_change(
        conn, before, Outcome(outcome.incident, outcome.events), now, ticket_target=ticket_target
    )


# --- people's commands ---------------------------------------------------------------------


@immutable
class ItemAnswer:
    """What a command did: ``refusal`` or the timeline ids written and outbox rows."""

    refusal: Refusal | None = None
    event_ids: range = range(0)
    notifications: int = 0
    changed: bool = False


def apply_item_command(
    conn: sqlite3.Connection, before: Incident, command: FollowUpCommand, now: int
) -> ItemAnswer:
    """A person's command on the follow-up's items, in the caller's transaction."""
    assert before.id is not None
    followup = load_followup(conn, before.id)
    first_id = next_id(conn, "followup_items")
    outcome = decide_item(before, followup, command, now, first_id)
    if isinstance(outcome, Refusal):
        return ItemAnswer(refusal=outcome)
    if not outcome.changed:
        return ItemAnswer()
    assert followup is not None
    _write_items(conn, before.id, outcome.items, first_id, command.actor, now)
    ids, notifications = _write_change(conn, before, outcome, followup.ticket_target, now)
    return ItemAnswer(event_ids=ids, notifications=notifications, changed=True)


# --- opening ---------------------------------------------------------------------------------


@immutable
class OpenRequest:
    now: int
    policy: Callable[[str], FollowUpPolicy]
    # (route, severity) -> seconds within which an acknowledgement was due (None: no target)
    acknowledge_within: Callable[[str, str], float | None]
    base_url: str | None = None


def _evidence(
    conn: sqlite3.Connection, incident: Incident, acknowledge_within: float | None, now: int
) -> Evidence:
    assert incident.id is not None
    alerts = [
        (json.loads(labels), json.loads(notes or "{}"))
        for labels, notes in conn.execute(
            "SELECT a.labels, a.annotations FROM incident_alerts ia "
            "JOIN alerts a ON a.fingerprint = ia.fingerprint WHERE ia.incident_id = ? "
            "ORDER BY ia.starts_at, ia.fingerprint LIMIT ?",
            (incident.id, MAX_EVIDENCE_ALERTS),
        )
    ]
    since = now - RECURRENCE_DAYS * 86400 * NS
    recurrences: dict[str, tuple[PastIncident, ...]] = {}
    keys = {
        (labels["alertname"], incident.service or labels.get("service") or "")
        for labels, _ in alerts
        if labels.get("alertname")
    }
    for name, service in sorted(keys)[:10]:
        past = conn.execute(
            "SELECT i.id, i.title, i.opened_at FROM similar_keys k "
            "JOIN incidents i ON i.id = k.incident_id WHERE k.alertname = ? AND k.service = ? "
            "AND k.incident_id != ? AND i.opened_at >= ? ORDER BY k.incident_id DESC LIMIT 50",
            (name, service, incident.id, since),
        ).fetchall()
        key = f"alertname={name}" + (f", service={service}" if service else "")
        recurrences[key] = tuple(PastIncident(*p) for p in past)
    dead = tuple(
        (target, (error or "")[:200])
        for target, error in conn.execute(
            "SELECT target, last_error FROM outbox WHERE incident_id = ? AND state = 'dead' "
            "ORDER BY id LIMIT 20",
            (incident.id,),
        )
    )
    reopened = 0
    actions: dict[int, tuple[str, str | None]] = {}
    for entry_id, kind, data_text in conn.execute(
        "SELECT id, kind, data FROM timeline WHERE incident_id = ? "
        "AND kind IN ('status_changed', 'action') ORDER BY id",
        (incident.id,),
    ):
        data = json.loads(data_text or "{}")
        if kind == "status_changed":
            reopened += data.get("to") == "triggered"
            continue
        corrects = data.get("corrects")
        actions.pop(corrects, None)  # a correction replaces the item it corrects
        actions[entry_id] = (str(data.get("text") or ""), data.get("owner"))
    if incident.previous_id is not None:
        reopened += 1  # opened again as a new incident after its reopen window
    return Evidence(
        incident=incident,
        alerts=tuple(alerts),
        recurrences=recurrences,
        acknowledge_within_s=acknowledge_within,
        dead=dead,
        reopened=reopened,
        actions=tuple(a for a in actions.values() if a[0]),
    )


# Mitigated incidents without a follow-up, or mitigated again since theirs opened.
_TO_OPEN = (
    "FROM incidents i INDEXED BY idx_incidents_status_id "
    "LEFT JOIN followups f ON f.incident_id = i.id WHERE i.status = 'mitigated' "
    "AND (f.incident_id IS NULL OR f.opened_at < i.mitigated_at)"
)
# Follow-ups whose window ended after their incident was resolved by hand: no validation runs.
_TO_SETTLE = (
    "FROM followups INDEXED BY idx_followups_pending WHERE validated_at IS NULL "
    "AND stabilize_until <= ? "
    "AND incident_id IN (SELECT id FROM incidents WHERE status IN ('resolved', 'closed'))"
)


def has_work(conn: sqlite3.Connection, now: int) -> bool:
    """Whether ``open_due`` has anything to do: the scheduler asks on the read pool first, so
    that an idle service pays one read per tick, no write transaction."""
    row = conn.execute(
        f"SELECT EXISTS (SELECT 1 {_TO_OPEN}) OR EXISTS (SELECT 1 {_TO_SETTLE})", (now,)
    ).fetchone()
    return bool(row[0])


def open_due(conn: sqlite3.Connection, request: OpenRequest) -> list[int]:
    """Open the follow-up of every mitigated incident that has none, and restart the
    stabilization window of one mitigated again after it reopened; settle the follow-ups of
    incidents resolved by hand before their window ended. The incidents opened."""
    now = request.now
    conn.execute(
        'UPDATE followups SET validated_at = ?, validation = \'{"skipped": "resolved before '
        "the stabilization window ended\"}' WHERE incident_id IN "
        f"(SELECT incident_id {_TO_SETTLE})",
        (now, now),
    )
    rows = conn.execute(
        f"SELECT {', '.join('i.' + c for c in INCIDENT_FIELDS)}, f.opened_at {_TO_OPEN} "
        "ORDER BY i.id LIMIT ?",
        (OPEN_BATCH,),
    ).fetchall()
    opened: list[int] = []
    for row in rows:
        incident = incident_from_row(row[:-1])
        assert incident.id is not None
        policy = request.policy(incident.route)
        if row[-1] is None:
            _open(conn, incident, policy, request)
        else:
            _restart(conn, incident, policy, now)
        opened.append(incident.id)
    return opened


def _open(
    conn: sqlite3.Connection, incident: Incident, policy: FollowUpPolicy, request: OpenRequest
) -> None:
    assert incident.id is not None
    now = request.now
    ack = request.acknowledge_within(incident.route, incident.severity)
    evidence = _evidence(conn, incident, ack, now)
    first_id = next_id(conn, "followup_items")
    opening = open_followup(evidence, policy, now, first_id, request.base_url)
    checks = [{"name": c.name, "expr": c.expr, "expect": c.expect} for c in policy.checks]
    # The window starts when the incident was mitigated: quiet since then is what counts.
    start = incident.mitigated_at or now
    conn.execute(
        "INSERT INTO followups (incident_id, route, opened_at, stabilize_until, window_s, "
        "ticket_target, checks) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            incident.id,
            incident.route,
            start,
            start + int(policy.stabilization_s * NS),
            policy.stabilization_s,
            policy.ticket_target,
            json.dumps(checks),
        ),
    )
    _write_items(conn, incident.id, opening.items, first_id, "incident-bridge", now)
    outcome = ItemOutcome(incident, opening.events)
    _write_change(conn, incident, outcome, policy.ticket_target, now)


def _restart(
    conn: sqlite3.Connection, incident: Incident, policy: FollowUpPolicy, now: int
) -> None:
    """Mitigated again after a reopen: the window starts over; a validation already passed
    counts no more."""
    assert incident.id is not None
    start = incident.mitigated_at or now
    (window_s,) = conn.execute(
        "SELECT window_s FROM followups WHERE incident_id = ?",
        (incident.id,),
    ).fetchone()
    conn.execute(
        "UPDATE followups SET opened_at = ?, stabilize_until = ?, validated_at = NULL, "
        "validation = NULL WHERE incident_id = ?",
        (start, start + int(window_s * NS), incident.id),
    )
    conn.execute(
        "UPDATE followup_items SET state = 'open', updated_by = 'incident-bridge', "
        "updated_at = ? WHERE incident_id = ? AND kind = 'validate' AND state = 'done'",
        (now, incident.id),
    )
    text = (
        "Follow-up resumed: mitigated again after a reopen, the stabilization window starts "
        f"over (until {format_ns(start + int(window_s * NS))})"
    )
    event = Event("followup_opened", text, {"restarted": True}, "incident-bridge")
    _write_change(conn, incident, ItemOutcome(incident, (event,)), None, now)


# --- validation ------------------------------------------------------------------------------


@immutable
class ValidationJob:
    """A follow-up whose window has ended: whether it stayed quiet, and its checks to run."""

    incident_id: int
    window_s: float
    quiet: bool
    checks: tuple[Mapping[str, str], ...]
    at: int  # the window's end: the checks are evaluated at that time


def due_validations(conn: sqlite3.Connection, now: int, limit: int = 20) -> list[ValidationJob]:
    """Follow-ups of mitigated incidents whose stabilization window has ended unvalidated.
    Quiet: none of the incident's alerts fired again since the window started (on its own
    timeline, or as a new incident that names it as its previous one)."""
    jobs: list[ValidationJob] = []
    for incident_id, opened_at, until, window_s, checks in conn.execute(
        "SELECT f.incident_id, f.opened_at, f.stabilize_until, f.window_s, f.checks "
        "FROM followups f "
        "INDEXED BY idx_followups_pending JOIN incidents i ON i.id = f.incident_id "
        "WHERE f.validated_at IS NULL AND f.stabilize_until <= ? AND i.status = 'mitigated' "
        "ORDER BY f.stabilize_until LIMIT ?",
        (now, limit),
    ).fetchall():
        fired = (
            conn.execute(
                "SELECT 1 FROM timeline WHERE incident_id = ? AND kind = 'alert_fired' AND time > ? "
                "LIMIT 1",
                (incident_id, opened_at),
            ).fetchone()
            or conn.execute(
                "SELECT 1 FROM incidents WHERE previous_id = ? AND opened_at > ? LIMIT 1",
                (incident_id, opened_at),
            ).fetchone()
        )
        jobs.append(
            ValidationJob(
                incident_id,
                window_s,
                fired is None,
                tuple(json.loads(checks or "[]")),
                until,
            )
        )
    return jobs


def next_validation_at(conn: sqlite3.Connection, now: int) -> int | None:
    """When the next stabilization window ends after ``now`` (the scheduler wakes then, not at
    its tick; the windows that ended already are the tick's)."""
    row = conn.execute(
        "SELECT min(stabilize_until) FROM followups INDEXED BY idx_followups_pending "
        "WHERE validated_at IS NULL AND stabilize_until > ?",
        (now,),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def record_validation(
    conn: sqlite3.Connection,
    job: ValidationJob,
    checks: Sequence[CheckResult],
    now: int,
) -> tuple[range, int]:
    """Record a validation (the incident read again: it may have changed while the checks ran)."""
    row = conn.execute(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?", (job.incident_id,)
    ).fetchone()
    followup = load_followup(conn, job.incident_id)
    if row is None or followup is None:
        return range(0), 0
    incident = incident_from_row(row)
    if incident.status != "mitigated":
        return range(0), 0  # reopened meanwhile (the window restarts) or resolved by hand
    outcome = validate(
        incident, followup, quiet=job.quiet, window_s=job.window_s, checks=checks, now=now
    )
    validation = next(e.data for e in outcome.events if e.kind == "validated")
    if validation["passed"]:
        conn.execute(
            "UPDATE followups SET validated_at = ?, validation = ? WHERE incident_id = ?",
            (now, json.dumps(validation), job.incident_id),
        )
    else:
        # Not healthy yet: look again after another window, and check the item off then if
        # it is. The timeline hears of a failure when its reasons change, not at every look.
        (before,) = conn.execute(
            "SELECT validation FROM followups WHERE incident_id = ?", (job.incident_id,)
        ).fetchone()
        conn.execute(
            "UPDATE followups SET stabilize_until = ?, validation = ? WHERE incident_id = ?",
            (now + int(max(job.window_s, 1.0) * NS), json.dumps(validation), job.incident_id),
        )
        if before and json.loads(before).get("reasons") == validation.get("reasons"):
            _write_items(conn, job.incident_id, outcome.items, 0, "incident-bridge", now)
            return range(0), 0
    _write_items(conn, job.incident_id, outcome.items, 0, "incident-bridge", now)
    return _write_change(conn, incident, outcome, followup.ticket_target, now)


# --- the view --------------------------------------------------------------------------------


def followup_view(conn: sqlite3.Connection, incident_id: int) -> dict[str, Any] | None:
    """An incident's follow-up as the API shows it, each item with its ticket when it has one."""
    row = conn.execute(
        "SELECT route, opened_at, stabilize_until, ticket_target, checks, validated_at, "
        "validation FROM followups WHERE incident_id = ?",
        (incident_id,),
    ).fetchone()
    if row is None:
        return None
    route, opened_at, until, ticket_target, checks, validated_at, validation = row
    tickets: Mapping[str, Any] = {}
    if ticket_target:
        state = conn.execute(
            "SELECT state FROM target_state WHERE incident_id = ? AND target = ?",
            (incident_id, ticket_target),
        ).fetchone()
        if state is not None:
            tickets = json.loads(state[0] or "{}").get("tickets") or {}
    items = []
    for r in conn.execute(
        "SELECT id, kind, text, state, owner, reason, detail, created_by, created_at, "
        "updated_by, updated_at FROM followup_items WHERE incident_id = ? ORDER BY id",
        (incident_id,),
    ):
        item_id, kind, text, state, owner, reason, detail, cby, cat, uby, uat = r
        ticket = tickets.get(str(item_id))
        items.append(
            {
                "id": item_id,
                "kind": kind,
                "text": text,
                "state": state,
                "owner": owner,
                "reason": reason,
                "detail": json.loads(detail or "{}"),
                "ticket": dict(ticket) if isinstance(ticket, Mapping) else None,
                "created_by": cby,
                "created_at": format_ns(cat),
                "updated_by": uby,
                "updated_at": format_ns(uat) if uat is not None else None,
            }
        )
    return {
        "incident_id": incident_id,
        "route": route,
        "stabilization_started_at": format_ns(opened_at),
        "stabilize_until": format_ns(until),
        "ticket_target": ticket_target,
        "checks": json.loads(checks or "[]"),
        "validated_at": format_ns(validated_at) if validated_at is not None else None,
        "validation": json.loads(validation) if validation else None,
        "open_items": sum(1 for i in items if i["state"] == "open" and i["kind"] != "action"),
        "items": items,
    }


def incident_followup(
    conn: sqlite3.Connection, incident_id: int
) -> tuple[bool, dict[str, Any] | None]:
    """Whether the incident exists, and its follow-up (None: not opened)."""
    exists = conn.execute("SELECT 1 FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    return exists is not None, followup_view(conn, incident_id)
