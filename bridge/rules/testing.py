"""``rules test``: run rules unit-test files (in the spirit of ``promtool test rules``).

A test file names the rule files it tests and a list of cases; each case is one webhook
(alerts given by their labels, or a captured payload file) evaluated at a given time, and the
incidents the rules should decide. Only the fields a case names are compared.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, ValidationError

from bridge.core.alertmanager import PayloadError, WebhookPayload, parse_webhook
from bridge.core.escalation import NO_ESCALATION, steps
from bridge.core.policy import Decision, Severity, severity_rank
from bridge.core.timeutil import NS
from bridge.rules.engine import RulesPolicy, match_routes
from bridge.rules.escalation import people_of, reach
from bridge.rules.loader import load_rules
from bridge.rules.matchers import format_labels
from bridge.rules.schema import Duration, Strict
from bridge.rules.source import Diagnostics, display_name, read_source, report_validation


def instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("must be a date and time like 2026-11-27T09:30:00Z") from None
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    else:
        raise ValueError("must be a date and time like 2026-11-27T09:30:00Z")
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


Instant = Annotated[datetime, PlainValidator(instant)]


class TestAlert(Strict):
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    status: Literal["firing", "resolved"] = "firing"


class ExpectedTiers(Strict):
    general: list[str] | None = None
    incident: str | None = None
    stakeholders: list[str] | None = None


class ExpectedIncident(Strict):
    route: str | None = None
    key: str | None = None
    severity: Severity | None = None
    team: str | None = None
    service: str | None = None
    title: str | None = None
    tiers: ExpectedTiers | None = None
    roles: dict[str, list[str]] | None = None
    postmortem: Literal["required", "optional", "none"] | None = None
    alerts: int | None = None


class ExpectedStep(Strict):
    """A step of the first incident's escalation policy: ``after`` the incident opened (the
    case's ``at``), its level and repetition, and whom it reaches then."""

    after: Duration
    level: int | None = None
    repetition: int | None = None
    people: list[str] | None = None
    targets: list[str] | None = None


class TestCase(Strict):
    name: str
    at: Instant | None = None
    alerts: list[TestAlert] | None = None
    payload: str | None = None
    group_key: str | None = None
    routes: list[str] | None = None
    incidents: list[ExpectedIncident] | None = None
    # every step of the first incident's escalation policy, in order (a step due at or after
    # acknowledged_after does not fire)
    escalation: list[ExpectedStep] | None = None
    acknowledged_after: Duration | None = None


class TestFile(Strict):
    rule_files: list[str] = Field(default_factory=lambda: [".."])
    at: Instant | None = None
    tests: list[TestCase] = Field(min_length=1)


@dataclass
class CaseResult:
    file: str
    name: str
    ok: bool
    diff: list[str] = field(default_factory=list)
    error: str | None = None
    # templates that raised for the case's alerts: 'route "NAME": title: ExcType: message'
    render_errors: list[str] = field(default_factory=list)


def payload_from_alerts(
    alerts: list[TestAlert], group_key: str | None, at: datetime
) -> WebhookPayload:
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    items = [
        {
            "status": a.status,
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": stamp,
            "endsAt": stamp if a.status == "resolved" else "0001-01-01T00:00:00Z",
        }
        for a in alerts
    ]
    common = {
        k: v for k, v in alerts[0].labels.items() if all(x.labels.get(k) == v for x in alerts)
    }
    return WebhookPayload.model_validate(
        {
            "groupKey": group_key or "{}:" + format_labels(common),
            "status": "firing" if any(a.status == "firing" for a in alerts) else "resolved",
            "commonLabels": common,
            "alerts": items,
        }
    )


def got_incident(d: Decision) -> dict[str, Any]:
    """A decision in the shape of ``ExpectedIncident``; general and stakeholders = who is told
    at the incident's severity."""
    paged = severity_rank(d.severity) <= severity_rank(d.tiers.stakeholder_min_severity)
    announced = severity_rank(d.severity) <= severity_rank(d.tiers.general_min_severity)
    return {
        "route": d.route,
        "key": d.key,
        "severity": d.severity,
        "team": d.team,
        "service": d.service,
        "title": d.title,
        "tiers": {
            "general": list(d.tiers.general) if announced else [],
            "incident": d.tiers.incident,
            "stakeholders": list(d.tiers.stakeholders) if paged else [],
        },
        "roles": {k: list(v) for k, v in d.roles.items()},
        "postmortem": d.policies.get("postmortem"),
        "alerts": len(d.fingerprints),
    }


def escalation_steps(
    policy: RulesPolicy, d: Decision, at: datetime, acknowledged_after: float | None = None
) -> list[dict[str, Any]]:
    """Every step the decision's escalation policy fires for an incident opened at ``at``
    (none acknowledged; or before ``acknowledged_after``), and whom it reaches then, in the
    shape of ``ExpectedStep`` (also what ``rules route-test`` shows)."""
    route = policy.ruleset.route(d.route) or policy.ruleset.root
    escalation = route.settings.escalation.get(d.severity, NO_ESCALATION)
    opened = int(at.timestamp()) * NS
    rotations = policy.ruleset.rotations
    people = people_of(rotations)
    types = {name: t.type for name, t in policy.ruleset.targets.items()}
    out = []
    for step in steps(escalation, opened):
        if acknowledged_after is not None and step.due_at >= opened + acknowledged_after * NS:
            break
        notify = escalation.levels[step.level - 1].notify
        whom = reach(notify, step.due_at, rotations=rotations, people=people, target_types=types)
        out.append(
            {
                "after": (step.due_at - opened) / NS,
                "level": step.level,
                "repetition": step.repetition,
                "people": [name for name, _ in whom.people],
                "targets": list(whom.targets),
            }
        )
    return out


