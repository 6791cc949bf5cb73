"""Incidents people start, as the API, the pages and chat share them (docs/incidents.md):
declare one (routed by the active rules as an alert group of its labels would be), link an
Alertmanager group into one, merge one into another. Each is one transaction in the store; the
outbox worker (and the scheduler, which may have reminders due) is woken after its commit."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from bridge.core.declare import KEY_PREFIX, Declaration, DeclareError
from bridge.core.policy import Severity
from bridge.service import AppState
from bridge.store.interface import (
    ActionAnswer,
    DeclareRequest,
    Idempotency,
    LinkRequest,
    MergeRequest,
)

__all__ = ["DeclareError", "declare", "link", "merge"]


async def declare(
    state: AppState,
    *,
    actor: str,
    title: str,
    severity: Severity,
    description: str = "",
    commander: str | None = None,
    labels: Mapping[str, str] | None = None,
    route: str | None = None,
    team: str | None = None,
    idempotency: Idempotency | None = None,
) -> ActionAnswer:
    """Declare an incident; raises ``DeclareError`` for what the rules cannot take (an unknown
    route, an unknown person as commander when the rules know people)."""
    runtime = state.runtime  # read once: a reload swaps it whole
    people = runtime.people
    if commander is not None and people and commander not in people:
        known = ", ".join(sorted(people)[:20])
        raise DeclareError("commander", f"unknown person {commander!r}; people: {known}")
    now = state.clock()
    # A fresh key no Alertmanager group has: only a link sends a group's webhooks here.
    key = f"{KEY_PREFIX}{uuid.uuid4().hex}"
    decision = runtime.declared_decision(
        key=key,
        title=title,
        severity=severity,
        labels=dict(labels or {}),
        route=route,
        team=team,
        now=now,
    )
    request = DeclareRequest(
        decision=decision,
        declaration=Declaration(
            actor=actor,
            title=title,
            severity=severity,
            description=description,
            commander=commander,
            labels=dict(labels or {}),
        ),
        now=now,
        idempotency=idempotency,
        directory=people,
    )
    answer = await state.store.declared.declare(request)
    state.committed(notifications=answer.notifications)
    return answer


async def link(
    state: AppState,
    incident_id: int,
    *,
    group_key: str,
    actor: str,
    idempotency: Idempotency | None = None,
) -> ActionAnswer:
    """Link an Alertmanager group into an incident: its next webhooks update that incident."""
    answer = await state.store.declared.link(
        LinkRequest(
            incident_id=incident_id,
            group_key=group_key,
            actor=actor,
            now=state.clock(),
            idempotency=idempotency,
        )
    )
    state.committed(notifications=answer.notifications)
    return answer


async def merge(
    state: AppState,
    incident_id: int,
    *,
    into: int,
    actor: str,
    reason: str = "",
    idempotency: Idempotency | None = None,
) -> ActionAnswer:
    """Merge an incident (the duplicate) into another (``into``)."""
    answer = await state.store.declared.merge(
        MergeRequest(
            incident_id=incident_id,
            into=into,
            actor=actor,
            now=state.clock(),
            reason=reason,
            idempotency=idempotency,
        )
    )
    state.committed(notifications=answer.notifications)
    return answer
