"""Drills over the running service (docs/drills.md): a drill fired straight into the bridge,
and ``--auto``'s walk of the four stages through the actions people use.

A drill fired here is the webhook Alertmanager would send for the drill's alert
(core/drills.webhook), evaluated by the active rules and written by the store's ingest as any
webhook is: the same path, so the drill proves the routes, tiers and targets it goes through
(``incident-bridge drill --through-alertmanager`` proves Alertmanager's part too).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from bridge import promql
from bridge.core import drills, jsontext
from bridge.core.actions import AddEntry, AssignRole, PostUpdate, Transition
from bridge.core.alertmanager import parse_webhook
from bridge.core.followup import SetItem
from bridge.core.timeutil import format_ns
from bridge.service import AppState, act
from bridge.store.interface import IngestItem, OpenRequest
from bridge.targets import MESSAGE_TYPES

log = logging.getLogger(__name__)

# who --auto acts as, on the timeline and in the report
AUTO_ACTOR = "drill-auto"
# how long --auto waits for the follow-up to open after mitigating (the scheduler opens it)
FOLLOWUP_WAIT_S = 10.0


class DrillError(Exception):
    """A drill the rules cannot take: 400, ``field`` names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _check_route(state: AppState, route: str | None) -> None:
    if route is None:
        return
    ruleset = getattr(state.runtime.policy, "ruleset", None)
    names = [r.name for r in ruleset.routes()] if ruleset is not None else ["default"]
    if route not in names:
        shown = ", ".join(names[:20])
        raise DrillError("route", f"unknown route {route!r}; routes: {shown}")


async def fire(
    state: AppState,
    *,
    route: str | None = None,
    severity: str | None = None,
    stakeholders: bool = False,
) -> dict[str, Any]:
    """Fire a drill into the bridge: its name (the ``drill_id`` label) and the incidents it
    opened. Raises ``DrillError`` for an unknown route, ``StoreUnavailable`` from the store."""
    _check_route(state, route)
    name = uuid.uuid4().hex[:12]
    labels = drills.labels(name=name, route=route, severity=severity, stakeholders=stakeholders)
    now = state.clock()
    body = jsontext.dumps(drills.webhook(labels, now)).encode()
    payload = parse_webhook(body)
    decisions = state.runtime.policy.evaluate(payload, now)
    item = IngestItem(
        payload=payload,
        decisions=decisions,
        sha256=hashlib.sha256(body).hexdigest(),
        body=None,
        now=now,
    )
    result = await state.store.ingest.apply_webhooks(item)
    state.committed(notifications=result.notifications)
    return {"drill": name, "incidents": [t.id for t in result.incidents], "labels": labels}


async def _open_followups(state: AppState) -> None:
    """Open the follow-up of the incidents mitigated, as the scheduler's follow-up step does."""
    runtime = state.runtime

    def acknowledge_within(route: str, severity: str) -> float | None:
        return runtime.reminder_policy(route, severity).acknowledge_within_s

    request = OpenRequest(
        now=state.clock(),
        policy=runtime.followup_policy,
        acknowledge_within=acknowledge_within,
        base_url=state.settings.base_url,
    )
    if await state.store.followups.has_work(request.now):
        await state.store.followups.open_due(request)


async def fire_scheduled(state: AppState) -> int:
    """The scheduler's step for the rules' scheduled drills (``drills:`` of a route): each
    slot of the last FIRE_WITHIN_NS fired once, each coming one within ``announce_before``
    announced once, each claimed in the store first (``drill_runs``), so that a second tick,
    a restart or another replica does nothing twice. The announcement is a channel message to
    the route's general tier (``announcement_targets``), written with its claim in one
    transaction and sent by the outbox worker. A crash between the fire claim and the firing
    loses that drill: once at most, never twice. The drills fired."""
    ruleset = getattr(state.runtime.policy, "ruleset", None)
    if ruleset is None:
        return 0
    now = state.clock()
    fired = 0
    for route in ruleset.routes():
        for schedule in route.settings.drills:
            announce, due_now = drills.due(schedule, now)
            targets = announcement_targets(state, route.settings.tiers.general)
            for slot in announce:
                data = {
                    "route": route.name,
                    "severity": schedule.severity,
                    "at": format_ns(slot),
                    "stakeholders": schedule.stakeholders,
                }
                if await state.store.drills.announce(route.name, slot, now, data, targets):
                    state.committed(notifications=len(targets))
                    log.info(
                        "drill on route %s (%s) at %s announced to %s",
                        route.name,
                        schedule.severity,
                        format_ns(slot),
                        ", ".join(targets)
                        or "no target (the route's general tier has none "
                        "that takes channel messages)",
                    )
            for slot in due_now:
                if await state.store.drills.claim_run(route.name, slot, "fire", now):
                    done = await fire(
                        state,
                        route=route.name,
                        severity=schedule.severity,
                        stakeholders=schedule.stakeholders,
                    )
                    fired += 1
                    log.info(
                        "scheduled drill %s fired on route %s: incidents %s",
                        done["drill"],
                        route.name,
                        done["incidents"],
                    )
    return fired


