"""Route tree: validate each route on its own (so one bad route hides no other error),
parse matchers, apply inheritance, and check every reference."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from jinja2 import Template, TemplateSyntaxError
from pydantic import ValidationError

from bridge.core.checks import Check
from bridge.core.drills import Schedule, parse_cron
from bridge.core.escalation import RECIPIENT_KINDS, EscalationPolicy, Level, Recipient
from bridge.core.followup import DEFAULT_POLICY, ChecklistItem, FollowUpPolicy
from bridge.core.policy import ROLES, SEVERITIES, Tiers
from bridge.core.reminders import NO_REMINDERS, ReminderPolicy
from bridge.rules.matchers import Matcher, MatcherError, parse_matchers
from bridge.rules.model import RoleSource, Route, RouteSettings, title_environment
from bridge.rules.schema import NAME_PATTERN, EscalationRecipient, FollowUp, RouteSpec
from bridge.rules.source import Diagnostics, Loc, Source, did_you_mean, report_validation

_LABEL = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


@dataclass
class Refs:
    """Names that routes may refer to, and what got used (for lint warnings)."""

    targets: set[str]
    rotations: set[str]
    templates: Mapping[str, str]
    template_places: Mapping[str, str] = field(default_factory=dict)  # name -> file:line:col
    used: set[tuple[str, str]] = field(default_factory=set)
    names: dict[str, str] = field(default_factory=dict)  # route name -> where
    people: set[str] = field(default_factory=set)  # the rotations' members (escalation's person)
    # rotation -> its members' names and handles; target name -> type: whom a level reaches
    members: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    target_types: dict[str, str] = field(default_factory=dict)

    def reaches(self, handles: Mapping[str, str]) -> bool:
        """Whether a person with ``handles`` is reached by a target: one of that name or type
        (as the running service picks them, runtime.person_targets)."""
        kinds = set(self.target_types.values())
        return any(k in self.target_types or k in kinds for k in handles)


@dataclass(frozen=True)
class RawRoute:
    src: Source
    loc: Loc
    data: Any


def _spec(raw: RawRoute, diags: Diagnostics, root: bool) -> tuple[RouteSpec, list[RawRoute]]:
    src, loc, data = raw.src, raw.loc, raw.data
    if not isinstance(data, dict):
        diags.error(src, loc, "a route must be a mapping")
        return RouteSpec(), []
    name = data.get("name")
    subject = f'route "{name}"' if isinstance(name, str) else ('route "root"' if root else "route")
    children: list[RawRoute] = []
    kids = data.get("routes", [])
    if isinstance(kids, list):
        children = [RawRoute(src, (*loc, "routes", i), k) for i, k in enumerate(kids)]
    else:
        diags.error(src, (*loc, "routes"), f"{subject}: routes: must be a list of routes")
    fields = {k: v for k, v in data.items() if k != "routes"}
    try:
        spec = RouteSpec.model_validate(fields)
    except ValidationError as exc:
        report_validation(diags, src, loc, exc, RouteSpec, subject)
        # Keep checking what is valid: drop the keys that failed and validate the rest.
        bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
        try:
            spec = RouteSpec.model_validate({k: v for k, v in fields.items() if k not in bad})
        except ValidationError:
            spec = RouteSpec(name=name if isinstance(name, str) else None)
    return spec, children


def _matchers(
    raw: RawRoute, spec: RouteSpec, diags: Diagnostics, subject: str
) -> tuple[Matcher, ...]:
    out: list[Matcher] = []
    for i, text in enumerate(spec.matchers):
        mloc = (
            (*raw.loc, "matchers", i)
            if isinstance(raw.data.get("matchers"), list)
            else (*raw.loc, "matchers")
        )
        try:
            out.extend(parse_matchers(text))
        except MatcherError as exc:
            diags.error(raw.src, mloc, f"{subject}: matcher {text!r}: {exc}")
    return tuple(out)


def _ref(kind: str, name: str, known: set[str] | Mapping[str, str], refs: Refs) -> str | None:
    if name in known:
        refs.used.add((kind, name))
        return None
    return f'unknown {kind} "{name}"{did_you_mean(name, known)}'


def _check_refs(
    raw: RawRoute, spec: RouteSpec, refs: Refs, diags: Diagnostics, subject: str
) -> None:
    src, loc = raw.src, raw.loc

    def check(kind: str, name: str | None, where: Loc, known: set[str] | Mapping[str, str]) -> None:
        if name is not None and (msg := _ref(kind, name, known, refs)):
            diags.error(src, (*loc, *where), f"{subject}: {msg}")

    if spec.tiers is not None:
        for i, t in enumerate(spec.tiers.general):
            check("target", t, ("tiers", "general", i), refs.targets)
        check("target", spec.tiers.incident, ("tiers", "incident"), refs.targets)
        st = spec.tiers.stakeholders
        if st is not None:
            if not st.targets:
                diags.error(
                    src,
                    (*loc, "tiers", "stakeholders"),
                    f"{subject}: stakeholders tier has no targets",
                )
            for i, t in enumerate(st.targets):
                check("target", t, ("tiers", "stakeholders", "targets", i), refs.targets)
    if spec.follow_up is not None:
        check("target", spec.follow_up.ticket_target, ("follow_up", "ticket_target"), refs.targets)
        _check_follow_up(raw, spec.follow_up, diags, subject)
    if spec.roles is not None:
        for role in ROLES:
            value = getattr(spec.roles, role)
            sources = value if isinstance(value, list) else [value]
            for i, s in enumerate(sources):
                if s is not None and s.rotation is not None:
                    as_list = isinstance(raw.data["roles"].get(role), list)
                    where = (
                        ("roles", role, i, "rotation") if as_list else ("roles", role, "rotation")
                    )
                    check("rotation", s.rotation, where, refs.rotations)
    if spec.escalation is not None:
        for sev in spec.escalation.model_fields_set:
            policy = getattr(spec.escalation, sev)
            for i, level in enumerate(policy.levels if policy is not None else ()):
                for j, r in enumerate(level.notify):
                    as_list = isinstance(raw.data["escalation"][sev]["levels"][i]["notify"], list)
                    place: Loc = (
                        "escalation",
                        sev,
                        "levels",
                        i,
                        "notify",
                        *((j,) if as_list else ()),
                    )
                    check("rotation", r.rotation, (*place, "rotation"), refs.rotations)
                    check("rotation", r.next, (*place, "next"), refs.rotations)
                    check("target", r.target, (*place, "target"), refs.targets)
                    if r.person is not None and r.person not in refs.people:
                        diags.error(
                            src,
                            (*loc, *place, "person"),
                            f'{subject}: unknown person "{r.person}" (not a member of any '
                            f"rotation){did_you_mean(r.person, refs.people)}",
                        )
                    _warn_unreached(
                        raw, r, (*loc, *place), refs, diags, f"{subject}: escalation.{sev}"
                    )
    if spec.title_template is not None:
        check("template", spec.title_template, ("title_template",), refs.templates)
    if spec.title is not None and spec.title_template is not None:
        diags.error(
            src,
            (*loc, "title_template"),
            f"{subject}: give title or title_template, not both",
            key=True,
        )
    if spec.severity is not None and spec.severity_from is not None:
        diags.error(
            src,
            (*loc, "severity_from"),
            f"{subject}: give severity or severity_from, not both",
            key=True,
        )
    if spec.status_update is not None and spec.reminders is not None:
        both = spec.status_update.model_fields_set & spec.reminders.model_fields_set
        for sev in sorted(both, key=SEVERITIES.index):
            given = getattr(spec.reminders, sev)
            if given is not None and "update_every" not in given.model_fields_set:
                continue  # status_update gives the cadence, reminders the rest: fine
            at: Loc = ("reminders", sev) if given is None else ("reminders", sev, "update_every")
            diags.error(
                src,
                (*loc, *at),
                f"{subject}: give status_update.{sev} or reminders.{sev}.update_every, not both",
                key=True,
            )
    for i, label in enumerate(spec.group_by or ()):
        if label != "..." and not re.match(_LABEL, label):
            diags.error(
                src, (*loc, "group_by", i), f"{subject}: group_by: invalid label name {label!r}"
            )


def _check_follow_up(raw: RawRoute, fu: FollowUp, diags: Diagnostics, subject: str) -> None:
    """Check names unique within the route; warnings for what loads but will not work."""
    src, loc = raw.src, (*raw.loc, "follow_up")
    validates = [i for i, e in enumerate(fu.checklist or ()) if e.kind == "validate"]
    if len(validates) > 1:
        diags.warn(
            src,
            (*loc, "checklist", validates[1]),
            f"{subject}: follow_up.checklist has {len(validates)} validate items: the "
            "validation checks off only the first",
        )
    first: dict[str, str] = {}
    for i, c in enumerate(fu.checks or ()):
        at: Loc = (*loc, "checks", i)
        if c.name in first:
            diags.error(
                src,
                (*at, "name"),
                f'{subject}: follow_up.checks[{i}]: duplicate check name "{c.name}" '
                f"(first at {first[c.name]})",
            )
        else:
            first[c.name] = src.where((*at, "name"))
        if c.expr.endswith("]"):
            diags.warn(
                src,
                (*at, "expr"),
                f'{subject}: check "{c.name}": the expression ends with a range selector: it '
                "gives a range vector, which a check cannot judge (wrap it, e.g. in "
                "max_over_time(...))",
            )


def _warn_unreached(
    raw: RawRoute,
    r: EscalationRecipient,
    at: Loc,
    refs: Refs,
    diags: Diagnostics,
    subject: str,
) -> None:
    """A level's recipient that no target reaches: a person without a handle any target uses,
    a rotation whose members (some or all) have none, the next holder of a rotation of one."""
    if r.person is not None:
        handles = next(
            (m[r.person] for m in refs.members.values() if r.person in m), None
        )  # the first rotation that lists them, as runtime.people keeps them
        if handles is not None and not refs.reaches(handles):
            diags.warn(
                raw.src,
                (*at, "person"),
                f'{subject}: person "{r.person}" has no handle for any target: this level '
                "reaches nobody",
            )
        return
    name, key = (r.rotation, "rotation") if r.rotation is not None else (r.next, "next")
    members = refs.members.get(name or "")
    if members is None:
        return  # an unknown rotation: an error already
    if key == "next" and len(members) == 1:
        diags.warn(
            raw.src,
            (*at, key),
            f'{subject}: rotation "{name}" has one member: its next holder is nobody',
        )
        return
    unreached = [m for m, handles in members.items() if not refs.reaches(handles)]
    if len(unreached) == len(members):
        diags.warn(
            raw.src,
            (*at, key),
            f'{subject}: no member of rotation "{name}" has a handle for any target: this '
            "level reaches nobody",
        )
    elif unreached:
        diags.warn(
            raw.src,
            (*at, key),
            f'{subject}: {", ".join(unreached)} of rotation "{name}" have no handle for any '
            "target: this level reaches nobody while they hold it",
        )


def _inherit(parent: RouteSettings, spec: RouteSpec, templates: Mapping[str, str]) -> RouteSettings:
    s = spec.model_fields_set
    out = parent
    if "severity" in s or "severity_from" in s:
        out = replace(out, severity=spec.severity, severity_from=spec.severity_from)
    for name in ("team", "service"):
        if name in s:
            out = replace(out, **{name: getattr(spec, name)})
    if "title" in s:
        out = replace(out, title=spec.title)
    if "title_template" in s and spec.title_template is not None:
        out = replace(out, title=templates.get(spec.title_template))
    if "group_by" in s:
        # sorted: incident keys list the labels by name
        group_by = tuple(sorted(set(spec.group_by))) if spec.group_by is not None else None
        out = replace(out, group_by=group_by)
    if "reopen_window" in s and spec.reopen_window is not None:
        out = replace(out, reopen_window_s=spec.reopen_window)
    if "follow_up" in s:
        out = replace(out, follow_up=_follow_up(out.follow_up, spec.follow_up))
    if "silence_on_ack" in s:
        out = replace(out, silence_on_ack_s=spec.silence_on_ack)
    if "chat_timeline" in s:
        out = replace(out, chat_timeline=bool(spec.chat_timeline))
    # a route's drills are its own: a child route does not fire its parent's again
    out = replace(
        out,
        drills=tuple(
            Schedule(
                cron=parse_cron(d.cron),
                expression=d.cron,
                severity=d.severity,
                announce_before_s=d.announce_before,
                stakeholders=d.stakeholders,
            )
            for d in spec.drills or ()
        ),
    )
    if spec.tiers is not None:
        t, ts = spec.tiers, spec.tiers.model_fields_set
        old = out.tiers
        stake = t.stakeholders
        out = replace(
            out,
            tiers=Tiers(
                general=tuple(t.general) if "general" in ts else old.general,
                general_min_severity=t.general_min_severity
                if "general_min_severity" in ts
                else old.general_min_severity,
                incident=t.incident if "incident" in ts else old.incident,
                stakeholders=(tuple(stake.targets) if stake else ())
                if "stakeholders" in ts
                else old.stakeholders,
                stakeholder_min_severity=(stake.min_severity if stake else "sev1")
                if "stakeholders" in ts
                else old.stakeholder_min_severity,
            ),
        )
    if spec.roles is not None:
        roles = dict(out.roles)
        for role in spec.roles.model_fields_set:
            value = getattr(spec.roles, role)
            sources = value if isinstance(value, list) else ([value] if value is not None else [])
            roles[role] = tuple(RoleSource(x.rotation, x.person) for x in sources)
        out = replace(out, roles=roles)
    if spec.postmortem is not None:
        pm = dict(out.postmortem)
        pm.update(
            {k: getattr(spec.postmortem, k) or "none" for k in spec.postmortem.model_fields_set}
        )
        out = replace(out, postmortem=pm)
    if spec.status_update is not None or spec.reminders is not None:
        out = replace(out, reminders=_reminders(out.reminders, spec))
    if spec.escalation is not None:
        out = replace(out, escalation=_escalation(out.escalation, spec))
    return out


def _escalation(
    parent: Mapping[str, EscalationPolicy], spec: RouteSpec
) -> dict[str, EscalationPolicy]:
    """The parent's policies with this route's: a severity given replaces the parent's policy
    for it whole (``sevN: ~``: none); the others are inherited."""
    out = dict(parent)
    assert spec.escalation is not None
    for sev in spec.escalation.model_fields_set:
        given = getattr(spec.escalation, sev)
        if given is None:
            out.pop(sev, None)
            continue
        out[sev] = EscalationPolicy(
            levels=tuple(
                Level(
                    level.after,
                    tuple(
                        Recipient(kind, name)
                        for r in level.notify
                        for kind, name in ((k, getattr(r, k)) for k in RECIPIENT_KINDS)
                        if name is not None
                    ),
                )
                for level in given.levels
            ),
            repeat=given.repeat,
        )
    return out


def _follow_up(parent: FollowUpPolicy, spec: FollowUp | None) -> FollowUpPolicy:
    """The parent's follow-up with what this route sets, key by key (a key not given is
    inherited; ``~`` sets a key back to its default, ``follow_up: ~`` all of them)."""
    if spec is None:
        return DEFAULT_POLICY
    given = spec.model_fields_set
    out = parent
    if "checklist" in given:
        checklist = (
            tuple(ChecklistItem(i.text, i.kind) for i in spec.checklist)
            if spec.checklist is not None
            else DEFAULT_POLICY.checklist
        )
        out = replace(out, checklist=checklist)
    if "ticket_target" in given:
        out = replace(out, ticket_target=spec.ticket_target)
    if "stabilization" in given:
        window = spec.stabilization
        out = replace(
            out, stabilization_s=DEFAULT_POLICY.stabilization_s if window is None else window
        )
    if "checks" in given:
        checks = tuple(Check(c.name, c.expr, c.expect) for c in spec.checks or ())
        out = replace(out, checks=checks)
    return out


_REMINDER_FIELDS = {
    "update_every": "update_every_s",
    "acknowledge_within": "acknowledge_within_s",
    "escalate_to_next_commander": "escalate_to_next_commander",
}


def _reminders(parent: Mapping[str, ReminderPolicy], spec: RouteSpec) -> dict[str, ReminderPolicy]:
    """The parent's reminders with what this route sets: per severity and per key (a key not
    given is inherited; ``sevN: ~`` turns that severity's reminders and escalation off);
    ``status_update.sevN`` is ``reminders.sevN.update_every``."""
    out = dict(parent)
    if spec.status_update is not None:
        for sev in spec.status_update.model_fields_set:
            out[sev] = replace(
                out.get(sev, NO_REMINDERS), update_every_s=getattr(spec.status_update, sev)
            )
    if spec.reminders is not None:
        for sev in spec.reminders.model_fields_set:
            given = getattr(spec.reminders, sev)
            if given is None:
                out[sev] = NO_REMINDERS
                continue
            changes = {_REMINDER_FIELDS[k]: getattr(given, k) for k in given.model_fields_set}
            out[sev] = replace(out.get(sev, NO_REMINDERS), **changes)
    return out


def _template(
    raw: RawRoute, spec: RouteSpec, source: str | None, diags: Diagnostics, subject: str
) -> Template | None:
    if source is None:
        return None
    try:
        return title_environment().from_string(source)
    except TemplateSyntaxError as exc:
        if "title" in spec.model_fields_set:  # a named template's errors are reported where it is
            diags.error(
                raw.src,
                (*raw.loc, "title"),
                f"{subject}: title template line {exc.lineno}: {exc.message}",
            )
        return None


def build_route(
    raw: RawRoute,
    parent: RouteSettings,
    refs: Refs,
    diags: Diagnostics,
    *,
    depth: int = 0,
    extra_children: list[RawRoute] | None = None,
) -> Route:
    """Compile one route and its subtree (the root also gets the files' top-level routes)."""
    root = depth == 0
    spec, kids = _spec(raw, diags, root)
    name = spec.name or ("root" if root else "")
    subject = f'route "{name}"' if name else "route"
    where = raw.src.where(raw.loc)
    if not name:
        if not (isinstance(raw.data, dict) and "name" in raw.data):  # else the schema said why
            diags.error(raw.src, raw.loc, 'route: missing required key "name"')
    elif not root or spec.name:
        if not re.match(NAME_PATTERN, name):
            pass  # reported by the schema
        elif name in refs.names:
            diags.error(
                raw.src,
                (*raw.loc, "name"),
                f"{subject}: duplicate route name (first at {refs.names[name]})",
            )
        else:
            refs.names[name] = raw.src.where((*raw.loc, "name"))
    if root and spec.name is None:
        refs.names.setdefault("root", where)
    matchers = _matchers(raw, spec, diags, subject) if isinstance(raw.data, dict) else ()
    if root and spec.matchers:
        diags.error(
            raw.src,
            (*raw.loc, "matchers"),
            f"{subject}: the root route must not have matchers: it catches every alert",
        )
    if root and spec.continue_:
        diags.error(
            raw.src, (*raw.loc, "continue"), f"{subject}: the root route cannot continue", key=True
        )
    if isinstance(raw.data, dict):
        _check_refs(raw, spec, refs, diags, subject)
    settings = _inherit(parent, spec, refs.templates)
    own_title = root or bool({"title", "title_template"} & spec.model_fields_set)
    template = _template(raw, spec, settings.title, diags, subject) if own_title else None
    title_where = ""
    if template is not None:
        if "title" in spec.model_fields_set:
            title_where = raw.src.where((*raw.loc, "title"))
        else:  # a named template (or the root's none): where its text is
            named = spec.title_template or ""
            title_where = refs.template_places.get(named) or raw.src.where(
                (*raw.loc, "title_template")
            )
    children = tuple(
        build_route(k, settings, refs, diags, depth=depth + 1)
        for k in [*kids, *(extra_children or [])]
    )
    return Route(
        name or "?", matchers, spec.continue_, settings, children, where, depth, template,
        title_where,
    )  # fmt: skip


def inherit_templates(route: Route, parent: tuple[Template, str] | None = None) -> Route:
    """Give every route the compiled title template it inherits (and the template's place)."""
    if route.title_template is not None:
        tpl, where = route.title_template, route.title_where
    elif parent is not None and route.settings.title is not None:
        tpl, where = parent
    else:
        tpl, where = None, ""
    own = (tpl, where) if tpl is not None else None
    return replace(
        route,
        title_template=tpl,
        title_where=where,
        children=tuple(inherit_templates(c, own) for c in route.children),
    )
