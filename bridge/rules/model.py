"""The loaded rules: an immutable route tree with inherited settings, targets, rotations."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, Template

from bridge.core.drills import Schedule
from bridge.core.escalation import EscalationPolicy
from bridge.core.followup import DEFAULT_POLICY, FollowUpPolicy
from bridge.core.heartbeats import Heartbeat
from bridge.core.policy import Severity, Tiers
from bridge.core.reminders import DEFAULT_REMINDERS, ReminderPolicy
from bridge.core.status import Component
from bridge.delivery.budget import BoundedSandbox
from bridge.rules.index import ChildIndex
from bridge.rules.matchers import Matcher
from bridge.rules.rotations import Rotation
from bridge.rules.schema import SeverityFrom

DEFAULT_SEVERITY_FROM = SeverityFrom(
    label="severity",
    map={"critical": "sev1", "error": "sev2", "high": "sev2", "warning": "sev3"},
    default="sev4",
)
DEFAULT_POSTMORTEM: Mapping[str, str] = {
    "sev1": "required",
    "sev2": "required",
    "sev3": "optional",
    "sev4": "none",
}
# The status-update cadence is the reminders' ``update_every`` (``status_update`` is its
# shorthand): one value, so the two cannot disagree.
DEFAULT_STATUS_UPDATE: Mapping[str, float | None] = {
    sev: p.update_every_s for sev, p in DEFAULT_REMINDERS.items()
}


def title_environment() -> BoundedSandbox:
    """Title templates: sandboxed, and a missing label is an error (not an empty string). The
    sandbox is bounded: label values must not size what a title allocates (``'x' * n``)."""
    env = BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.bound_filters()
    return env


@dataclass(frozen=True)
class RoleSource:
    rotation: str | None = None
    person: str | None = None

    def describe(self) -> str:
        return f"rotation:{self.rotation}" if self.rotation else f"person:{self.person}"


@dataclass(frozen=True)
class RouteSettings:
    """What a route decides, after inheritance from its parents."""

    severity: Severity | None = None
    severity_from: SeverityFrom | None = DEFAULT_SEVERITY_FROM
    team: str | None = None
    service: str | None = None
    title: str | None = None  # template source, after resolving title_template
    group_by: tuple[str, ...] | None = None
    reopen_window_s: float = 3600.0
    tiers: Tiers = field(default_factory=Tiers)
    # role -> sources; () means the role is left for a human
    roles: Mapping[str, tuple[RoleSource, ...]] = field(default_factory=dict)
    # the checklist, ticket target, stabilization window and PromQL checks (key by key)
    follow_up: FollowUpPolicy = DEFAULT_POLICY
    postmortem: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_POSTMORTEM))
    # severity -> reminders and escalation (the scheduler reads the current rules' at each tick)
    reminders: Mapping[str, ReminderPolicy] = field(default_factory=lambda: dict(DEFAULT_REMINDERS))
    # severity -> escalation policy (levels, repeats); none by default (docs/oncall.md)
    escalation: Mapping[str, EscalationPolicy] = field(default_factory=dict)
    # seconds of the silence made in Alertmanager on acknowledge; None: no silence
    silence_on_ack_s: float | None = None
    # messages marked in the dedicated Slack channel go to the timeline (docs/chat.md)
    chat_timeline: bool = False
    # the route's own scheduled drills (docs/drills.md); never inherited
    drills: tuple[Schedule, ...] = ()

    @property
    def status_update(self) -> Mapping[str, float | None]:
        """Severity -> seconds between status updates (the reminders' ``update_every``)."""
        return {sev: p.update_every_s for sev, p in self.reminders.items()}

    @property
    def commander_rotation(self) -> str | None:
        """The rotation the commander comes from, if it comes from one (escalation hands the
        role to its next member)."""
        return next((s.rotation for s in self.roles.get("commander", ()) if s.rotation), None)

    def severity_of(self, labels: Mapping[str, str]) -> Severity:
        if self.severity is not None:
            return self.severity
        sf = self.severity_from or DEFAULT_SEVERITY_FROM
        value = labels.get(sf.label, "")
        found = sf.map.get(value)
        if found is None:
            # "CRITICAL" and " critical" mean critical too, as in the built-in policy.
            found = sf.map.get(value.strip().lower(), sf.default)
        return found


@dataclass(frozen=True, eq=False)
class Route:
    name: str
    matchers: tuple[Matcher, ...]
    continue_: bool
    settings: RouteSettings
    children: tuple[Route, ...]
    where: str  # file:line:col of the route, for messages
    depth: int = 0
    title_template: Template | None = None
    title_where: str = ""  # file:line:col of the title template's text (inherited with it)
    index: ChildIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", ChildIndex([c.matchers for c in self.children]))

    def walk(self) -> Iterator[Route]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class TargetDef:
    """A declared target. ``settings`` holds resolved secrets as ``Secret``; ``config`` is the
    target type's validated config model (from ``bridge.targets.REGISTRY``)."""

    name: str
    type: str
    settings: Mapping[str, Any]
    where: str
    config: Any = None


@dataclass(frozen=True)
class RuleSet:
    root: Route
    targets: Mapping[str, TargetDef]
    rotations: Mapping[str, Rotation]
    templates: Mapping[str, str]
    files: tuple[str, ...] = ()
    config_hash: str = ""
    # the dead man's switch: name -> heartbeat (docs/heartbeats.md)
    heartbeats: Mapping[str, Heartbeat] = field(default_factory=dict)
    # the public status page's components, in the rules' order (docs/status-page.md)
    components: Mapping[str, Component] = field(default_factory=dict)

    def routes(self) -> Iterator[Route]:
        return self.root.walk()

    def route(self, name: str) -> Route | None:
        return next((r for r in self.routes() if r.name == name), None)

    def counts(self) -> tuple[int, int, int]:
        return sum(1 for _ in self.routes()), len(self.targets), len(self.rotations)
