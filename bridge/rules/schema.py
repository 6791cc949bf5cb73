"""The rule files' schema as pydantic models: strict (unknown keys are errors), one per block.

These models only check shapes and value syntax; references between objects (targets,
rotations, templates), regexes and inheritance are checked by ``bridge.rules.loader``.
docs/rules.md documents every field here (a test walks these models).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, model_validator

from bridge.core.actions import MAX_TEXT
from bridge.core.checks import ExpectError, parse_expect
from bridge.core.drills import CronError, parse_cron
from bridge.core.followup import ItemKind
from bridge.core.policy import Severity

_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNITS = (7 * 86400, 86400, 3600, 60, 1, 0.001)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def parse_duration(value: Any) -> float:
    """Prometheus durations (``90s``, ``30m``, ``1h30m``, ``1d``, ``2w``) in seconds."""
    if not isinstance(value, str) or not value:
        raise ValueError("must be a duration like 30m, 1h or 1h30m")
    m = _DURATION.match(value)
    if not m or not any(m.groups()):
        raise ValueError(f"invalid duration {value!r} (use e.g. 90s, 30m, 1h30m, 1d, 2w)")
    return float(sum(int(g) * u for g, u in zip(m.groups(), _UNITS, strict=True) if g))


def _positive_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be longer than 0s, not {value!r}")
    return seconds


def _timezone(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be an IANA time zone name like Europe/Berlin")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)"
        ) from None
    return value


def _clock(value: Any) -> time:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 09:00 as a sexagesimal integer (540).
        value = f"{value // 60:02d}:{value % 60:02d}"
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,2}:\d{2}", value):
        raise ValueError("must be a time of day HH:MM")
    h, m = (int(x) for x in value.split(":"))
    if h > 23 or m > 59:
        raise ValueError(f"invalid time of day {value!r}")
    return time(h, m)


def _period(value: Any) -> int:
    if value == "daily":
        return 1
    if value == "weekly":
        return 7
    if isinstance(value, str) and (m := re.fullmatch(r"([1-9]\d*)d", value)):
        return int(m.group(1))
    raise ValueError("must be daily, weekly or a number of days like 3d")


def _when(value: Any) -> date:
    """A date (``2026-12-24``) or a date and time (``2026-12-24T18:00``, zone optional)."""
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return (
                datetime.fromisoformat(value)
                if "T" in value or " " in value
                else date.fromisoformat(value)
            )
        except ValueError:
            pass
    raise ValueError("must be a date (2026-12-24) or a date and time (2026-12-24T18:00)")


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _member(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


Duration = Annotated[float, PlainValidator(parse_duration)]
PositiveDuration = Annotated[float, PlainValidator(_positive_duration)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
When = Annotated[date, PlainValidator(_when)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SeverityFrom(Strict):
    label: str = "severity"
    map: dict[str, Severity] = Field(default_factory=dict)
    default: Severity = "sev4"


class Stakeholders(Strict):
    targets: list[str] = Field(default_factory=list)
    min_severity: Severity = "sev1"


class TiersSpec(Strict):
    general: list[str] = Field(default_factory=list)
    general_min_severity: Severity = "sev4"
    incident: str | None = None
    stakeholders: Stakeholders | None = None


class RoleSource(Strict):
    rotation: str | None = None
    person: str | None = None

    @model_validator(mode="after")
    def _one(self) -> RoleSource:
        if (self.rotation is None) == (self.person is None):
            raise ValueError("give exactly one of rotation or person")
        return self


class RolesSpec(Strict):
    commander: RoleSource | None = None
    scribe: RoleSource | None = None
    liaison: RoleSource | None = None
    responders: (
        Annotated[list[RoleSource], BeforeValidator(lambda v: [v] if isinstance(v, dict) else v)]
        | None
    ) = None


def _stabilization(value: Any) -> float:
    """A duration, or 0 (no window: the validation runs as soon as the follow-up opens)."""
    if (value == 0 and not isinstance(value, bool)) or value == "0":
        return 0.0
    return parse_duration(value)


def _checklist_item(value: Any) -> Any:
    if isinstance(value, str):
        return {"text": value}
    if not isinstance(value, dict):
        raise ValueError(
            "an item is a text, or a mapping {text: ..., kind: check|validate|review|action}"
        )
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty text")
    if len(value) > MAX_TEXT:
        raise ValueError(f"at most {MAX_TEXT} characters")
    return value.strip()


def _expr(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a PromQL expression, not empty")
    return value.strip()


def _expect(value: Any) -> str:
    tag = getattr(getattr(value, "tag", None), "value", None) or getattr(value, "tag", None)
    if isinstance(tag, str) and tag.startswith("!"):
        # YAML reads an unquoted ``expect: != 0`` as the tag "!=" on the value 0.
        shown = f"{tag} {getattr(value, 'value', '')}".strip()
        raise ValueError(f'YAML read the unquoted {tag!r} as a tag: quote it, expect: "{shown}"')
    try:
        parse_expect(value)
    except ExpectError as exc:
        raise ValueError(str(exc)) from None
    return " ".join(str(value).split())


class ChecklistEntry(Strict):
    """A checklist item given as a mapping (a plain string is ``{text: ..., kind: check}``)."""

    text: Annotated[str, PlainValidator(_text)]
    kind: ItemKind = "check"


class CheckSpec(Strict):
    """A PromQL check run at the end of the stabilization window."""

    name: Name
    expr: Annotated[str, PlainValidator(_expr)]
    expect: Annotated[str, PlainValidator(_expect)]


class FollowUp(Strict):
    """A route's follow-up; each key a route does not give is inherited from its parent, and
    ``~`` sets that key back to its default."""

    checklist: list[Annotated[ChecklistEntry, BeforeValidator(_checklist_item)]] | None = None
    ticket_target: str | None = None
    stabilization: Annotated[float, PlainValidator(_stabilization)] | None = None
    checks: list[CheckSpec] | None = None


PostmortemRule = Literal["required", "optional", "none"]


class PostmortemSpec(Strict):
    sev1: PostmortemRule | None = None
    sev2: PostmortemRule | None = None
    sev3: PostmortemRule | None = None
    sev4: PostmortemRule | None = None


class StatusUpdateSpec(Strict):
    """The same as ``reminders: {sevN: {update_every: ...}}``, one duration per severity."""

    sev1: PositiveDuration | None = None
    sev2: PositiveDuration | None = None
    sev3: PositiveDuration | None = None
    sev4: PositiveDuration | None = None


class ReminderSpec(Strict):
    """One severity's reminders; a key not given is inherited from the parent route."""

    update_every: PositiveDuration | None = None
    acknowledge_within: PositiveDuration | None = None
    escalate_to_next_commander: bool = False


