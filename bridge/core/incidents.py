"""The incident state machine: pure functions from (what we knew, what arrived) to a plan.

No I/O here. ``store.apply`` loads the prior state, calls ``plan_webhook`` and writes the plan
in one transaction. Every function is deterministic given its inputs, including ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field, replace
from typing import Any, Literal

from bridge.core import jsontext
from bridge.core.alertmanager import Alert
from bridge.core.policy import Decision, severity_rank, tiers_json
from bridge.core.timeutil import NS
from bridge.core.values import immutable

Status = Literal["triggered", "acknowledged", "mitigated", "resolved", "closed"]
STATUSES: tuple[Status, ...] = ("triggered", "acknowledged", "mitigated", "resolved", "closed")
OPEN_STATUSES: tuple[Status, ...] = ("triggered", "acknowledged", "mitigated")
ACTIVE_STATUSES: tuple[Status, ...] = ("triggered", "acknowledged")
# The actor of what the bridge learned from Alertmanager's API rather than from a webhook.
API_ACTOR = "alertmanager-api"
# The actor of a late heartbeat's alert (the dead man's switch): the bridge's own word.
BRIDGE_ACTOR = "incident-bridge"
# The milestone timestamps of an incident, in the order they happen.
MILESTONES = (
    "started_at",
    "opened_at",
    "acknowledged_at",
    "mitigated_at",
    "resolved_at",
    "closed_at",
)


@immutable
class AlertState:
    """What an incident knows of one alert (by fingerprint)."""

    fingerprint: str
    status: str
    starts_at: int
    ends_at: int | None


@immutable
class Incident:
    id: int | None
    key: str
    title: str
    severity: str
    status: Status
    started_at: int
    opened_at: int
    route: str = "default"
    team: str | None = None
    service: str | None = None
    acknowledged_at: int | None = None
    mitigated_at: int | None = None
    resolved_at: int | None = None
    closed_at: int | None = None
    truncated_alerts: int = 0
    previous_id: int | None = None
    # role -> names of the people holding it, as JSON (assigned when the incident opens)
    roles: str = "{}"
    # name -> that person's handles ({"slack": "U123", "email": ...}), as JSON
    people: str = "{}"
    # the notification tiers the rules gave it when it opened (policy.tiers_json), so that
    # people's actions reach the same channels as its alerts
    tiers: str = "{}"
    # the Alertmanager receiver whose webhook opened it: the reconciler compares only the
    # incidents of receivers the configured Alertmanager has (docs/reconcile.md)
    receiver: str | None = None
    # 1: a drill's incident (core/drills.py), 0: a real one; an integer as the column keeps it
    drill: int = 0


@immutable
class Event:
    """A timeline entry; ``fingerprint`` ties alert events to their alert."""

    kind: str
    text: str
    data: Mapping[str, Any] = field(default_factory=dict)
    actor: str = "alertmanager"


@immutable
class Plan:
    """What one decision's alerts do to its incident. ``incident is None``: nothing to do."""

    incident: Incident | None
    created: bool = False
    links: tuple[AlertState, ...] = ()
    events: tuple[Event, ...] = ()
    previous: Incident | None = None

    @property
    def changed(self) -> bool:
        return bool(self.events)


# How one incoming alert relates to what we knew of it.
Change = Literal["fired", "resolved", "same", "stale", "update"]


def alert_change(known: AlertState | None, alert: Alert) -> Change:
    """Compare an incoming alert with the last state seen for its fingerprint.

    Alertmanager delivers at least once and HA peers race, so a payload can be older than what
    we have: an older ``startsAt``, or "firing" for an occurrence we already saw resolve.
    """
    if known is None:
        return "fired" if alert.status == "firing" else "resolved"
    if alert.starts_at < known.starts_at:
        return "stale"
    if alert.starts_at == known.starts_at:
        if alert.status == known.status:
            return "same"
        if known.status == "firing":
            return "resolved"
        return "stale"  # a late "firing" copy of an occurrence that already resolved
    # A later occurrence of the same alert.
    if alert.status == "firing":
        return "fired" if known.status == "resolved" else "update"
    return "resolved" if known.status == "firing" else "update"


def _state(alert: Alert) -> AlertState:
    ends_at = alert.ends_at if alert.status == "resolved" else None
    return AlertState(alert.fingerprint, alert.status, alert.starts_at, ends_at)


