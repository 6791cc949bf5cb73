"""Escalation policies as a pure function: (an incident, when its escalation started, the policy
of its route and severity, now) -> the level steps that are due, with their due times.

A policy is a list of levels and a number of repeats. Each level names whom to notify (a
rotation's holder, its next holder, a person, a target) and ``after``: how long it waits after
the level before it (the first level: after the escalation starts). After the last level the
whole policy runs again ``repeat`` more times, the first level waiting its ``after`` again from
the last level's step. A step is (level, repetition, due time), levels and repetitions counted
from 1.

When it starts, when it stops (docs/oncall.md, "Escalation policies"):

- it starts when the incident opens (``opened_at``);
- it runs while the incident is ``triggered`` and nobody acknowledged it since the start: an
  acknowledgement stops it, and so does anything else that moves the incident on (mitigated,
  resolved, closed);
- a reopen (back to ``triggered``, a ``reopened`` timeline entry) starts it again from the
  first level, its waits counted from the reopen: an acknowledgement before the reopen does not
  stop it any more.

The due times are computed from stored values only (the incident's row and its newest reopen)
and nanosecond instants (no wall clock, so no DST), so that every tick, every process and every
replica computes the same ones; the store sends each step once per (incident, level,
repetition, due time) (``store/escalation.fire_due``).

After a stop of the scheduler, only the current repetition's steps are due (its levels up to
the current one, the missed ones at once): an earlier repetition's steps are superseded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from bridge.core.incidents import Event, Incident
from bridge.core.reminders import ACTOR, duration_text
from bridge.core.timeutil import NS, format_ns
from bridge.core.values import immutable

RecipientKind = Literal["rotation", "next", "person", "target"]
RECIPIENT_KINDS: tuple[RecipientKind, ...] = ("rotation", "next", "person", "target")
# The timeline kind of a step (core/events.py: notified as "escalated").
STEP_KIND = "escalation_step"
# The prefix of a step's key among the store's sent reminders ("escalation/LEVEL/REPETITION").
KEY_PREFIX = "escalation/"


@immutable
class Recipient:
    """Whom a level notifies: ``rotation`` its holder at the step's due time, ``next`` the
    holder after the rotation's next hand-off, ``person`` that person, ``target`` that target."""

    kind: RecipientKind
    name: str

    def describe(self) -> str:
        return f"{self.kind}: {self.name}"


@immutable
class Level:
    after_s: float
    notify: tuple[Recipient, ...]


@immutable
class EscalationPolicy:
    levels: tuple[Level, ...] = ()
    repeat: int = 0  # how many more times the whole policy runs after the first

    @property
    def cycle_ns(self) -> int:
        """The length of one run of the policy: the sum of its levels' waits."""
        return sum(int(level.after_s * NS) for level in self.levels)


NO_ESCALATION = EscalationPolicy()


@immutable
class Step:
    level: int  # from 1
    repetition: int  # from 1
    due_at: int

    @property
    def key(self) -> str:
        """The step's kind among the store's sent reminders (with its due time, the claim)."""
        return f"{KEY_PREFIX}{self.level}/{self.repetition}"


@immutable
class Reach:
    """Whom a step reaches: people (name -> their handles) and the targets it goes to."""

    people: tuple[tuple[str, Mapping[str, str]], ...] = ()
    targets: tuple[str, ...] = ()


def started_at(incident: Incident, reopened_at: int | None) -> int:
    """When the incident's escalation (re)started: it opened, or its newest reopen."""
    if reopened_at is not None and reopened_at > incident.opened_at:
        return reopened_at
    return incident.opened_at


def running(incident: Incident, start: int) -> bool:
    """Whether escalation runs: still ``triggered``, nobody acknowledged it since ``start``."""
    if incident.status != "triggered":
        return False
    return incident.acknowledged_at is None or incident.acknowledged_at < start


def steps(policy: EscalationPolicy, start: int) -> tuple[Step, ...]:
    """Every step of the policy from ``start``, in order (finite: ``repeat`` is)."""
    out: list[Step] = []
    at = start
    for repetition in range(1, policy.repeat + 2):
        for number, level in enumerate(policy.levels, 1):
            at += int(level.after_s * NS)
            out.append(Step(number, repetition, at))
    return tuple(out)


def due_steps(
    incident: Incident,
    policy: EscalationPolicy,
    now: int,
    *,
    reopened_at: int | None = None,
) -> tuple[Step, ...]:
    """The steps due for ``incident`` at ``now``, oldest first: those of the current repetition
    whose due time has passed (after a long stop, an earlier repetition's are superseded).
    ``reopened_at``: the incident's newest reopen, if any."""
    if not policy.levels:
        return ()
    start = started_at(incident, reopened_at)
    if not running(incident, start):
        return ()
    passed = [s for s in steps(policy, start) if s.due_at <= now]
    if not passed:
        return ()
    current = passed[-1].repetition
    return tuple(s for s in passed if s.repetition == current)


def step_event(
    incident: Incident,
    policy: EscalationPolicy,
    step: Step,
    reach: Reach,
    *,
    start: int,
) -> Event:
    """The timeline entry of a step. Its data: the level, repetition and due time, whom it
    reaches (``people`` with their handles, for paging targets; ``targets``, which the outbox
    rows go to: core/notify), and ``after_s``/``target_s`` as an escalation's (what the message
    templates read)."""
    level = policy.levels[step.level - 1]
    names = [name for name, _ in reach.people]
    whom = ", ".join(names) if names else "nobody by name"
    via = f" via {', '.join(reach.targets)}" if reach.targets else " (no target reaches them)"
    waited = duration_text((step.due_at - start) / NS)
    of = f" (repeat {step.repetition - 1} of {policy.repeat})" if step.repetition > 1 else ""
    text = (
        f"Escalation level {step.level} of {len(policy.levels)}{of}: not acknowledged "
        f"after {waited}, notifying {whom}{via}"
    )
    data: dict[str, Any] = {
        "level": step.level,
        "levels": len(policy.levels),
        "repetition": step.repetition,
        "due_at": format_ns(step.due_at),
        "notify": [r.describe() for r in level.notify],
        "people": names,
        "handles": {name: dict(handles) for name, handles in reach.people},
        "targets": list(reach.targets),
        "after_s": max(0, (step.due_at - start) // NS),
        "target_s": int((step.due_at - start) / NS),
    }
    return Event(STEP_KIND, text, data, ACTOR)


def step_targets(data: Mapping[str, Any]) -> Sequence[str]:
    """The targets a step's timeline entry says it goes to (core/notify reads them)."""
    targets = data.get("targets")
    return [t for t in targets if isinstance(t, str)] if isinstance(targets, list) else []
