"""What the active rules make of the service: the policy and the targets built from them.

A ``Runtime`` is built aside and swapped whole (hot reload): a webhook is evaluated wholly under
the old or wholly under the new one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.core.escalation import NO_ESCALATION, EscalationPolicy, Reach, Recipient
from bridge.core.followup import DEFAULT_POLICY, DEFAULT_POSTMORTEM, FollowUpPolicy
from bridge.core.heartbeats import BeatIndex, Heartbeat
from bridge.core.oncall import OverrideSpan, RotationNow, ShiftRecord
from bridge.core.policy import BuiltinPolicy, Decision, Policy, Severity
from bridge.core.reminders import ReminderPolicy, default_policy
from bridge.core.status import Component
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
    # on call (docs/oncall.md): the rotations as the rules file has them (the base schedule;
    # ``rotations`` and the policy's are these with the stored overrides merged), and those
    # overrides (``with_overrides``), newest first
    yaml_rotations: Mapping[str, Rotation] = field(default_factory=dict)
    overrides: tuple[OverrideSpan, ...] = ()
    # route name -> severity -> escalation policy (docs/oncall.md); none without rules
    escalations: Mapping[str, Mapping[str, EscalationPolicy]] = field(default_factory=dict)
    # the rotations (escalation's holders) and target name -> type (people's handles)
    rotations: Mapping[str, Rotation] = field(default_factory=dict)
    target_types: Mapping[str, str] = field(default_factory=dict)
    # the dead man's switch: name -> heartbeat, and the alerts that beat them by alertname
    heartbeats: Mapping[str, Heartbeat] = field(default_factory=dict)
    beats: BeatIndex = field(default_factory=lambda: BeatIndex(()))
    # the public status page's components (docs/status-page.md), in the rules' order
    components: Mapping[str, Component] = field(default_factory=dict)

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

    def declared_decision(
        self,
        *,
        key: str,
        title: str,
        severity: Severity,
        labels: Mapping[str, str],
        route: str | None,
        team: str | None,
        now: int,
    ) -> Decision:
        """What these rules decide for an incident declared by hand (docs/incidents.md): the
        route (named, or the one its labels and team select), tiers, roles and policies an
        alert group of those labels would get; raises ``core.declare.DeclareError``."""
        from bridge.core.declare import builtin_decision

        if isinstance(self.policy, BuiltinPolicy):
            return builtin_decision(
                key=key,
                title=title,
                severity=severity,
                labels=labels,
                route=route,
                team=team,
                general=self.policy.general,
                reopen_window_s=self.policy.reopen_window_s,
            )
        from bridge.rules.declared import declare_decision  # the rules load only with rule files
        from bridge.rules.engine import RulesPolicy

        assert isinstance(self.policy, RulesPolicy)
        return declare_decision(
            self.policy,
            key=key,
            title=title,
            severity=severity,
            labels=labels,
            route=route,
            team=team,
            now_ns=now,
        )

    def escalation_policy(self, route: str, severity: str) -> EscalationPolicy:
        """The escalation policy of ``route`` (the root's for a route that is gone) at
        ``severity``: the scheduler asks at each tick, as for reminders."""
        known = route if route in self.escalations else self.root_route
        return self.escalations.get(known, {}).get(severity, NO_ESCALATION)

    def escalation_reach(self, notify: Sequence[Recipient], at: int) -> Reach:
        """Whom a level's recipients are at ``at`` (ns; the step's due time, so that every
        tick names the same people), with the targets that reach them (rules/escalation)."""
        from bridge.rules.escalation import reach  # the rules load only with rule files

        return reach(
            notify,
            at,
            rotations=self.rotations,
            people=self.people,
            target_types=self.target_types,
        )

    def with_overrides(self, spans: Sequence[OverrideSpan]) -> Runtime:
        """This runtime with the stored overrides ``spans`` (newest first) merged over the
        rules file's: the holder that the rules' roles, escalation and the on-call answers
        use. Always from the rules file's rotations, so applying a new snapshot replaces the
        old one; the pure rotation code never reads the store."""
        base = self.yaml_rotations or self.rotations
        if not base:
            return replace(self, overrides=tuple(spans))
        from bridge.rules.engine import RulesPolicy  # the rules load only with rule files
        from bridge.rules.rotations import Member, Override, with_overrides

        by_rotation: dict[str, list[Override]] = {}
        for s in spans:
            rotation = base.get(s.rotation)
            if rotation is None or s.end <= s.start:
                continue  # a rotation gone from the rules, or an override ended before it began
            member = rotation.member(s.person) or Member(s.person, self.people.get(s.person, {}))
            by_rotation.setdefault(s.rotation, []).append(
                Override(
                    datetime.fromtimestamp(s.start / 1e9, UTC),
                    datetime.fromtimestamp(s.end / 1e9, UTC),
                    member,
                )
            )
        merged = {n: with_overrides(r, tuple(by_rotation.get(n, ()))) for n, r in base.items()}
        policy = self.policy
        if isinstance(policy, RulesPolicy):
            policy = replace(policy, ruleset=replace(policy.ruleset, rotations=merged))
        return replace(
            self,
            policy=policy,
            rotations=merged,
            yaml_rotations=base,
            commander_rotations={
                route: merged.get(r.name, r) for route, r in self.commander_rotations.items()
            },
            overrides=tuple(spans),
        )

    def known_person(self, name: str) -> bool:
        """A member of a rotation (who an override may name)."""
        return any(
            r.member(name) is not None for r in (self.yaml_rotations or self.rotations).values()
        )

    def oncall_now(self, at: int, spans: Sequence[OverrideSpan] | None = None) -> list[RotationNow]:
        """Every rotation's holder at ``at`` (ns) and the next one, overrides applied (the
        runtime's snapshot, or ``spans`` when given: an answer about another instant reads
        them from the store)."""
        from bridge.rules.rotations import now_and_next

        runtime = self if spans is None else self.with_overrides(spans)
        when = datetime.fromtimestamp(at / 1e9, UTC)
        out = []
        for name in sorted(runtime.rotations):
            rotation = runtime.rotations[name]
            now, following = now_and_next(rotation, when)
            out.append(
                RotationNow(
                    name,
                    rotation.timezone,
                    _record(name, now),
                    None if following is None else _record(name, following),
                )
            )
        return out

    def handoffs(self, rotation: str, after: int, until: int) -> list[tuple[str, str, int]]:
        """The hand-offs of ``rotation`` in ``(after, until]`` (ns), overrides applied: (who
        hands off, to whom, when), oldest first; a person holding on across a base hand-off
        hands nothing."""
        from itertools import pairwise

        found = self.oncall_shifts(after, until + 1, rotation=rotation)
        return [
            (a.person, b.person, b.start)
            for a, b in pairwise(found)
            if after < b.start <= until and a.end == b.start
        ]

    def oncall_shifts(
        self,
        start: int,
        end: int,
        *,
        rotation: str | None = None,
        person: str | None = None,
        spans: Sequence[OverrideSpan] | None = None,
    ) -> list[ShiftRecord]:
        """The shifts between ``start`` and ``end`` (ns) of one rotation, or one person's in
        every rotation, overrides applied; by start."""
        from bridge.rules.rotations import shifts

        runtime = self if spans is None else self.with_overrides(spans)
        a = datetime.fromtimestamp(start / 1e9, UTC)
        b = datetime.fromtimestamp(end / 1e9, UTC)
        out: list[ShiftRecord] = []
        for name, r in runtime.rotations.items():
            if rotation is not None and name != rotation:
                continue
            out.extend(
                _record(name, s)
                for s in shifts(r, a, b)
                if person is None or s.member.name == person
            )
        return sorted(out, key=lambda s: (s.start, s.rotation))

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


def _record(rotation: str, shift: Any) -> ShiftRecord:
    """A ``rules.rotations.Shift`` as the core's record (ns)."""
    return ShiftRecord(
        rotation,
        shift.member.name,
        int(shift.start.timestamp()) * 10**9,
        int(shift.end.timestamp()) * 10**9,
    )


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
        escalations={r.name: dict(r.settings.escalation) for r in ruleset.routes()},
        rotations=dict(ruleset.rotations),
        target_types={name: spec.type for name, spec in ruleset.targets.items()},
        heartbeats=dict(ruleset.heartbeats),
        beats=BeatIndex(ruleset.heartbeats.values()),
        components=dict(ruleset.components),
    )