# At most this many labels tell the alerts of one group apart in their timeline lines.
NAME_LABELS = 3


def _telling_labels(alerts: Sequence[Alert]) -> tuple[str, ...]:
    """The labels whose values differ among ``alerts`` (``instance`` first), at most
    ``NAME_LABELS``: what tells one alert of a storm from another in a message."""
    if len(alerts) < 2:
        return ("instance",)
    first = alerts[0].labels
    keys = {k for a in alerts[1:] for k, v in a.labels.items() if first.get(k) != v}
    keys |= {k for k in first if any(k not in a.labels for a in alerts[1:])}
    keys.discard("alertname")
    ordered = sorted(keys, key=lambda k: (k != "instance", k))
    return tuple(ordered[:NAME_LABELS]) or ("instance",)


def _name(alert: Alert, telling: tuple[str, ...] = ("instance",)) -> str:
    labels = alert.labels
    name = labels.get("alertname", alert.fingerprint)
    shown = [(k, labels[k]) for k in telling if k in labels]
    if not shown:
        return name
    if len(shown) == 1:
        return f"{name} ({shown[0][1]})"
    return f"{name} ({', '.join(f'{k}={v}' for k, v in shown)})"


def plan_webhook(
    *,
    decision: Decision,
    alerts: Sequence[Alert],
    truncated: int,
    current: Incident | None,
    current_links: Mapping[str, AlertState],
    known: Mapping[str, AlertState],
    now: int,
    new_id: int | None = None,
    receiver: str | None = None,
    group: Mapping[str, Any] | None = None,
    via: str = "webhook",
) -> Plan:
    """Plan the effect of ``alerts`` (one decision's share of a webhook) on its incident.

    ``current`` is the newest incident with the decision's key, ``current_links`` its alerts,
    ``new_id`` the id an incident opened by this plan gets (the store's single writer knows it),
    ``known`` the newest state per fingerprint across all incidents with that key.
    ``receiver`` is the webhook's Alertmanager receiver (kept on a new incident), ``group`` what
    the reconciler needs to fetch a truncated group's other alerts (its key, labels, receiver;
    kept on the ``truncated_alerts`` entry), ``via`` "api" when the reconciler replays alerts it
    fetched from Alertmanager's API (their entries say so).
    """
    changes = [(alert, alert_change(known.get(alert.fingerprint), alert)) for alert in alerts]
    fires = [a for a, c in changes if c == "fired"]
    events: list[Event] = []
    previous: Incident | None = None

    incident = current
    created = False
    links = dict(current_links)
    if (
        incident is None
        or incident.status in ("resolved", "closed")
        or (
            incident.status == "mitigated"
            and fires
            and now - (incident.mitigated_at or now) > int(decision.reopen_window_s * NS)
        )
    ):
        if not fires:
            # Nothing fires: a late resolve for an incident that is already over.
            return _touch_only(current, current_links, changes)
        previous = incident
        created = True
        incident = Incident(
            id=new_id,
            key=decision.key,
            title=decision.title,
            severity=decision.severity,
            status="triggered",
            started_at=min(a.starts_at for a in fires),
            opened_at=now,
            route=decision.route,
            team=decision.team,
            service=decision.service,
            previous_id=previous.id if previous else None,
            roles=jsontext.dumps({role: list(names) for role, names in decision.roles.items()})
            if decision.roles
            else "{}",
            people=_people(decision),
            tiers=tiers_json(decision.tiers),
            receiver=receiver,
            drill=int(decision.drill),
        )
        links = {}
        data: dict[str, Any] = {"severity": decision.severity, "route": decision.route}
        if previous is not None:
            data["previous_incident"] = previous.id
        events.append(Event("opened", f"Incident opened: {decision.title}", data))
        if known:  # (with nothing known every change is already "fired" or "resolved")
            # Everything but stale copies belongs to the new incident.
            changes = [
                (a, c if c == "stale" else ("fired" if a.status == "firing" else "resolved"))
                for a, c in changes
            ]
    elif incident.status == "mitigated" and fires:
        incident = replace(incident, status="triggered", mitigated_at=None)
        events.append(
            Event(
                "reopened",
                f"Reopened: {len(fires)} alert(s) fired again",
                {"from": "mitigated", "to": "triggered"},
            )
        )

    telling: tuple[str, ...] | None = None  # worked out only when an alert's line is written
    for alert, change in changes:
        if change in ("same", "stale"):
            continue
        links[alert.fingerprint] = _state(alert)
        if change == "fired":
            telling = telling or _telling_labels(alerts)
            name = _name(alert, telling)
            events.append(
                Event("alert_fired", f"Alert fired: {name}{_via(via)}", _alert_data(alert, via))
            )
        elif change == "resolved":
            telling = telling or _telling_labels(alerts)
            events.append(
                Event(
                    "alert_resolved",
                    f"Alert resolved: {_name(alert, telling)}{_via(via)}",
                    _alert_data(alert, via),
                )
            )
        if alert.time_clamped:
            events.append(
                Event(
                    "alert_time_clamped",
                    f"Alert {_name(alert)}: a time outside the years 1678-2261 was kept as the "
                    "nearest time that can be stored",
                    _alert_data(alert),
                )
            )

    if (
        fires
        and not created  # a new incident has the decision's severity already
        and severity_rank(decision.severity) < severity_rank(incident.severity)
    ):
        events.append(
            Event(
                "severity_changed",
                f"Severity raised from {incident.severity} to {decision.severity}",
                {"from": incident.severity, "to": decision.severity},
            )
        )
        incident = replace(incident, severity=decision.severity)

    if truncated and truncated != incident.truncated_alerts:
        events.append(
            Event(
                "truncated_alerts",
                f"Alertmanager left out {truncated} alert(s) of this group (max_alerts)",
                {"truncated_alerts": truncated, **(group or {})},
            )
        )
        incident = replace(incident, truncated_alerts=truncated)

    if (
        not created  # a new incident has a firing alert: the one that opened it
        and incident.status in ACTIVE_STATUSES
        and links
        and all(s.status == "resolved" for s in links.values())
    ):
        events.append(
            Event(
                "status_changed",
                "All alerts resolved: mitigated",
                {"from": incident.status, "to": "mitigated"},
            )
        )
        incident = replace(incident, status="mitigated", mitigated_at=now)

    if decision.render_errors and events:  # with a change, so that repeats add nothing
        events.append(
            Event(
                "rule_render_failed",
                f"Route {decision.route} could not render for these alerts; a fallback was used",
                {"route": decision.route, "errors": list(decision.render_errors)},
            )
        )

    if via == "api":  # what the reconciler learned from the API is the API's word
        events = [replace(e, actor=API_ACTOR) if e.actor == "alertmanager" else e for e in events]
    elif via == "heartbeat":  # the bridge's own alert: Alertmanager said nothing (it may be down)
        events = [
            replace(e, actor=BRIDGE_ACTOR) if e.actor == "alertmanager" else e for e in events
        ]
    touched = tuple([links[a.fingerprint] for a in alerts if a.fingerprint in links])
    return Plan(
        incident=incident,
        created=created,
        links=touched,
        events=tuple(events),
        previous=previous,
    )


