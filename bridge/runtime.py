"""What the active rules make of the service: the policy and the targets built from them.

A ``Runtime`` is built aside and swapped whole (hot reload): a webhook is evaluated wholly under
the old or wholly under the new one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.core.followup import DEFAULT_POLICY, DEFAULT_POSTMORTEM, FollowUpPolicy
from bridge.core.policy import BuiltinPolicy, Policy
from bridge.core.reminders import ReminderPolicy, default_policy
from bridge.targets import build_target
from bridge.targets.base import Target, TargetDeps
from bridge.targets.console import ConsoleConfig, ConsoleTarget

if TYPE_CHECKING:
    from bridge.rules.rotations import Rotation


@dataclass(frozen=True)
class Runtime:
    policy: Policy
    targets: Mapping[str, Target]
    config_hash: str = ""
    files: tuple[str, ...] = ()
    # the rules as shown by GET /api/v1/rules, secrets masked
    shown: Mapping[str, Any] = field(default_factory=dict)
    # name -> handles ({"slack": "U123", "email": ...}) of everyone in the rotations: a person
    # given a role by hand is invited and mentioned through them
    people: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # route name -> severity -> reminders and escalation (none for a route: the defaults)
    reminders: Mapping[str, Mapping[str, ReminderPolicy]] = field(default_factory=dict)
    # route name -> the rotation its commander comes from (escalation's next commander)
    commander_rotations: Mapping[str, Rotation] = field(default_factory=dict)
    # the root route's name: an incident whose route is gone from the rules gets the root's
    root_route: str = ""
    # route name -> its follow-up policy (none for a route: the defaults)
    followups: Mapping[str, FollowUpPolicy] = field(default_factory=dict)

    # route name -> severity -> postmortem policy: required, optional or none
    postmortems: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # route name -> seconds of the silence made in Alertmanager on acknowledge (None: none)
    silences: Mapping[str, float | None] = field(default_factory=dict)
    # route name -> whether messages marked in its dedicated Slack channel go to the timeline
    chat_timelines: Mapping[str, bool] = field(default_factory=dict)

    def silence_on_ack(self, route: str) -> float | None:
        """How long the silence made on acknowledge lasts for ``route`` (the root's for a route
        that is gone); None: the route asks for none (the default, and without rules)."""
        if route in self.silences:
            return self.silences[route]
        return self.silences.get(self.root_route)

    def chat_timeline(self, route: str) -> bool:
        """Whether messages marked in the dedicated Slack channel of an incident of ``route``
        (the root's for a route that is gone) are recorded on its timeline; off without rules."""
        if route in self.chat_timelines:
            return self.chat_timelines[route]
        return self.chat_timelines.get(self.root_route, False)

    def postmortem_policy(self, route: str, severity: str) -> str:
        """``required`` (the incident cannot close without a published postmortem), ``optional``
        or ``none``, for ``route`` (the root's for a route that is gone) at ``severity``;
        without rules the shipped defaults (sev1, sev2 required; sev3 optional)."""
        by_severity = self.postmortems.get(route) or self.postmortems.get(self.root_route)
        if by_severity is None:
            return DEFAULT_POSTMORTEM.get(severity, "none")
        return by_severity.get(severity, "none")

    def followup_policy(self, route: str) -> FollowUpPolicy:
        """The follow-up policy of ``route`` in these rules (the root's for a route that is gone),
        read when an incident's follow-up opens and fixed on it then."""
        return self.followups.get(route) or self.followups.get(self.root_route) or DEFAULT_POLICY

    def reminder_policy(self, route: str, severity: str) -> ReminderPolicy:
        """The reminders of ``route`` at ``severity`` in these rules: the scheduler asks at each
        tick, so a change of the rules applies to the incidents already open."""
        by_severity = self.reminders.get(route) or self.reminders.get(self.root_route)
        if by_severity is None:
            return default_policy(severity)
        return by_severity.get(severity) or default_policy(severity)

    def next_commander(self, route: str, current: str | None, now: int) -> str | None:
        """Who an escalation hands the commander role to: the member after ``current`` in the
        route's commander rotation; None when the route's commander comes from no rotation."""
        if route in self.reminders:
            rotation = self.commander_rotations.get(route)
        else:
            rotation = self.commander_rotations.get(self.root_route)
        if rotation is None:
            return None
        from bridge.rules.rotations import next_member  # the rules load only with rule files

        member = next_member(rotation, current, datetime.fromtimestamp(now / 1e9, tz=UTC))
        return member.name if member is not None else None


def builtin_runtime(reopen_window_s: float, deps: TargetDeps) -> Runtime:
    """No rule files: one incident per Alertmanager group, every message to the console."""
    console = ConsoleTarget("console", ConsoleConfig(), deps)
    digest = hashlib.sha256(f"builtin:{reopen_window_s}".encode()).hexdigest()
    return Runtime(
        policy=BuiltinPolicy(reopen_window_s=reopen_window_s, general=("console",)),
        targets={"console": console},
        config_hash=digest,
        shown={
            "builtin": True,
            "reopen_window_s": reopen_window_s,
            "targets": {"console": {"type": "console"}},
        },
    )


class RulesError(Exception):
    """Rules that failed to load; ``errors`` are ``file:line:col: message`` lines."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__(f"{len(errors)} error(s) in the rules")
        self.errors = list(errors)


def rules_runtime(paths: Sequence[Path], deps: TargetDeps) -> Runtime:
    """Load, validate and build everything aside; raises RulesError and changes nothing."""
    from bridge.rules import load_rules
    from bridge.rules.engine import RulesPolicy
    from bridge.rules.show import ruleset_dict

    result = load_rules(list(paths))
    if result.ruleset is None:
        raise RulesError(result.errors)
    ruleset = result.ruleset
    targets: dict[str, Target] = {}
    errors: list[str] = []
    for name, spec in ruleset.targets.items():
        try:
            targets[name] = build_target(name, spec.type, spec.config or spec.settings, deps)
        except (KeyError, ValueError, TypeError) as exc:
            errors.append(f"{spec.where}: target {name!r}: {exc}")
    if errors:
        raise RulesError(errors)
    return Runtime(
        policy=RulesPolicy(ruleset),
        targets=targets,
        config_hash=result.config_hash,
        files=ruleset.files,
        shown=ruleset_dict(ruleset),
        people={
            m.name: dict(m.handles)
            for rotation in ruleset.rotations.values()
            for m in (*rotation.members, *(o.member for o in rotation.overrides))
            if m.handles
        },
        reminders={r.name: dict(r.settings.reminders) for r in ruleset.routes()},
        commander_rotations={
            r.name: ruleset.rotations[rot]
            for r in ruleset.routes()
            if (rot := r.settings.commander_rotation) is not None and rot in ruleset.rotations
        },
        root_route=ruleset.root.name,
        followups={r.name: r.settings.follow_up for r in ruleset.routes()},
        postmortems={r.name: dict(r.settings.postmortem) for r in ruleset.routes()},
        silences={r.name: r.settings.silence_on_ack_s for r in ruleset.routes()},
        chat_timelines={r.name: r.settings.chat_timeline for r in ruleset.routes()},
    )
