"""The API's answers as pydantic models: what the handlers build their JSON through and what
the OpenAPI document (``bridge/http/openapi.py``) describes, so the two cannot drift apart.

Every model forbids fields it does not name: an answer that gains a field without its model
fails in the tests (and schemathesis finds it against the document) instead of going out
undocumented. Optional fields that an answer leaves out (``Error.field``,
``TimelineEntry.corrected_by``) stay out: answers are written with ``exclude_unset``.

Which handlers build their answer through a model: the notifications, a retry, the rules and
their reload (``json_answer``). Three answers are described by a model but not built through
it, because they have to be fast: the webhook receiver's (docs/performance.md), and the
incident list and an incident (validating a page of 50 costs about 4 times what writing it
does, and an incident can have 50,000 alerts). The tests check those against their models, and
schemathesis checks every answer of a running service against the document.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, Strict

from bridge.core.incidents import Status
from bridge.core.policy import Severity
from bridge.core.values import MAX_ID

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
# An id in a request's JSON: a JSON integer within the store's range. Strict: pydantic would
# otherwise take "12", " 12", "+12", "1_2", true and 12.0 for 12.
Id = Annotated[int, Strict(), Field(ge=1, le=MAX_ID)]
NotificationState = Literal["pending", "delivered", "dead"]


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(Answer):
    """Every 4xx and 5xx of the API and the receiver."""

    error: str = Field(description="what went wrong, for a person")
    field: str | None = Field(
        default=None,
        description="the field path, query parameter or header to blame, when there is one "
        "(left out otherwise)",
    )


class IncidentSummary(Answer):
    """An incident as the list shows it (no alerts, no timeline)."""

    id: int
    key: str = Field(description="groups alerts into the incident (the groupKey by default)")
    title: str
    severity: Severity
    status: Status
    route: str | None
    team: str | None
    service: str | None
    started_at: Timestamp
    opened_at: Timestamp
    acknowledged_at: Timestamp | None
    mitigated_at: Timestamp | None
    resolved_at: Timestamp | None
    closed_at: Timestamp | None
    truncated_alerts: int = Field(
        ge=0, description="alerts Alertmanager left out of the group; their state is unknown"
    )
    previous_id: int | None = Field(
        description="the incident this one follows, when an alert fired again after the "
        "reopen window"
    )
    roles: dict[str, list[str]] = Field(
        description="role -> the people the rules assigned when the incident opened"
    )
    people: dict[str, dict[str, str]] = Field(
        description="name -> that person's handles (slack, email, ...) from their rotation"
    )
    alert_count: int = Field(ge=0)
    receiver: str | None = Field(
        default=None,
        description="the Alertmanager receiver whose webhook opened it (docs/reconcile.md)",
    )
    drill: bool = Field(
        default=False,
        description="a drill's incident (docs/drills.md): practice, kept apart in the metrics",
    )


class IncidentAlert(Answer):
    """An alert of an incident, as the incident holds it."""

    fingerprint: str
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: Timestamp
    ends_at: Timestamp | None
    generator_url: str
    first_seen: Timestamp
    last_seen: Timestamp
    suppressed: dict[str, Any] | None = Field(
        default=None,
        description="while Alertmanager's API lists it as silenced or inhibited: silenced_by "
        "[{id, created_by, comment, ends_at}], inhibited_by [{fingerprint, alertname}]",
    )
    resolved_via: Literal["api"] | None = Field(
        default=None,
        description='"api" when its resolve was learned from Alertmanager\'s API, not a webhook',
    )


class TimelineEntry(Answer):
    """One entry of an incident's timeline."""

    id: int
    time: Timestamp
    kind: str = Field(description="opened, alert_fired, status_changed, note, ... (docs/api.md)")
    actor: str
    text: str
    data: dict[str, Any]
    corrected_by: int | None = Field(
        default=None, description="only on an entry a later one corrects: that entry's id"
    )
    corrected_text: str | None = Field(
        default=None, description="only on an entry a later one corrects: what it now reads"
    )


