"""Load rule files: parse, validate everything (reporting every error with its place),
merge the files, lint, and build an immutable ``RuleSet``.

Merging: targets, rotations and templates are one namespace each across files (a name twice
is an error). Exactly one file may hold the root ``route:``; every file's top-level
``routes:`` become children of the root, in file-name order, after the root's own ``routes:``.
Without any ``route:`` the root is an empty route named ``root``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import TemplateSyntaxError
from pydantic import ValidationError

from bridge.core.heartbeats import Heartbeat
from bridge.core.insights import WorkingHours
from bridge.core.status import Component
from bridge.rules import rotations as rot
from bridge.rules.lint import lint
from bridge.rules.model import Route, RouteSettings, RuleSet, TargetDef, title_environment
from bridge.rules.routes import RawRoute, Refs, build_route, inherit_templates
from bridge.rules.schema import (
    NAME_PATTERN,
    ComponentSpec,
    HeartbeatSpec,
    RotationSpec,
    RuleFile,
    keys_of,
)
from bridge.rules.source import (
    MAX_TOTAL_NODES,
    Diagnostics,
    Source,
    collect_files,
    did_you_mean,
    read_source,
    report_validation,
)
from bridge.rules.targetdefs import load_target
from bridge.targets import MESSAGE_TYPES

_SECTIONS = keys_of(RuleFile)


@dataclass(frozen=True)
class LoadResult:
    ruleset: RuleSet | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    config_hash: str = ""

    @property
    def ok(self) -> bool:
        return self.ruleset is not None


@dataclass
class _Acc:
    targets: dict[str, TargetDef] = field(default_factory=dict)
    rotations: dict[str, rot.Rotation] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    heartbeats: dict[str, Heartbeat] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)
    declared: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, name) -> where
    places: dict[tuple[str, str], tuple[Source, tuple[str, str]]] = field(default_factory=dict)
    root: RawRoute | None = None
    top_routes: list[RawRoute] = field(default_factory=list)

    def declared_names(self, kind: str) -> list[str]:
        return [n for k, n in self.declared if k == kind]


def _declare(
    acc: _Acc, diags: Diagnostics, src: Source, kind: str, section: str, name: Any
) -> bool:
    loc = (section, name)
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        diags.error(src, loc, f"{kind} name {name!r}: use letters, digits, '_', '.', '-'", key=True)
        return False
    if (kind, name) in acc.declared:
        diags.error(
            src, loc, f'{kind} "{name}" already declared at {acc.declared[kind, name]}', key=True
        )
        return False
    acc.declared[kind, name] = src.where(loc, key=True)
    acc.places[kind, name] = (src, loc)
    return True


def _rotation(src: Source, name: str, data: Any, diags: Diagnostics) -> rot.Rotation | None:
    loc = ("rotations", name)
    subject = f'rotation "{name}"'
    ok = True
    try:
        spec = RotationSpec.model_validate(data)
    except ValidationError as exc:
        report_validation(diags, src, loc, exc, RotationSpec, subject)
        ok = False
        # Check what is valid too: drop the keys that failed and validate the rest.
        bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
        try:
            spec = RotationSpec.model_validate({k: v for k, v in data.items() if k not in bad})
        except (ValidationError, AttributeError):
            return None
    members = tuple(rot.Member(m.name, dict(m.handles)) for m in spec.members)
    names = [m.name for m in members]
    for i, n in enumerate(names):
        if n in names[:i]:
            diags.error(src, (*loc, "members", i), f'{subject}: member "{n}" listed twice')
            ok = False
    zone = ZoneInfo(spec.timezone)
    overrides = []
    for i, o in enumerate(spec.overrides):
        member = next((m for m in members if m.name == o.member), None)
        if member is None:
            hint = did_you_mean(o.member, names)
            diags.error(
                src,
                (*loc, "overrides", i, "member"),
                f'{subject}: override member "{o.member}" is not a member{hint}',
            )
            ok = False
            continue
        start = rot.to_instant(o.start, zone, spec.handoff)
        end = rot.to_instant(o.end, zone, spec.handoff)
        if end <= start:
            diags.error(
                src, (*loc, "overrides", i, "end"), f"{subject}: override ends before it starts"
            )
            ok = False
        overrides.append(rot.Override(start, end, member))
    hours = WorkingHours()
    if spec.working_hours is not None:
        wh = spec.working_hours
        if wh.end <= wh.start:
            diags.error(
                src,
                (*loc, "working_hours", "end")
                if "end" in data["working_hours"]
                else (*loc, "working_hours"),
                f"{subject}: working hours end ({wh.end:%H:%M}) must come after their start "
                f"({wh.start:%H:%M}) on the same day",
            )
            ok = False
        hours = WorkingHours(wh.start, wh.end, frozenset(wh.days))
    if not ok:
        return None
    return rot.Rotation(
        name, members, spec.period, spec.handoff, spec.timezone, spec.start, tuple(overrides),
        handoff_to=tuple(spec.handoff_to), working_hours=hours,
    )  # fmt: skip


def _heartbeat(src: Source, name: str, data: Any, diags: Diagnostics) -> Heartbeat | None:
    try:
        spec = HeartbeatSpec.model_validate(data)
    except ValidationError as exc:
        report_validation(
            diags, src, ("heartbeats", name), exc, HeartbeatSpec, f'heartbeat "{name}"'
        )
        return None
    return Heartbeat(
        name=name,
        interval_s=spec.interval,
        grace_s=spec.grace,
        route=spec.route,
        severity=spec.severity,
        alertname=spec.alertname,
        labels=dict(spec.labels),
    )


def _check_heartbeat_routes(acc: _Acc, root: Route, diags: Diagnostics) -> None:
    """A heartbeat's ``route`` must name a route of the rules (its incident goes there)."""
    names = [r.name for r in root.walk()]
    for name, hb in acc.heartbeats.items():
        if hb.route is not None and hb.route not in names:
            src, loc = acc.places["heartbeat", name]
            diags.error(
                src,
                (*loc, "route"),
                f'heartbeat "{name}": route "{hb.route}" is not a route of the rules'
                f"{did_you_mean(hb.route, names)}",
            )


