"""Rule evaluation: route alerts through the tree and decide one incident per group. Pure.

Incident keys (stable: they depend only on the route and the alerts' labels or groupKey):
- a route with ``group_by``: ``<route>:{label="value", ...}`` over the group_by labels the
  alert has (``...`` groups by all labels, as in Alertmanager);
- otherwise Alertmanager's ``groupKey``, prefixed ``<route>:`` for every route but the root. The
  root route keeps the bare groupKey, which is what the built-in policy uses, so incidents keep
  their keys when rules are introduced; any other route needs the prefix because the alerts of
  one Alertmanager group may split over sibling routes (or reach several through ``continue``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from jinja2 import UndefinedError

from bridge.core import drills
from bridge.core.alertmanager import Alert, WebhookPayload
from bridge.core.heartbeats import Heartbeat
from bridge.core.policy import ROLES, Decision, Severity, drill_decision, severity_rank
from bridge.delivery.budget import TITLE_MAX, Budget, cut, render_stream
from bridge.rules.matchers import format_labels, matches_all
from bridge.rules.model import Route, RouteSettings, RuleSet
from bridge.rules.rotations import holder
from bridge.rules.show import followup_dict

RENDER_ERROR_MAX = 200  # characters of one render error (Decision.render_errors)
# What one title render may spend: it runs in the receiver, before the webhook's write, so
# it must be quick whatever the labels say (bridge/delivery/budget.py).
TITLE_BUDGET = Budget(max_size=100_000, max_steps=20_000, time_s=0.1)
# What the title renders of one webhook may spend together (many groups, many routes): past
# it, the remaining incidents get their fallback title and a render error. A title of real
# rules takes 5 to 50 steps, so 2,000 groups fit many times over; a title that loops on
# purpose spends the webhook's steps in a few tens of milliseconds (the render thread holds
# the interpreter while it runs, which slows every other request).
WEBHOOK_RENDER_STEPS = 200_000
WEBHOOK_RENDER_S = 0.5
# Most webhooks' titles take a few dozen steps: the receiver renders them on the event loop
# within this much, and only a webhook that needs more goes to a thread with the budget above.
QUICK_RENDER_STEPS = 5_000
QUICK_RENDER_S = 0.005


@dataclass
class _Allowance:
    """What is left of one webhook's render budget. ``quick``: the event loop's small share
    (``evaluate_quick``), given up as soon as a title needs more than it."""

    steps: int
    until: float
    quick: bool = False

    def spent(self) -> bool:
        return self.steps <= 0 or time.monotonic() > self.until


class _NeedsMore(Exception):
    """A title needs more than the quick allowance: the whole webhook goes to ``evaluate``."""


def match_routes(route: Route, labels: Mapping[str, str]) -> list[Route]:
    """The routes an alert with ``labels`` goes to, like Alertmanager's ``Route.Match``: the
    deepest matching routes; siblings after a match are skipped unless it has ``continue``."""
    if not matches_all(route.matchers, labels):
        return []
    return _descend(route, labels)


def _descend(route: Route, labels: Mapping[str, str]) -> list[Route]:
    # ``route`` matches; its children that match come from the index, in order.
    mask = route.index.candidates(labels) if route.children else 0
    if not mask:
        return [route]
    out: list[Route] = []
    children = route.children
    while mask:
        low = mask & -mask
        child = children[low.bit_length() - 1]
        out.extend(_descend(child, labels))
        if not child.continue_:
            break
        mask ^= low
    return out


def incident_key(route: Route, alert: Alert, group_key: str, is_root: bool) -> str:
    group_by = route.settings.group_by
    if group_by is None:
        return group_key if is_root else f"{route.name}:{group_key}"
    if "..." in group_by:
        return f"{route.name}:{format_labels(alert.labels)}"
    return f"{route.name}:{format_labels(alert.labels, group_by)}"


def _common(maps: list[Mapping[str, str]]) -> Mapping[str, str]:
    if len(maps) == 1:
        return maps[0]
    if not maps:
        return {}
    first, rest = maps[0], maps[1:]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


def _drill_route(ruleset: RuleSet, alert: Alert) -> list[Route]:
    """A drill's alert that names a route of the rules goes to that route alone (core/drills)."""
    name = drills.route_of(alert.labels)
    found = ruleset.route(name) if name else None
    return [found] if found is not None else []