class RemindersSpec(Strict):
    sev1: ReminderSpec | None = None
    sev2: ReminderSpec | None = None
    sev3: ReminderSpec | None = None
    sev4: ReminderSpec | None = None


class EscalationRecipient(Strict):
    """Whom a level notifies: exactly one of ``rotation`` (its holder), ``next`` (the rotation's
    next holder), ``person`` (a member of a rotation) or ``target`` (a configured target)."""

    rotation: Name | None = None
    next: Name | None = None
    person: str | None = Field(default=None, min_length=1)
    target: Name | None = None

    @model_validator(mode="after")
    def _one(self) -> EscalationRecipient:
        if len(self.model_fields_set) != 1 or any(
            getattr(self, k) is None for k in self.model_fields_set
        ):
            raise ValueError("give exactly one of rotation, next, person or target")
        return self


class EscalationLevel(Strict):
    """A level: whom it notifies, ``after`` the level before it (the first: after the incident
    opened or reopened)."""

    after: Duration
    notify: Annotated[
        list[EscalationRecipient],
        BeforeValidator(lambda v: [v] if isinstance(v, dict) else v),
        Field(min_length=1),
    ]


class EscalationPolicySpec(Strict):
    """One severity's escalation policy: levels, and how many more times the whole runs."""

    levels: list[EscalationLevel] = Field(min_length=1)
    repeat: int = Field(default=0, ge=0, le=100)

    @model_validator(mode="after")
    def _waits(self) -> EscalationPolicySpec:
        if self.repeat and not any(level.after > 0 for level in self.levels):
            raise ValueError("repeat needs a level that waits: every after is 0s")
        return self


class EscalationSpec(Strict):
    """A route's escalation policies per severity (``sevN: ~``: none for that severity)."""

    sev1: EscalationPolicySpec | None = None
    sev2: EscalationPolicySpec | None = None
    sev3: EscalationPolicySpec | None = None
    sev4: EscalationPolicySpec | None = None


def _cron(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f'a cron expression is a string (e.g. "0 10 * * 1"), not {value!r}')
    try:
        parse_cron(value)
    except CronError as exc:
        raise ValueError(f"cron {value!r}: {exc}") from None
    return value


class DrillScheduleSpec(Strict):
    """A scheduled drill of the route (docs/drills.md): fired once at each time of ``cron``
    (5 fields, UTC), announced ``announce_before`` ahead."""

    cron: Annotated[str, PlainValidator(_cron)]
    severity: Severity = "sev3"
    announce_before: PositiveDuration | None = None
    stakeholders: bool = False


