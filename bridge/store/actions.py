"""Applying people's actions: runs in the writer thread, one action one transaction (shared with
whatever the writer commits alongside), with its timeline events, its outbox rows and the
answer kept for a retry with the same Idempotency-Key."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import field, replace
from typing import Any

from bridge.core import jsontext
from bridge.core.actions import (
    NO_GUARDS,
    AddEntry,
    Command,
    Dismiss,
    Entry,
    Guards,
    Outcome,
    Refusal,
    Transition,
    decide,
)
from bridge.core.followup import AddItem, FollowUpCommand, SetItem
from bridge.core.values import immutable
from bridge.store.changes import write_change
from bridge.store.followup import apply_item_command, followup_view
from bridge.store.incidents import INCIDENT_COLUMNS, incident_from_row
from bridge.store.queries import incident_summary, timeline_events


@immutable
class Idempotency:
    """A client's Idempotency-Key: ``scope`` keeps clients apart (the token's name), ``request``
    identifies what was asked (method, path and body digest), so that the same key for another
    request is refused instead of answered with someone else's result."""

    scope: str
    key: str
    request: str


@immutable
class ActionRequest:
    incident_id: int
    command: Command | FollowUpCommand
    now: int
    idempotency: Idempotency | None = None
    directory: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # (route, severity) -> the postmortem policy under the active rules: required, optional, none
    postmortem_policy: Callable[[str, str], str] | None = None
    # route -> seconds of the silence made in Alertmanager on acknowledge (None: none)
    silence_on_ack: Callable[[str], float | None] | None = None


@immutable
class ActionAnswer:
    """The HTTP status and JSON body of an action; ``notifications``: outbox rows written."""

    status: int
    body: Mapping[str, Any]
    changed: bool = False
    notifications: int = 0
    replayed: bool = False


def _error(status: int, message: str, field: str | None = None) -> ActionAnswer:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return ActionAnswer(status, body)


def kept_answer(conn: sqlite3.Connection, idem: Idempotency | None) -> ActionAnswer | None:
    """The answer kept for this Idempotency-Key (replayed), a 422 when the key was used for
    another request, or None: the request is new. Every write of a person's (actions,
    declarations, postmortem versions) asks this first, in its transaction."""
    if idem is None:
        return None
    row = conn.execute(
        "SELECT request, status, response FROM idempotency_keys WHERE scope = ? AND key = ?",
        (idem.scope, idem.key),
    ).fetchone()
    if row is None:
        return None
    if row[0] != idem.request:
        return _error(
            422,
            "this Idempotency-Key was used for another request; use a new key",
            "Idempotency-Key",
        )
    return ActionAnswer(row[1], json.loads(row[2]), replayed=True)


def keep_answer(
    conn: sqlite3.Connection, idem: Idempotency | None, answer: ActionAnswer, now: int
) -> ActionAnswer:
    """``answer`` kept for its Idempotency-Key, in the write's transaction; returned."""
    # A missing incident is not remembered: it may be a key sent too early, retried later.
    if idem is not None and answer.status != 404:
        conn.execute(
            "INSERT INTO idempotency_keys (scope, key, request, status, response, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (idem.scope, idem.key, idem.request, answer.status, jsontext.dumps(answer.body), now),
        )
    return answer


def apply_action(conn: sqlite3.Connection, request: ActionRequest) -> ActionAnswer:
    """Apply one person's command to an incident, or answer why not."""
    kept = kept_answer(conn, request.idempotency)
    if kept is not None:
        return kept
    return keep_answer(conn, request.idempotency, _apply(conn, request), request.now)


