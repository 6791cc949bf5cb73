"""The scheduler's escalation step: send the escalation policies' steps due now under the
active rules (``store/escalation``), each once; a step of the scheduler's tick, so with
replicas it runs on the one that holds the ``scheduler`` lease."""

from __future__ import annotations

import logging

from bridge.core.timeutil import format_ns
from bridge.service import AppState
from bridge.store.interface import FireResult

# The service's logger, as the scheduler's other steps write theirs.
log = logging.getLogger("bridge.service")


async def fire_escalations(state: AppState) -> FireResult:
    """One tick: which triggered incidents have a step due is read first, off the writer
    (most ticks write nothing); then one transaction sends them, and the outbox is woken
    after its commit. The rules are read now, so a change applies to open incidents."""
    runtime = state.runtime
    now = state.clock()
    due = await state.store.escalations.due_incidents(now, policy=runtime.escalation_policy)
    if not due:
        return FireResult()
    result = await state.store.escalations.fire_due(
        now,
        policy=runtime.escalation_policy,
        reach=runtime.escalation_reach,
        incident_ids=due,
    )
    return said(state, result)


def said(state: AppState, result: FireResult) -> FireResult:
    """What a tick of reminders or escalations sent, said after its commit: the outbox woken,
    a line per item."""
    state.committed(notifications=result.notifications)
    for fired in result.fired:
        log.info(
            "incident %d: %s sent (due %s)",
            fired.incident_id,
            fired.kind,
            format_ns(fired.due_at),
        )
    return result