def duration_text(seconds: float) -> str:
    """Seconds as a rules duration: ``15m``, ``1h30m``, ``0s``."""
    left = int(seconds)
    text = ""
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            text += f"{left // size}{unit}"
            left %= size
    return text or "0s"


def _step_text(step: dict[str, Any]) -> dict[str, Any]:
    """A step with its ``after`` written as a duration (``15m``, ``1h30m``) for the diff."""
    return {**step, "after": duration_text(step["after"])} if "after" in step else step


def _subset(expected: Any, got: Any) -> Any:
    """``got`` restricted to what ``expected`` names (so the diff shows only compared fields)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        return {k: _subset(v, got.get(k)) for k, v in expected.items()}
    return got


def _diff(expected: Any, got: Any) -> list[str]:
    e = json.dumps(expected, indent=2, ensure_ascii=False).splitlines()
    g = json.dumps(got, indent=2, ensure_ascii=False).splitlines()
    return list(difflib.unified_diff(e, g, "expected", "got", lineterm="", n=2))


def render_errors(decisions: list[Decision]) -> list[str]:
    """Every decision's render errors, each naming its route."""
    return [f'route "{d.route}": {e}' for d in decisions for e in d.render_errors]


def run_case(
    policy: RulesPolicy, case: TestCase, default_at: datetime, base: Path
) -> tuple[Any, Any, list[str]]:
    """What the case expects, what the rules gave (the same fields), and the render errors
    of the webhook's decisions (a template that raised fails the case, whatever it checks)."""
    at = case.at or default_at
    if case.payload is not None:
        payload = parse_webhook((base / case.payload).read_bytes())
    else:
        payload = payload_from_alerts(case.alerts or [], case.group_key, at)
    expected: dict[str, Any] = {}
    got: dict[str, Any] = {}
    if case.routes is not None:
        names: list[str] = []
        for a in payload.alerts:
            names.extend(r.name for r in match_routes(policy.ruleset.root, a.labels))
        expected["routes"] = case.routes
        got["routes"] = list(dict.fromkeys(names))
    decisions = policy.evaluate(payload, int(at.timestamp()) * 10**9)
    if case.escalation is not None:
        wanted = [s.model_dump(exclude_unset=True) for s in case.escalation]
        fired = (
            escalation_steps(policy, decisions[0], at, case.acknowledged_after) if decisions else []
        )
        expected["escalation"] = [_step_text(w) for w in wanted]
        # only the fields each expected step names; steps beyond the expected ones whole
        got["escalation"] = [
            _step_text(_subset(w, h)) for w, h in zip(wanted, fired, strict=False)
        ] + [_step_text(h) for h in fired[len(wanted) :]]
    if case.incidents is not None:
        want = [i.model_dump(exclude_unset=True) for i in case.incidents]
        have = [got_incident(d) for d in decisions]
        expected["incidents"] = want
        got["incidents"] = [_subset(w, h) for w, h in zip(want, have, strict=False)] + have[
            len(want) :
        ]
    return expected, got, render_errors(decisions)


def run_file(path: Path, at: datetime | None = None) -> tuple[list[CaseResult], list[str]]:
    """Run one test file; returns case results and load errors (file:line:col: message).

    ``at`` (``rules test --at``) is the evaluation time of the cases that give none, in a file
    that gives none: a case's ``at`` comes first, then the file's, then ``at``, then now."""
    diags = Diagnostics()
    src, _ = read_source(path, diags)
    if src is None:
        return [], diags.errors
    try:
        spec = TestFile.model_validate(src.data or {})
    except ValidationError as exc:
        report_validation(diags, src, (), exc, TestFile)
        return [], diags.errors
    for i, case in enumerate(spec.tests):
        if (case.alerts is None) == (case.payload is None):
            diags.error(
                src, ("tests", i), f'test "{case.name}": give exactly one of alerts or payload'
            )
        elif case.alerts is not None and not case.alerts:
            diags.error(src, ("tests", i, "alerts"), f'test "{case.name}": alerts is empty')
    if diags.errors:
        return [], diags.errors
    base = path.parent
    loaded = load_rules([base / f for f in spec.rule_files])
    if loaded.ruleset is None:
        return [], [f"{display_name(path)}: rule files do not load:", *loaded.errors]
    policy = RulesPolicy(loaded.ruleset)
    default_at = spec.at or at or datetime.now(UTC)
    results = []
    for case in spec.tests:
        name = display_name(path)
        try:
            expected, got, errors = run_case(policy, case, default_at, base)
        except (OSError, PayloadError) as exc:
            results.append(
                CaseResult(name, case.name, False, error=f"payload {case.payload}: {exc}")
            )
            continue
        same = expected == got
        diff = [] if same else _diff(expected, got)
        results.append(CaseResult(name, case.name, same and not errors, diff, None, errors))
    return results, []