def announcement_targets(state: AppState, general: Sequence[str]) -> list[str]:
    """The targets of a route's general tier that take channel messages (a channel people
    read: ``targets.MESSAGE_TYPES``); a paging or ticket target there is left out."""
    types = state.runtime.target_types
    return [name for name in general if types.get(name) in MESSAGE_TYPES]


def _commander(state: AppState) -> str:
    """Who --auto makes commander: the first person the rules know (a role goes to a known
    person), else the drill's own actor."""
    people = state.runtime.people
    return sorted(people)[0] if people else AUTO_ACTOR


async def _run_checks(state: AppState, view: Mapping[str, Any]) -> dict[str, Any]:
    """The follow-up's PromQL checks run now, not at the end of its stabilization window: a
    smoke test of the configuration wants to know today that each query runs and what it
    says (a typo, an unreachable Prometheus, a check that can never pass), not in 30 minutes.
    Only reported: the follow-up's own validation still runs when its window ends."""
    checks = view.get("checks") or []
    results = await promql.run_checks(
        state.deps.session,
        state.settings.prometheus_url,
        state.settings.prometheus_token,
        checks,
        state.clock() / 1e9,
    )
    failing = [r for r in results if not r.passed]
    return {
        "stage": "follow-up checks",
        "ok": not failing,
        "status": None,
        "error": "; ".join(f"{r.name}: {r.error or r.reason}" for r in failing) or None,
        "checks": len(checks),
        "results": [
            {"name": r.name, "passed": r.passed, "reason": r.reason, "error": r.error}
            for r in results
        ],
        "validated": view.get("validated_at") is not None,
    }


async def auto(
    state: AppState,
    incident_id: int,
    *,
    postmortem: Callable[[int, Mapping[str, str], str], Awaitable[Any]] | None = None,
    followup_wait_s: float = FOLLOWUP_WAIT_S,
    actor: str = AUTO_ACTOR,
) -> list[dict[str, Any]]:
    """Walk the drill's incident through the four stages as people would (service.act):
    acknowledge, a commander, a note, a status update, mitigate, the follow-up's open items
    done, its PromQL checks run at once, a postmortem draft (``postmortem``:
    kb/postmortems.save, passed in by the caller).
    Each stage's answer, in order: a refusal is recorded and the walk goes on, so the report
    shows every stage the configuration refused. ``actor`` does it (default ``drill-auto``)."""
    steps: list[dict[str, Any]] = []

    async def step(stage: str, command: Any) -> None:
        answer = await act(state, incident_id, command)
        body = answer.body
        steps.append(
            {
                "stage": stage,
                "ok": answer.status < 300,
                "status": answer.status,
                "error": None if answer.status < 300 else str(body.get("error", "")),
            }
        )

    who = actor
    await step("acknowledge", Transition(who, "acknowledge"))
    await step("commander", AssignRole(who, "commander", _commander(state)))
    await step("note", AddEntry(who, "note", "Drill: a note written by --auto"))
    await step("status update", PostUpdate(who, "Drill: the drill is under way (--auto)"))
    await step("mitigate", Transition(who, "mitigate"))
    # The follow-up opens behind the mitigation: the scheduler's opening, run now rather than
    # at its next tick (opening is claimed once in the store, whoever runs it first).
    await _open_followups(state)
    view: Mapping[str, Any] | None = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + followup_wait_s
    while True:
        _, view = await state.store.followups.incident_followup(incident_id)
        if view is not None or loop.time() >= deadline:
            break
        await asyncio.sleep(0.05)
    if view is None:
        steps.append({"stage": "follow-up", "ok": False, "status": None, "error": "did not open"})
    else:
        for item in view.get("items", []):
            if item.get("state") == "open":
                await step(f"follow-up item {item['id']}", SetItem(who, int(item["id"]), "done"))
        steps.append(await _run_checks(state, view))
    if postmortem is not None:
        try:
            answer = await postmortem(
                incident_id,
                {"summary": "Drill: a postmortem draft written by --auto"},
                who,
            )
            status = int(getattr(answer, "status", 200))
            error = None if status < 300 else str(answer.body.get("error", ""))
        except Exception as exc:  # a refusal of the knowledge base: reported, not raised
            status, error = 409, str(exc)
        steps.append(
            {"stage": "postmortem draft", "ok": status < 300, "status": status, "error": error}
        )
    return steps