class IncidentSource(Answer):
    """Where an incident came from (docs/incidents.md)."""

    source: str = Field(
        description="`alertmanager` (a webhook opened it), `declared` (by hand) or `heartbeat` "
        "(a late heartbeat of the dead man's switch)"
    )
    declared_by: str | None = Field(default=None, description="who declared it")
    description: str | None = Field(default=None, description="what they knew then")
    labels: dict[str, str] | None = Field(default=None, description="the labels it was given")
    merged_into: int | None = Field(
        description="the incident it was merged into as a duplicate; null: none"
    )


class IncidentDetail(IncidentSummary):
    """An incident with its alerts and its whole timeline, in order."""

    alerts: list[IncidentAlert]
    timeline: list[TimelineEntry]
    source: IncidentSource


class IncidentPage(Answer):
    incidents: list[IncidentSummary] = Field(description="newest first")
    next: str | None = Field(description="the URL of the next page; null on the last")


class Notification(Answer):
    """A row of the outbox: one event to tell one target."""

    id: int
    incident_id: int
    target: str
    tier: str
    event: str
    event_id: int | None = Field(description="the timeline entry it tells of")
    idempotency_key: str
    state: NotificationState
    attempts: int = Field(ge=0)
    next_attempt_at: Timestamp | None
    created_at: Timestamp | None
    delivered_at: Timestamp | None
    last_error: str | None
    carried_by: int | None = Field(
        description="the row whose message carried this one (waiting rows coalesced)"
    )


class NotificationPage(Answer):
    notifications: list[Notification] = Field(description="newest first")
    next: str | None = Field(description="the URL of the next page; null on the last")


class ChannelMessage(Answer):
    """A message tied to no incident (a rotation's hand-off, a drill's announcement) to one
    target: docs/delivery.md, "Channel messages"."""

    id: int
    key: str = Field(description="the message's key: one row per (key, target)")
    kind: Literal["handoff", "drill_announcement"]
    target: str
    state: NotificationState
    attempts: int = Field(ge=0)
    next_attempt_at: Timestamp | None
    created_at: Timestamp | None
    delivered_at: Timestamp | None
    last_error: str | None


class ChannelMessagePage(Answer):
    messages: list[ChannelMessage] = Field(description="newest first")
    next: str | None = Field(description="the URL of the next page; null on the last")


class Ticket(Answer):
    key: str = Field(description="the ticket's key: `OPS-12` in Jira, `#17` on GitHub")
    url: str = Field(description="where people open it")


class CheckSpec(Answer):
    """A PromQL check as the route declares it (docs/rules.md, "Follow-up")."""

    name: str
    expr: str = Field(description="the PromQL expression, evaluated at the window's end")
    expect: str = Field(description="what its result must be: `< 0.01`, `empty`, ...")


class CheckRecord(Answer):
    """One PromQL check as a validation judged it."""

    name: str
    passed: bool
    reason: str = Field(description="why, in a sentence")
    values: list[dict[str, Any]] = Field(
        description="the samples seen (those that fail first): each `labels` and `value` (a "
        "number, or `NaN`, `+Inf`, `-Inf`)"
    )
    error: str | None = Field(description="why there was no result to judge (then not passed)")


class Validation(Answer):
    """The follow-up's validation: quiet over the stabilization window, and the PromQL checks.
    A follow-up that was not validated says why in `skipped` (and has no other key)."""

    passed: bool | None = Field(default=None, description="quiet and every check passed")
    quiet: bool | None = Field(
        default=None, description="no alert of the incident fired again within the window"
    )
    window_s: float | None = Field(default=None, description="the stabilization window")
    checks: list[CheckRecord] | None = Field(default=None, description="each check's result")
    reasons: list[str] | None = Field(
        default=None, description="why it failed (left out when it passed)"
    )
    skipped: str | None = Field(
        default=None, description="why there was no validation (left out when there was one)"
    )