def _touch_only(
    current: Incident | None,
    current_links: Mapping[str, AlertState],
    changes: Sequence[tuple[Alert, Change]],
) -> Plan:
    """Record late resolves on an incident that is already over, without events."""
    if current is None:
        return Plan(incident=None)
    links = tuple(
        _state(a) if c in ("resolved", "update") else current_links[a.fingerprint]
        for a, c in changes
        if a.fingerprint in current_links
    )
    return Plan(incident=current, links=links)


def _people(decision: Decision) -> str:
    """The role holders' handles from the rotations (``role_handles`` of the policies)."""
    found: dict[str, dict[str, str]] = {}
    for holders in (decision.policies.get("role_handles") or {}).values():
        for person in holders:
            handles = {k: str(v) for k, v in person.items() if k != "name"}
            if handles:
                found.setdefault(str(person["name"]), {}).update(handles)
    return jsontext.dumps(found) if found else "{}"


def _alert_data(alert: Alert, via: str = "webhook") -> dict[str, Any]:
    # The alert's labels live in the alerts table; the event only points at it.
    data = {"fingerprint": alert.fingerprint, "alertname": alert.labels.get("alertname", "")}
    if via != "webhook":
        data["via"] = via
    return data


def _via(via: str) -> str:
    if via == "webhook":
        return ""
    if via == "heartbeat":  # the dead man's switch's own alert (core/heartbeats.py)
        return " (raised by incident-bridge: a heartbeat is late)"
    return " (fetched from Alertmanager's API: the webhook left it out)"