def _component(src: Source, name: str, data: Any, diags: Diagnostics) -> Component | None:
    if not isinstance(data, dict):
        diags.error(src, ("components", name), f'component "{name}": must be a mapping')
        return None
    try:
        spec = ComponentSpec.model_validate(data)
    except ValidationError as exc:
        report_validation(
            diags, src, ("components", name), exc, ComponentSpec, f'component "{name}"'
        )
        return None
    return Component(
        id=name,
        name=spec.name,
        description=spec.description,
        routes=tuple(spec.routes),
        labels=dict(spec.labels),
    )


def _check_component_routes(acc: _Acc, root: Route, diags: Diagnostics) -> None:
    """A component's ``routes`` must name routes of the rules (else it links nothing)."""
    names = [r.name for r in root.walk()]
    for name, component in acc.components.items():
        for i, route in enumerate(component.routes):
            if route not in names:
                src, loc = acc.places["component", name]
                diags.error(
                    src,
                    (*loc, "routes", i),
                    f'component "{name}": route "{route}" is not a route of the rules'
                    f"{did_you_mean(route, names)}",
                )


def _read_file(
    src: Source, acc: _Acc, diags: Diagnostics, env: Mapping[str, str] | None, resolve: bool
) -> None:
    data = src.data
    if data is None:
        return
    if not isinstance(data, dict):
        diags.error(src, (), f"the top level must be a mapping with keys {', '.join(_SECTIONS)}")
        return
    if data and not any(key in _SECTIONS for key in data):
        # Not a rules file at all (a file put or linked here by mistake): its keys are not
        # quoted, they may be anything it holds.
        diags.error(src, (), f"not a rules file: no top-level key {', '.join(_SECTIONS)}")
        return
    for key in data:
        if key not in _SECTIONS:
            diags.error(
                src, (key,), f'unknown key "{key}"{did_you_mean(str(key), _SECTIONS)}', key=True
            )
    for section in ("targets", "rotations", "templates", "heartbeats", "components"):
        block = data.get(section)
        if block is None:
            continue
        if not isinstance(block, dict):
            diags.error(src, (section,), f"{section}: must be a mapping of name to definition")
            continue
        for name, value in block.items():
            kind = section.removesuffix("s")
            if not _declare(acc, diags, src, kind, section, name):
                continue
            if section == "targets":
                t = load_target(src, (section, name), name, value, diags, env, resolve)
                if t is not None:
                    acc.targets[name] = t
            elif section == "rotations":
                r = _rotation(src, name, value, diags)
                if r is not None:
                    acc.rotations[name] = r
            elif section == "heartbeats":
                h = _heartbeat(src, name, value, diags)
                if h is not None:
                    acc.heartbeats[name] = h
            elif section == "components":
                c = _component(src, name, value, diags)
                if c is not None:
                    acc.components[name] = c
            elif not isinstance(value, str):
                diags.error(
                    src, (section, name), f'template "{name}": must be a string (a Jinja2 template)'
                )
            else:
                acc.templates[name] = value
                try:
                    title_environment().from_string(value)
                except TemplateSyntaxError as exc:
                    diags.error(
                        src, (section, name), f'template "{name}": line {exc.lineno}: {exc.message}'
                    )
    if "route" in data:
        if acc.root is not None:
            first = acc.root.src.where(acc.root.loc)
            diags.error(src, ("route",), f"root route already defined at {first}", key=True)
        else:
            acc.root = RawRoute(src, ("route",), data["route"])
    routes = data.get("routes")
    if routes is not None:
        if isinstance(routes, list):
            acc.top_routes.extend(RawRoute(src, ("routes", i), r) for i, r in enumerate(routes))
        else:
            diags.error(src, ("routes",), "routes: must be a list of routes")


