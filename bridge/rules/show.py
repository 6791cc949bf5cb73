"""The active rules as plain JSON-able data, secrets masked (for ``GET /api/v1/rules``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from bridge.core.followup import FollowUpPolicy
from bridge.core.secrets import MASK, Secret
from bridge.rules.model import Route, RouteSettings, RuleSet
from bridge.rules.rotations import Rotation
from bridge.rules.schema import DAY_NAMES


def _plain(value: Any) -> Any:
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def followup_dict(p: FollowUpPolicy) -> dict[str, Any]:
    """A route's follow-up policy as plain data (the API's rules, the decisions' policies)."""
    return {
        "checklist": [{"text": i.text, "kind": i.kind} for i in p.checklist],
        "ticket_target": p.ticket_target,
        "stabilization_s": p.stabilization_s,
        "checks": [{"name": c.name, "expr": c.expr, "expect": c.expect} for c in p.checks],
    }


def settings_dict(s: RouteSettings) -> dict[str, Any]:
    return {
        "severity": s.severity,
        "severity_from": s.severity_from.model_dump()
        if s.severity_from and s.severity is None
        else None,
        "team": s.team,
        "service": s.service,
        "title": s.title,
        "group_by": list(s.group_by) if s.group_by is not None else None,
        "reopen_window_s": s.reopen_window_s,
        "tiers": _plain(asdict(s.tiers)),
        "roles": {r: [src.describe() for src in v] for r, v in s.roles.items()},
        "follow_up": followup_dict(s.follow_up),
        "postmortem": dict(s.postmortem),
        "silence_on_ack_s": s.silence_on_ack_s,
        "chat_timeline": s.chat_timeline,
        "status_update_s": dict(s.status_update),
        "reminders": {
            sev: {
                "update_every_s": p.update_every_s,
                "acknowledge_within_s": p.acknowledge_within_s,
                "escalate_to_next_commander": p.escalate_to_next_commander,
            }
            for sev, p in s.reminders.items()
        },
        "escalation": {
            sev: {
                "levels": [
                    {"after_s": level.after_s, "notify": [r.describe() for r in level.notify]}
                    for level in p.levels
                ],
                "repeat": p.repeat,
            }
            for sev, p in s.escalation.items()
        },
    }


def route_dict(r: Route) -> dict[str, Any]:
    return {
        "name": r.name,
        "matchers": [str(m) for m in r.matchers],
        "continue": r.continue_,
        "source": r.where,
        "decides": settings_dict(r.settings),
        "routes": [route_dict(c) for c in r.children],
    }


def rotation_dict(r: Rotation) -> dict[str, Any]:
    return {
        "members": [{"name": m.name, "handles": dict(m.handles)} for m in r.members],
        "period_days": r.period_days,
        "handoff": r.handoff.strftime("%H:%M"),
        "timezone": r.timezone,
        "start": r.start.isoformat(),
        "overrides": [
            {"start": o.start.isoformat(), "end": o.end.isoformat(), "member": o.member.name}
            for o in r.overrides
        ],
        "handoff_to": list(r.handoff_to),
        "working_hours": {
            "start": r.working_hours.start.strftime("%H:%M"),
            "end": r.working_hours.end.strftime("%H:%M"),
            "days": [DAY_NAMES[d] for d in sorted(r.working_hours.days)],
        },
    }


def ruleset_dict(rs: RuleSet) -> dict[str, Any]:
    """Everything the rules decide, as JSON-able data. Secrets appear only as ``<secret>``."""
    return {
        "config_hash": rs.config_hash,
        "files": list(rs.files),
        "targets": {
            n: {"type": t.type, "settings": _plain(dict(t.settings)), "source": t.where}
            for n, t in rs.targets.items()
        },
        "rotations": {n: rotation_dict(r) for n, r in rs.rotations.items()},
        "templates": dict(rs.templates),
        "route": route_dict(rs.root),
        # the dead man's switch (docs/heartbeats.md)
        "heartbeats": {
            n: {
                "interval_s": h.interval_s,
                "grace_s": h.grace_s,
                "route": h.route,
                "severity": h.severity,
                "alertname": h.alertname,
                "labels": dict(h.labels),
            }
            for n, h in rs.heartbeats.items()
        },
        # the public status page's components (docs/status-page.md), in the rules' order
        "components": {
            n: {
                "name": c.name,
                "description": c.description,
                "routes": list(c.routes),
                "labels": dict(c.labels or {}),
            }
            for n, c in rs.components.items()
        },
    }