@dataclass(frozen=True)
class RulesPolicy:
    """``bridge.core.policy.Policy`` backed by a loaded ``RuleSet``."""

    ruleset: RuleSet
    _policy_cache: dict[tuple[int, str], Mapping[str, Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def evaluate(self, payload: WebhookPayload, now_ns: int) -> list[Decision]:
        allowance = _Allowance(WEBHOOK_RENDER_STEPS, time.monotonic() + WEBHOOK_RENDER_S)
        return self._evaluate(payload, now_ns, allowance)

    def evaluate_quick(self, payload: WebhookPayload, now_ns: int) -> list[Decision] | None:
        """``evaluate`` with a small render budget (QUICK_RENDER_STEPS, QUICK_RENDER_S), cheap
        enough for the event loop: the decisions, or None when the titles need more (then
        ``evaluate``, in a thread). Evaluation is pure, so doing it twice changes nothing."""
        allowance = _Allowance(QUICK_RENDER_STEPS, time.monotonic() + QUICK_RENDER_S, quick=True)
        try:
            return self._evaluate(payload, now_ns, allowance)
        except _NeedsMore:  # stopped at the first title past the allowance, not after them all
            return None

    def _evaluate(
        self, payload: WebhookPayload, now_ns: int, allowance: _Allowance
    ) -> list[Decision]:
        groups: dict[tuple[str, str], tuple[Route, list[Alert]]] = {}
        root = self.ruleset.root
        for alert in payload.alerts:
            for route in _drill_route(self.ruleset, alert) or match_routes(root, alert.labels):
                key = incident_key(route, alert, payload.group_key, route is root)
                groups.setdefault((route.name, key), (route, []))[1].append(alert)
        return [
            drill_decision(
                self.decide(
                    route,
                    key,
                    alerts,
                    payload,
                    now_ns,
                    allowance=allowance,
                    severity_is=drills.severity_of(alerts[0].labels),  # type: ignore[arg-type]
                ),
                alerts[0].labels,
            )
            for (_, key), (route, alerts) in groups.items()
        ]

    def decide_heartbeat(
        self, heartbeat: Heartbeat, payload: WebhookPayload, now_ns: int
    ) -> Decision:
        """The decision for a late heartbeat's alert (``core/heartbeats.missing_payload``): on
        the heartbeat's ``route`` when it names one, else the first route its labels match as
        an alert's would; its key ``heartbeat:<name>``, its severity the heartbeat's when it
        gives one."""
        route = self.ruleset.route(heartbeat.route) if heartbeat.route else None
        if route is None:
            found = match_routes(self.ruleset.root, payload.alerts[0].labels)
            route = found[0] if found else self.ruleset.root
        return self.decide(
            route,
            heartbeat.key,
            list(payload.alerts),
            payload,
            now_ns,
            severity_is=heartbeat.severity,
        )

    def _policies(self, route: Route, severity: Severity) -> Mapping[str, Any]:
        """The route's follow-up, postmortem and status-update policies at ``severity``:
        read-only and built once per rule set, not for every webhook."""
        key = (id(route), severity)  # the rule set owns its routes: ids are stable
        found = self._policy_cache.get(key)
        if found is None:
            s = route.settings
            follow_up = followup_dict(s.follow_up)
            found = self._policy_cache[key] = MappingProxyType(
                {
                    "postmortem": s.postmortem.get(severity, "none"),
                    "status_update_interval_s": s.status_update.get(severity),
                    # the route's FollowUpPolicy (Runtime.followups) as plain data
                    "follow_up": MappingProxyType(
                        {
                            "checklist": tuple(MappingProxyType(i) for i in follow_up["checklist"]),
                            "ticket_target": follow_up["ticket_target"],
                            "stabilization_s": follow_up["stabilization_s"],
                            "checks": tuple(MappingProxyType(c) for c in follow_up["checks"]),
                        }
                    ),
                    "role_handles": MappingProxyType({}),
                }
            )
        return found

    def _roles(
        self, s: RouteSettings, at: datetime
    ) -> tuple[dict[str, tuple[str, ...]], dict[str, list[dict[str, Any]]]]:
        """Role -> holders' names at ``at``, and role -> their handles (for the targets)."""
        roles: dict[str, tuple[str, ...]] = {}
        handles: dict[str, list[dict[str, Any]]] = {}
        for role in ROLES:
            names: list[str] = []
            for src in s.roles.get(role, ()):
                if src.rotation is not None:
                    member = holder(self.ruleset.rotations[src.rotation], at)
                    names.append(member.name)
                    handles.setdefault(role, []).append({"name": member.name, **member.handles})
                elif src.person is not None:
                    names.append(src.person)
                    handles.setdefault(role, []).append({"name": src.person})
            if names:
                roles[role] = tuple(dict.fromkeys(names))
        return roles, handles

    def decide(
        self,
        route: Route,
        key: str,
        alerts: list[Alert],
        payload: WebhookPayload,
        now_ns: int,
        *,
        allowance: _Allowance | None = None,
        severity_is: Severity | None = None,
    ) -> Decision:
        s = route.settings
        labels: Mapping[str, str]
        annotations: Mapping[str, str]
        policies: Mapping[str, Any]
        if severity_is is not None:  # given, not read from labels (a heartbeat's own)
            severity: Severity = severity_is
            labels = _common([a.labels for a in alerts])
            annotations = _common([a.annotations for a in alerts])
        elif len(alerts) == 1:
            severity = s.severity_of(alerts[0].labels)
            labels, annotations = alerts[0].labels, alerts[0].annotations
        else:
            severity = min((s.severity_of(a.labels) for a in alerts), key=severity_rank)
            labels = _common([a.labels for a in alerts])
            annotations = _common([a.annotations for a in alerts])
        team = s.team or labels.get("team")
        service = s.service or labels.get("service")
        if s.roles:
            roles, handles = self._roles(s, datetime.fromtimestamp(now_ns / 1e9, tz=UTC))
            policies = {**self._policies(route, severity), "role_handles": handles}
        else:
            roles, policies = {}, self._policies(route, severity)
        render_errors: tuple[str, ...] = ()
        if route.title_template is not None:
            context = _title_context(
                route, labels, annotations, alerts, payload, severity, team, service
            )
            title, render_errors = _title(route, labels, annotations, key, context, allowance)
        else:
            title = _fallback(labels, annotations, key)
        return Decision(
            key=key,
            severity=severity,
            title=title,
            fingerprints=tuple(a.fingerprint for a in alerts),
            route=route.name,
            team=team,
            service=service,
            reopen_window_s=s.reopen_window_s,
            tiers=s.tiers,
            roles=roles,
            policies=policies,
            render_errors=render_errors,
        )


def _title_context(
    route: Route,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    alerts: list[Alert],
    payload: WebhookPayload,
    severity: Severity,
    team: str | None,
    service: str | None,
) -> Callable[[], Mapping[str, Any]]:
    def context() -> Mapping[str, Any]:
        return {
            "labels": labels,
            "annotations": annotations,
            "commonLabels": payload.common_labels,
            "commonAnnotations": payload.common_annotations,
            "groupLabels": payload.group_labels,
            "alerts": [
                {"labels": a.labels, "annotations": a.annotations, "status": a.status}
                for a in alerts
            ],
            "severity": severity,
            "team": team,
            "service": service,
            "route": route.name,
        }

    return context


def _title(
    route: Route,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    key: str,
    context: Callable[[], Mapping[str, Any]],
    allowance: _Allowance | None = None,
) -> tuple[str, tuple[str, ...]]:
    """The rendered title, or the fallback (summary annotation, alertname, key) and why.

    A missing label is the documented fallback, not an error. Anything else the template
    raises for these labels (a division by zero, ``.format`` of a string with ``:.1f``, an
    encoding error, a sandbox refusal...) also falls back, and is returned as a render error:
    evaluation never fails for a valid webhook (Alertmanager drops a group answered 4xx).
    """
    errors: tuple[str, ...] = ()
    if route.title_template is not None:
        budget = TITLE_BUDGET.start()
        if allowance is not None:
            if allowance.spent():
                if allowance.quick:
                    raise _NeedsMore
                over = (
                    f"title: not rendered: this webhook's titles took over "
                    f"{WEBHOOK_RENDER_STEPS} steps or {WEBHOOK_RENDER_S:g} s"
                )
                return _fallback(labels, annotations, key), (over,)
            budget.max_steps = min(budget.max_steps, allowance.steps)
            budget.deadline = min(budget.deadline, allowance.until)
        try:
            # The output is collected up to a little more than a title can hold (runs of
            # spaces are folded below), then cut: a title is at most TITLE_MAX characters.
            try:
                raw, _ = render_stream(
                    route.title_template.generate(context()),
                    budget,
                    limit=4 * TITLE_MAX,
                    started=True,
                )
            finally:
                if allowance is not None:
                    allowance.steps -= budget.steps
            text = " ".join(raw.split())
        except UndefinedError:
            text = ""  # a label the template needs is missing: fall back below
        except Exception as exc:  # any exception type: the template is the rule author's code
            text, errors = "", (render_error("title", exc),)
        if allowance is not None and allowance.quick and allowance.spent():
            raise _NeedsMore  # cut short by the quick allowance: rendered again in full
        if text:
            return cut(text, TITLE_MAX), errors
    return _fallback(labels, annotations, key), errors


def _fallback(labels: Mapping[str, str], annotations: Mapping[str, str], key: str) -> str:
    """The title without a template, or when it fails: summary, alertname, key; at most
    TITLE_MAX characters (annotations are as long as their author made them)."""
    return cut(annotations.get("summary") or labels.get("alertname") or key, TITLE_MAX)


def render_error(what: str, exc: BaseException) -> str:
    """``what: ExcType: message`` on one line, at most ``RENDER_ERROR_MAX`` characters."""
    try:
        detail = str(exc)
    except Exception:  # an exception whose message itself fails
        detail = ""
    text = " ".join(f"{what}: {type(exc).__name__}: {detail}".split())
    if len(text) > RENDER_ERROR_MAX:
        text = text[: RENDER_ERROR_MAX - 1] + "\u2026"
    return text