def _apply(conn: sqlite3.Connection, request: ActionRequest) -> ActionAnswer:
    incident_id, command, now = request.incident_id, request.command, request.now
    row = conn.execute(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)
    ).fetchone()
    if row is None:
        return _error(404, f"no incident {incident_id}")
    before = incident_from_row(row)
    if isinstance(command, AddItem | SetItem):
        done = apply_item_command(conn, before, command, now)
        if done.refusal is not None:
            r = done.refusal
            return _error(r.status, r.message, r.field)
        ids = done.event_ids
        body = {
            "changed": done.changed,
            "incident": incident_summary(conn, incident_id),
            "followup": followup_view(conn, incident_id),
            "events": timeline_events(conn, incident_id, list(ids)) if ids else [],
        }
        return ActionAnswer(200, body, done.changed, done.notifications)
    corrected: Entry | None = None
    if isinstance(command, AddEntry) and command.corrects is not None:
        found = conn.execute(
            "SELECT id, kind, text FROM timeline WHERE id = ? AND incident_id = ?",
            (command.corrects, incident_id),
        ).fetchone()
        corrected = Entry(*found) if found is not None else None
    outcome = decide(
        before,
        command,
        now,
        corrected=corrected,
        directory=request.directory,
        guards=_guards(conn, before, command, request.postmortem_policy),
    )
    if isinstance(outcome, Refusal):
        return _error(outcome.status, outcome.message, outcome.field)
    if isinstance(command, Dismiss) and outcome.changed:
        outcome = _dismissal(conn, outcome, command, now)
    silence = request.silence_on_ack
    ids, notifications = write_change(
        conn, before, outcome, now, silence_on_ack=bool(silence and silence(before.route))
    )
    body = {
        "changed": outcome.changed,
        "incident": incident_summary(conn, incident_id),
        "events": timeline_events(conn, incident_id, list(ids)) if ids else [],
    }
    return ActionAnswer(200, body, outcome.changed, notifications)


def _dismissal(conn: sqlite3.Connection, outcome: Outcome, command: Dismiss, now: int) -> Outcome:
    """Mark the incident dismissed before its status changes (the metrics' triggers read the
    mark: no postmortem pending, the ``dismissed`` counter), and waive its open follow-up
    checks: a false alarm has nothing to check. Action items stay: their tickets are real."""
    incident_id = outcome.incident.id
    conn.execute("UPDATE incidents SET dismissed_at = ? WHERE id = ?", (now, incident_id))
    waived = conn.execute(
        "UPDATE followup_items SET state = 'waived', reason = ?, updated_by = ?, updated_at = ? "
        "WHERE incident_id = ? AND state = 'open' AND kind != 'action'",
        (f"incident dismissed: {command.reason}", command.actor, now, incident_id),
    ).rowcount
    if not waived:
        return outcome
    (event,) = outcome.events
    data = {**event.data, "waived_items": waived}
    return replace(outcome, events=(replace(event, data=data),))


def _guards(
    conn: sqlite3.Connection,
    incident: Any,
    command: Command,
    postmortem_policy: Callable[[str, str], str] | None,
) -> Guards:
    """What resolve and close must know of the follow-up and the postmortem (read only for them),
    and dismiss whether it was done already."""
    if isinstance(command, Dismiss):
        row = conn.execute(
            "SELECT dismissed_at FROM incidents WHERE id = ?", (incident.id,)
        ).fetchone()
        return Guards(dismissed=row is not None and row[0] is not None)
    if not isinstance(command, Transition) or command.move not in ("resolve", "close"):
        return NO_GUARDS
    if command.move == "resolve":
        (open_items,) = conn.execute(
            "SELECT count(*) FROM followup_items WHERE incident_id = ? AND state = 'open' "
            "AND kind != 'action'",
            (incident.id,),
        ).fetchone()
        return Guards(open_items=open_items)
    if postmortem_policy is None or postmortem_policy(incident.route, incident.severity) != (
        "required"
    ):
        return NO_GUARDS
    published = conn.execute(
        "SELECT 1 FROM postmortem_publications WHERE incident_id = ? LIMIT 1", (incident.id,)
    ).fetchone()
    return Guards(postmortem_missing=published is None)
