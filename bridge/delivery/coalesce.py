"""Merge waiting notifications for the same (incident, target) into one message.

Under an alert storm the outbox may hold many rows for one incident and target; sending one
message that lists their events beats a flood (and Slack's one message per second per
channel). Order is kept: a batch covers consecutive rows, oldest first, and its event kind
is the newest row's. The worker marks every row of a batch delivered together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from bridge.targets.base import Notification

# The first event of an incident must stay its own message for targets that key on it
# (a Slack channel is created on "opened", PagerDuty triggers on it).
_ALONE = frozenset({"opened"})


@dataclass(frozen=True)
class Batch:
    notification: Notification
    row_ids: tuple[int, ...]


def coalesce(rows: Iterable[Notification], max_events: int = 20) -> list[Batch]:
    """Group ``rows`` (ordered oldest first) by (incident id, target, tier)."""
    groups: dict[tuple[object, str, str], list[Notification]] = {}
    for n in rows:
        groups.setdefault((n.incident.get("id"), n.target, n.tier), []).append(n)
    batches: list[Batch] = []
    for members in groups.values():
        batches.extend(_split(members, max_events))
    return batches


def _split(members: Sequence[Notification], max_events: int) -> list[Batch]:
    out: list[Batch] = []
    run: list[Notification] = []
    for n in members:
        if run and (n.event in _ALONE or run[0].event in _ALONE or len(run) >= max_events):
            out.append(_merge(run))
            run = []
        run.append(n)
    if run:
        out.append(_merge(run))
    return out


def _merge(run: Sequence[Notification]) -> Batch:
    last = run[-1]
    if len(run) == 1:
        return Batch(last, (last.id,))
    events = tuple(e for n in run for e in (n.events or ({"kind": n.event},)))
    # The newest snapshot of the incident; the first row's state (the caller's latest).
    merged = replace(last, events=events, state=run[0].state)
    return Batch(merged, tuple(n.id for n in run))
