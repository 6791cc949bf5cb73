"""The dead man's switch over the running service (docs/heartbeats.md): beats recorded, and the
scheduler's step that raises a late heartbeat's alert and resolves it when the heartbeat
returns (``check_heartbeats``, on the replica holding the scheduler's lease).

A late heartbeat is the firing alert ``core/heartbeats.missing_payload`` describes, written
through the webhook's own path (``store.ingest``, ``via`` "heartbeat") with the decision the
rules make for it: its incident has the route's tiers, roles, reminders and follow-up, and
resolving the alert mitigates it as any alert's resolve does. The alert's start is the
episode's (kept in the store): sending it again on a second tick, after a crash or by another
replica changes nothing, so there is one incident per lateness episode."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection

from bridge.core import jsontext
from bridge.core.heartbeats import Heartbeat, Verdict, missing_payload, verdicts
from bridge.core.timeutil import format_ns
from bridge.service import AppState
from bridge.store.interface import IngestItem

log = logging.getLogger("bridge.service")

VIA = "heartbeat"


async def record_beats(state: AppState, names: Collection[str], at: int) -> None:
    """Heartbeats beaten at ``at``: their last beat kept; the scheduler woken when one of them
    had an episode raised (its incident is mitigated now, not a tick later)."""
    if not names:
        return
    await state.store.heartbeats.beat(names=names, at=at)
    state.committed(notifications=0, beaten=True)


async def check_heartbeats(state: AppState) -> list[Verdict]:
    """One tick: register the rules' heartbeats not seen before, judge each, raise the alert of
    those late and not raised yet, resolve it for those back. Returns what was done."""
    runtime = state.runtime
    heartbeats = runtime.heartbeats
    if not heartbeats:
        return []
    now = state.clock()
    seen = await state.store.heartbeats.read(names=list(heartbeats))  # most ticks: only this
    if len(seen) < len(heartbeats):  # first sight of some: from now on they count
        seen = await state.store.heartbeats.register(names=list(heartbeats), now=now)
    done: list[Verdict] = []
    for verdict in verdicts(heartbeats, seen, now):
        if verdict.step is None:
            continue
        heartbeat = heartbeats[verdict.name]
        kept = next(s for s in seen if s.name == verdict.name)
        if verdict.step == "raise":
            await _send(state, heartbeat, since=verdict.due_at, resolved_at=None)
            await state.store.heartbeats.mark(
                name=heartbeat.name, late_since=verdict.due_at, key=heartbeat.key, now=now
            )
            log.warning(
                "heartbeat %s: late (no beat since %s): incident raised",
                heartbeat.name,
                format_ns(kept.last_seen) if kept.last_seen is not None else "it was added",
            )
        else:
            since = kept.late_since
            assert since is not None  # a clear is for a raised episode
            at = kept.last_seen if kept.last_seen is not None else now
            await _send(state, heartbeat, since=since, resolved_at=max(at, since))
            await state.store.heartbeats.mark(name=heartbeat.name, late_since=None)
            log.info(
                "heartbeat %s: back (beat at %s): alert resolved", heartbeat.name, format_ns(at)
            )
        done.append(verdict)
    return done


async def _send(
    state: AppState, heartbeat: Heartbeat, *, since: int, resolved_at: int | None
) -> None:
    """The late heartbeat's alert, firing or resolved, through the webhook's path."""
    payload = missing_payload(heartbeat, since=since, resolved_at=resolved_at)
    now = state.clock()
    decide = getattr(state.runtime.policy, "decide_heartbeat", None)
    if decide is not None:
        decisions = [decide(heartbeat, payload, now)]
    else:  # heartbeats come with rules; a policy without the method routes it as an alert
        decisions = state.runtime.policy.evaluate(payload, now)
    body = jsontext.dumps(payload.model_dump(by_alias=True)).encode()
    item = IngestItem(
        payload=payload,
        decisions=decisions,
        sha256=hashlib.sha256(body).hexdigest(),
        body=None,
        now=now,
        via=VIA,
    )
    result = await state.store.ingest.apply_webhooks(item)
    mitigated = any(t.changed and t.status == "mitigated" for t in result.incidents)
    state.committed(notifications=result.notifications, mitigated=mitigated)
