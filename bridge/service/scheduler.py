"""The scheduler of reminders, escalations and the follow-up: one loop (``ReminderScheduler``)
that sends the reminders and escalations due (``fire_reminders``), opens the follow-up of newly
mitigated incidents and validates those whose stabilization window has ended
(``advance_followups``, the PromQL checks through ``promql.run_checks``), brings the insights'
kept aggregates up to the webhooks' marks (``insights.refresh_aggregates``); every 15 s on the
injected clock, at once when a commit says an incident was mitigated (``AppState.committed``).
With replicas, it runs on the one that holds the ``scheduler`` lease (``BackgroundLoop``), a
lease of one tick: another replica takes over within a tick and a half of the holder's end; a
mitigation on another replica is seen at the next tick."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bridge import promql
from bridge.service import AppState, BackgroundLoop
from bridge.service.drills import fire_scheduled
from bridge.service.escalation import fire_escalations, said
from bridge.service.heartbeats import check_heartbeats
from bridge.service.insights import refresh_aggregates
from bridge.service.oncall import announce_handoffs
from bridge.store.interface import FireResult, OpenRequest, StoreUnavailable

# The service's logger: its lines read as they did when this was part of bridge.service.
log = logging.getLogger("bridge.service")

# Seconds between two looks for due reminders and escalations.
REMIND_EVERY_S = 15.0


async def fire_reminders(state: AppState) -> FireResult:
    """One tick of the scheduler: send the reminders and escalations due now under the active
    rules (read now, so a change of the rules applies to the incidents already open), in one
    transaction; the outbox is woken after the commit when it has rows to send. Which
    incidents have something due is read first, off the writer: most ticks write nothing."""
    runtime = state.runtime
    now = state.clock()
    due = await state.store.reminders.due_incidents(now, policy=runtime.reminder_policy)
    if not due:
        return FireResult()
    result = await state.store.reminders.fire_due(
        now,
        policy=runtime.reminder_policy,
        next_commander=runtime.next_commander,
        directory=runtime.people,
        incident_ids=due,
    )
    return said(state, result)


class ReminderScheduler(BackgroundLoop):
    """Runs ``fire_reminders`` every ``every_s`` seconds while the service runs, the first time
    at start (what fell due while it was stopped goes out then). A store error is logged and
    the next tick tries again: the service does not stop for it."""

    NAME = "reminders"
    LEASE = "scheduler"

    def __init__(self, state: AppState, every_s: float = REMIND_EVERY_S) -> None:
        self.state = state
        self.every_s = every_s

    @property
    def lease_tick_s(self) -> float:
        return self.every_s

    async def _run(self) -> None:
        while True:
            for name, step in (
                ("reminders", fire_reminders),
                ("escalation", fire_escalations),  # escalation policies (service/escalation)
                ("follow-up", advance_followups),
                ("heartbeats", check_heartbeats),  # the dead man's switch (service/heartbeats)
                ("hand-offs", announce_handoffs),  # on call (service/oncall)
                ("drills", fire_scheduled),  # the rules' scheduled drills (service/drills)
                ("insights", refresh_aggregates),  # the kept aggregates (service/insights)
            ):
                try:
                    await step(self.state)
                except StoreUnavailable as exc:
                    log.warning("%s: store unavailable: %s; trying again next tick", name, exc)
                except Exception:
                    log.exception("%s: unexpected error; trying again next tick", name)
            pause = await self._pause()  # first: a stop while it reads leaves no coroutine behind
            due = self.state.scheduler_due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(due.wait(), pause)
            due.clear()

    async def _pause(self) -> float:
        """Seconds to the next tick: ``every_s``, or less when a stabilization window ends
        sooner (its validation runs then)."""
        try:
            now = self.state.clock()
            at = await self.state.store.followups.next_validation_at(now)
        except StoreUnavailable:
            return self.every_s
        if at is None:
            return self.every_s
        return min(self.every_s, max(0.05, (at - now) / 1e9))


async def advance_followups(state: AppState) -> int:
    """One tick of the follow-up phase: open the follow-up of every newly mitigated incident
    (the checklist from the active rules, the findings), then validate those whose
    stabilization window has ended (quiet, and the PromQL checks run outside the writer), each
    in its own transaction; a follow-up done resolves its incident. Returns the changes."""
    runtime = state.runtime

    def acknowledge_within(route: str, severity: str) -> float | None:
        return runtime.reminder_policy(route, severity).acknowledge_within_s

    request = OpenRequest(
        now=state.clock(),
        policy=runtime.followup_policy,
        acknowledge_within=acknowledge_within,
        base_url=state.settings.base_url,
    )
    opened: list[int] = []
    if await state.store.followups.has_work(request.now):
        opened = await state.store.followups.open_due(request)
    changes = len(opened)
    for incident_id in opened:
        log.info("incident %d: follow-up opened", incident_id)
    jobs = await state.store.followups.due_validations(state.clock())
    for job in jobs:
        # the checks at the window's end (job.at, ns), outside the writer
        results = await promql.run_checks(
            state.deps.session,
            state.settings.prometheus_url,
            state.settings.prometheus_token,
            job.checks,
            job.at / 1e9,
        )
        ids, _ = await state.store.followups.record_validation(job, results, state.clock())
        if ids:
            changes += 1
            log.info("incident %d: follow-up validated", job.incident_id)
    # each change (a follow-up opened, a validation recorded) may have written outbox rows
    state.committed(notifications=changes)
    return changes