class Finding(Answer):
    """Something the review should look at, that the bridge saw itself (docs/followup.md)."""

    kind: str = Field(description="`no_runbook`, `recurrence`, `late_acknowledgement`, ...")
    text: str
    evidence: dict[str, Any] = Field(description="links and values behind it")


class ItemDetail(Answer):
    """What an item carries besides its text: the findings on the review item; the window, the
    checks and, once run, the validation on the validate item; nothing on the others."""

    findings: list[Finding] | None = Field(default=None, description="the review item's")
    stabilization_s: float | None = Field(
        default=None, description="the validate item's stabilization window"
    )
    checks: list[CheckSpec] | None = Field(default=None, description="the validate item's checks")
    validation: Validation | None = Field(
        default=None, description="the validate item's latest validation"
    )


class FollowUpItem(Answer):
    id: int
    kind: Literal["check", "validate", "review", "action"] = Field(
        description="`check` a plain item; `validate` the bridge's validation (checks itself "
        "off); `review` carries the findings; `action` a permanent fix, ticketed"
    )
    text: str
    state: Literal["open", "done", "waived"]
    owner: str | None
    reason: str | None = Field(description="why it was waived (or the note when checked off)")
    detail: ItemDetail = Field(
        description="`findings` on the review item; `stabilization_s`, `checks` and "
        "`validation` on the validate item; `{}` on the others"
    )
    ticket: Ticket | None = Field(description="its ticket, once the ticket target opened it")
    created_by: str
    created_at: Timestamp
    updated_by: str | None
    updated_at: Timestamp | None


class FollowUpView(Answer):
    """An incident's follow-up (stabilization) phase: docs/followup.md."""

    incident_id: int
    route: str
    stabilization_started_at: Timestamp = Field(description="when the window started (mitigated)")
    stabilize_until: Timestamp = Field(description="when the window ends and validation runs")
    ticket_target: str | None
    checks: list[CheckSpec] = Field(description="the PromQL checks: name, expr, expect")
    validated_at: Timestamp | None
    validation: Validation | None = Field(
        description="`passed`, `quiet`, `window_s`, `checks` (each `name`, `passed`, `reason`, "
        "`values`, `error`), `reasons`; or `skipped`; null until the window ends"
    )
    open_items: int = Field(
        description="the open items the incident waits on: every open item but the action "
        "items, which their tickets track (`items` lists those too)"
    )
    items: list[FollowUpItem]


# --- the postmortem's facts (core/postmortem.facts_dict) ------------------------------------

Milestone = Literal[
    "started_at", "opened_at", "acknowledged_at", "mitigated_at", "resolved_at", "closed_at"
]
DurationName = Literal[
    "detection_delay", "time_to_acknowledge", "time_to_mitigate", "time_to_resolve"
]


class FactsIncident(Answer):
    id: int
    title: str
    severity: str
    status: str
    route: str
    team: str
    service: str
    key: str


class FactsImpact(Answer):
    start: Timestamp | None = Field(description="the first alert's startsAt")
    end: Timestamp | None = Field(description="mitigated (resolved when it never was)")
    duration: str = Field(description="the span between, as people read it; `-` when open")


class FactsMilestone(Answer):
    name: Milestone
    label: str = Field(description="`Started (first alert)`, `Opened`, `Acknowledged`, ...")
    at: Timestamp | None = Field(description="null: not reached")


class FactsDuration(Answer):
    name: DurationName = Field(
        description="each from `started_at`: `detection_delay` to `opened_at`, "
        "`time_to_acknowledge` to `acknowledged_at`, `time_to_mitigate` to `mitigated_at`, "
        "`time_to_resolve` to `resolved_at`"
    )
    label: str
    seconds: float | None = Field(description="null: the milestone was not reached")
    text: str = Field(description="as people read it: `4m12s`; `-` when not reached")