class RouteSpec(Strict):
    name: Name | None = None
    matchers: Annotated[list[str], BeforeValidator(_as_list)] = Field(default_factory=list)
    continue_: bool = Field(default=False, alias="continue")
    severity: Severity | None = None
    severity_from: SeverityFrom | None = None
    team: str | None = None
    service: str | None = None
    title: str | None = None
    title_template: str | None = None
    group_by: list[str] | None = None
    reopen_window: Duration | None = None
    tiers: TiersSpec | None = None
    roles: RolesSpec | None = None
    follow_up: FollowUp | None = None
    postmortem: PostmortemSpec | None = None
    status_update: StatusUpdateSpec | None = None
    reminders: RemindersSpec | None = None
    escalation: EscalationSpec | None = None
    # a silence made in Alertmanager when the incident is acknowledged, for this long
    # (``~``: none, the default); expired when the incident resolves (docs/reconcile.md)
    silence_on_ack: PositiveDuration | None = None
    # messages in the dedicated Slack channel marked for the timeline (a 📌 reaction, or
    # ``note:``/``decision:``) are recorded there (docs/chat.md); off by default
    chat_timeline: bool | None = None
    # scheduled drills of this route only (not inherited by its child routes; docs/drills.md)
    drills: list[DrillScheduleSpec] | None = None
    routes: list[RouteSpec] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


class Override(Strict):
    start: When
    end: When
    member: str


class Member(Strict):
    name: str = Field(min_length=1)
    handles: dict[str, str] = Field(default_factory=dict)


# the days of working hours (docs/rules.md): three letters, Monday first (0)
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _day(value: Any) -> int:
    if not isinstance(value, str) or value.lower() not in DAY_NAMES:
        raise ValueError(f"must be a day: {', '.join(DAY_NAMES)}")
    return DAY_NAMES.index(value.lower())


class WorkingHoursSpec(Strict):
    """A rotation's working hours on its wall clock (the insights' interruptions); the end is
    checked to come after the start by the loader, which knows the place of ``end``."""

    start: Annotated[time, PlainValidator(_clock)] = time(9, 0)
    end: Annotated[time, PlainValidator(_clock)] = time(18, 0)
    days: list[Annotated[int, PlainValidator(_day)]] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4], max_length=7
    )


class RotationSpec(Strict):
    members: list[Annotated[Member, BeforeValidator(_member)]] = Field(min_length=1)
    period: Annotated[int, PlainValidator(_period)] = 7
    handoff: Annotated[time, PlainValidator(_clock)] = time(9, 0)
    timezone: Annotated[str, PlainValidator(_timezone)] = "UTC"
    start: When = date(2026, 1, 5)
    overrides: list[Override] = Field(default_factory=list)
    # targets that get a message at each hand-off (who hands to whom, incidents inherited)
    handoff_to: list[Name] = Field(default_factory=list, max_length=20)
    # what the insights count as working hours (docs/insights.md); none: 09:00-18:00 Mon-Fri
    working_hours: WorkingHoursSpec | None = None


class HeartbeatSpec(Strict):
    """A heartbeat of the dead man's switch (docs/heartbeats.md): late after ``interval`` plus
    ``grace`` without a beat; beaten by a firing alert named ``alertname`` with ``labels``, or
    by ``POST /api/v1/heartbeats/{name}``."""

    interval: PositiveDuration
    grace: Duration = 0.0
    route: Name | None = None
    severity: Severity | None = None
    alertname: str | None = Field(default=None, min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)


class ComponentSpec(Strict):
    """A component of the public status page (docs/status-page.md): what the page shows, and
    the routes and labels that link an incident to it when it opens."""

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    routes: list[Name] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)


class RuleFile(Strict):
    targets: dict[Name, dict[str, Any]] = Field(default_factory=dict)
    rotations: dict[Name, RotationSpec] = Field(default_factory=dict)
    templates: dict[Name, str] = Field(default_factory=dict)
    heartbeats: dict[Name, HeartbeatSpec] = Field(default_factory=dict)
    components: dict[Name, ComponentSpec] = Field(default_factory=dict)
    route: RouteSpec | None = None
    routes: list[RouteSpec] = Field(default_factory=list)


def all_models() -> list[type[BaseModel]]:
    """Every schema model, for the docs test and "did you mean" on unknown keys."""
    return [
        RuleFile, RouteSpec, SeverityFrom, TiersSpec, Stakeholders, RolesSpec, RoleSource,
        FollowUp, ChecklistEntry, CheckSpec, PostmortemSpec, StatusUpdateSpec, RemindersSpec, ReminderSpec, RotationSpec,
        EscalationSpec, EscalationPolicySpec, EscalationLevel, EscalationRecipient,
        Member, Override, HeartbeatSpec, ComponentSpec,
    ]  # fmt: skip


def keys_of(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]