def _check_handoff_targets(acc: _Acc, diags: Diagnostics) -> None:
    """A rotation's ``handoff_to`` names targets (of any file) of a type that takes channel
    messages (``targets.MESSAGE_TYPES``): an error at the name otherwise."""
    for name, rotation in acc.rotations.items():
        src, loc = acc.places["rotation", name]
        for i, target in enumerate(rotation.handoff_to):
            where = (*loc, "handoff_to", i)
            subject = f'rotation "{name}": handoff_to'
            if target not in acc.declared_names("target"):
                hint = did_you_mean(target, acc.declared_names("target"))
                diags.error(src, where, f'{subject}: unknown target "{target}"{hint}')
            elif target in acc.targets and acc.targets[target].type not in MESSAGE_TYPES:
                kinds = ", ".join(sorted(MESSAGE_TYPES))
                diags.error(
                    src,
                    where,
                    f'{subject}: target "{target}" is of type {acc.targets[target].type}, '
                    f"which takes no channel messages (types that do: {kinds})",
                )


def _place(message: str) -> tuple[str, int, int]:
    m = re.match(r"^(.*?):(\d+):(\d+): ", message)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else (message, 0, 0)


def load_rules(
    paths: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    resolve_secrets: bool = True,
) -> LoadResult:
    """Load and check rule files or directories. Pure apart from reading the files (and the
    secret files and environment variables the targets refer to)."""
    diags = Diagnostics()
    files, errs = collect_files(paths)
    diags.errors.extend(errs)
    digest = hashlib.sha256()
    sources: list[Source] = []
    nodes = 0
    for f in files:
        src, raw = read_source(f, diags)
        digest.update(f.name.encode() + b"\0" + hashlib.sha256(raw).digest())
        if src is not None:
            nodes += src.nodes
            if nodes > MAX_TOTAL_NODES:
                # each file within its bounds, but all of them together too much to build
                diags.errors.append(
                    f"{src.name}:0:0: the rule files up to this one have more than "
                    f"{MAX_TOTAL_NODES} nodes together"
                )
                break
            sources.append(src)
    config_hash = digest.hexdigest()
    acc = _Acc()
    for src in sources:
        _read_file(src, acc, diags, env, resolve_secrets)
    refs = Refs(
        set(acc.declared_names("target")),
        set(acc.declared_names("rotation")),
        acc.templates,
        {
            name: src.where(loc)
            for (kind, name), (src, loc) in acc.places.items()
            if kind == "template"
        },
        people={m.name for r in acc.rotations.values() for m in r.members},
        members={
            name: {m.name: dict(m.handles) for m in r.members} for name, r in acc.rotations.items()
        },
        target_types={name: t.type for name, t in acc.targets.items()},
    )
    if acc.root is None:
        base = sources[0] if sources else Source("<rules>", {})
        root_raw = RawRoute(Source(base.name, {}), (), {})
    else:
        root_raw = acc.root
    root = build_route(root_raw, RouteSettings(), refs, diags, extra_children=acc.top_routes)
    root = inherit_templates(root)
    _check_heartbeat_routes(acc, root, diags)
    _check_component_routes(acc, root, diags)
    _check_handoff_targets(acc, diags)
    diags.errors.sort(key=_place)
    warnings = lint(root, acc.rotations, refs, acc.places, acc.targets) if not diags.errors else []
    if diags.errors:
        return LoadResult(None, diags.errors, diags.warnings + warnings, config_hash)
    ruleset = RuleSet(
        root, dict(acc.targets), dict(acc.rotations), dict(acc.templates),
        tuple(s.name for s in sources), config_hash, dict(acc.heartbeats),
        dict(acc.components),
    )  # fmt: skip
    return LoadResult(ruleset, [], diags.warnings + warnings, config_hash)
