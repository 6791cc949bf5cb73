"""Whom an escalation level reaches under the rules: a rotation's holder or next holder, a
person, a target, and the targets that reach a person (their handles). The running service
(``runtime.Runtime.escalation_reach``) and ``rules test`` (``testing``) both ask here, so a
test case sees the people and targets a real step would notify."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from bridge.core.escalation import Reach, Recipient
from bridge.rules.rotations import Rotation, handoff_instant, holder, shift_index


def holder_name(rotation: Rotation, at: int, following: bool) -> str | None:
    """Who holds ``rotation`` at ``at`` (ns), or, ``following``, who holds it next: the holder
    at the first base hand-off after ``at`` who is someone else (None: nobody else)."""
    when = datetime.fromtimestamp(at / 1e9, tz=UTC)
    now = holder(rotation, when)
    if not following:
        return now.name
    index = shift_index(rotation, when)
    for ahead in range(1, len(rotation.members) + 2):
        day = rotation.start + timedelta(days=(index + ahead) * rotation.period_days)
        member = holder(rotation, handoff_instant(day, rotation.handoff, rotation.zone))
        if member.name != now.name:
            return member.name
    return None


def person_targets(handles: Mapping[str, str], target_types: Mapping[str, str]) -> list[str]:
    """The targets that reach a person: for each of their handles, the target of that name,
    else every target of that type (``handles: {pager: ...}`` or ``{twilio: ...}``)."""
    out: list[str] = []
    for key in handles:
        if key in target_types:
            out.append(key)
        else:
            out.extend(n for n, kind in target_types.items() if kind == key)
    return list(dict.fromkeys(out))


def reach(
    notify: Sequence[Recipient],
    at: int,
    *,
    rotations: Mapping[str, Rotation],
    people: Mapping[str, Mapping[str, str]],
    target_types: Mapping[str, str],
) -> Reach:
    """Whom a level's recipients are at ``at`` (ns; the step's due time, so that every tick
    names the same people), with the targets that reach them: a target is itself."""
    found: dict[str, Mapping[str, str]] = {}
    targets: list[str] = []
    for r in notify:
        if r.kind == "target":
            if r.name in target_types:
                targets.append(r.name)
            continue
        name: str | None = r.name
        if r.kind in ("rotation", "next"):
            rotation = rotations.get(r.name)
            name = None if rotation is None else holder_name(rotation, at, r.kind == "next")
        if name is None:
            continue
        handles = people.get(name, {})
        found.setdefault(name, handles)
        targets.extend(person_targets(handles, target_types))
    return Reach(tuple(found.items()), tuple(dict.fromkeys(targets)))


def people_of(rotations: Mapping[str, Rotation]) -> dict[str, dict[str, str]]:
    """Everyone in the rotations (overrides' people too) with their handles, as the running
    service keeps them (``runtime.Runtime.people``)."""
    return {
        m.name: dict(m.handles)
        for rotation in rotations.values()
        for m in (*rotation.members, *(o.member for o in rotation.overrides))
        if m.handles
    }