class FactsRole(Answer):
    role: str
    people: list[str]


class FactsHandover(Answer):
    # "from" is a Python keyword: the field is from_, read and written as "from".
    model_config = ConfigDict(extra="forbid", validate_by_name=True, serialize_by_alias=True)

    at: Timestamp | None
    role: str
    from_: list[str] = Field(alias="from", description="who held it before")
    to: list[str] = Field(description="who holds it after")
    action: str = Field(description="`assign`, `handover` or `release`")
    actor: str


class FactsEntry(Answer):
    id: int
    at: Timestamp | None
    kind: str
    actor: str
    text: str = Field(description="as corrected, when a correction points at it")
    corrected_by: int | None


class FactsAlert(Answer):
    alertname: str
    status: str
    starts_at: Timestamp | None
    ends_at: Timestamp | None
    summary: str
    generator_url: str
    runbook_url: str
    labels: dict[str, str]


class FactsCheck(Answer):
    name: str
    passed: bool | None
    reason: str


class FactsValidation(Answer):
    validated_at: Timestamp | None
    passed: bool | None = Field(description="null: not run (yet), or skipped")
    quiet: bool | None
    skipped: str
    reasons: list[str]
    checks: list[FactsCheck]


class FactsItem(Answer):
    id: int
    kind: str
    text: str
    owner: str
    state: str
    reason: str
    ticket: Ticket | None


class PostmortemFacts(Answer):
    """What the bridge knows of the incident, gathered at every read (docs/postmortems.md)."""

    incident: FactsIncident
    impact: FactsImpact
    milestones: list[FactsMilestone] = Field(description="the six, in order")
    durations: list[FactsDuration] = Field(description="the four, in order")
    roles: list[FactsRole]
    handovers: list[FactsHandover]
    timeline: list[FactsEntry] = Field(description="corrections applied")
    timeline_omitted: int = Field(description="entries left out of a long timeline")
    alerts: list[FactsAlert]
    alerts_omitted: int
    validation: FactsValidation | None
    action_items: list[FactsItem]


class ActionResult(Answer):
    """The answer to a person's action."""

    changed: bool = Field(description="false: what was asked is already so; nothing written")
    incident: IncidentSummary = Field(description="the incident after the action")
    events: list[TimelineEntry] = Field(description="the timeline entries the action wrote")
    followup: FollowUpView | None = Field(
        default=None, description="the follow-up after the action (the follow-up's actions only)"
    )


class MergeResult(ActionResult):
    """The answer to a merge: the duplicate (``incident``) and the survivor (``into``)."""

    into: IncidentSummary = Field(description="the incident it was merged into, after the merge")


class DeclareResult(Answer):
    """The answer to a declaration (201)."""

    changed: bool = Field(description="always true: a new incident")
    incident: IncidentDetail = Field(description="the incident declared")


class TouchedIncident(Answer):
    id: int
    key: str
    status: Status
    changed: bool = Field(
        description="false: a duplicate or a repeat; nothing but last-seen times changed"
    )


class WebhookAnswer(Answer):
    """The receiver's 200: the webhook and its effect are committed."""

    status: Literal["ok"]
    incidents: list[TouchedIncident]


class Rules(Answer):
    """The active rules, secrets shown as ``<secret>``."""

    config_hash: str
    files: list[str]
    rules: dict[str, Any]


class Reloaded(Answer):
    status: Literal["ok"]
    config_hash: str


class ReloadFailed(Answer):
    """The rules did not load; the ones loaded before stay active."""

    status: Literal["error"]
    errors: list[str] = Field(description="file:line:col: message")


def json_answer(answer: Answer, status: int = 200) -> web.Response:
    """``answer`` as the JSON body of a response, without the optional fields it left out."""
    return web.Response(
        body=answer.model_dump_json(exclude_unset=True),
        status=status,
        content_type="application/json",
    )
