"""What the rules decide for an incident declared by hand (docs/incidents.md): the route, the
tiers, the roles and the policies an alert group of the same labels would get, at the severity
the person gave. Pure, as ``engine`` is."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from bridge.core.declare import DeclareError
from bridge.core.policy import Decision, Severity
from bridge.rules.engine import RulesPolicy, match_routes
from bridge.rules.model import Route


def declare_decision(
    policy: RulesPolicy,
    *,
    key: str,
    title: str,
    severity: Severity,
    labels: Mapping[str, str],
    route: str | None,
    team: str | None,
    now_ns: int,
) -> Decision:
    """The decision for a declaration: the route named (``route``), or the route an alert with
    ``labels`` (and ``team=<team>``) goes to, the first of them when several match (``continue``)
    as ``evaluate`` routes an alert; raises ``DeclareError`` naming the field it cannot route."""
    ruleset = policy.ruleset
    wanted = dict(labels)
    if team is not None:
        wanted["team"] = team
    chosen: Route | None
    if route is not None:
        chosen = ruleset.route(route)
        if chosen is None:
            known = ", ".join(sorted(r.name for r in ruleset.routes()))
            raise DeclareError("route", f"unknown route {route!r}; routes: {known}")
    else:
        # the root when its own matchers miss these labels, as a late heartbeat's alert
        chosen = next(iter(match_routes(ruleset.root, wanted)), ruleset.root)
    s = chosen.settings
    if s.roles:
        roles, handles = policy._roles(s, datetime.fromtimestamp(now_ns / 1e9, tz=UTC))
        policies = {**policy._policies(chosen, severity), "role_handles": handles}
    else:
        roles, policies = {}, dict(policy._policies(chosen, severity))
    return Decision(
        key=key,
        severity=severity,
        title=title,
        fingerprints=(),
        route=chosen.name,
        team=s.team or team or labels.get("team"),
        service=s.service or labels.get("service"),
        reopen_window_s=s.reopen_window_s,
        tiers=s.tiers,
        roles=roles,
        policies=policies,
    )
