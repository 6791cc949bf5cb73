"""Lint warnings: rules that load but probably do not do what their author meant."""

from __future__ import annotations

from collections.abc import Mapping

from bridge.rules.matchers import MatchType
from bridge.rules.model import Route, TargetDef
from bridge.rules.rotations import Rotation
from bridge.rules.routes import Refs
from bridge.rules.source import Source


def catches_all(route: Route) -> bool:
    """True when the route's matchers match every label set (no matchers, or only ``=~".*"``)."""
    return all(m.type is MatchType.REGEX and m.value in (".*", "(.*)") for m in route.matchers)


def _routes(root: Route, out: list[str]) -> None:
    for parent in root.walk():
        shadow: Route | None = None
        for child in parent.children:
            if shadow is not None:
                out.append(
                    f'{child.where}: route "{child.name}" is unreachable: route "{shadow.name}" '
                    "before it matches every alert and has no continue: true"
                )
            elif catches_all(child) and not child.continue_:
                shadow = child
        if not parent.children:
            t = parent.settings.tiers
            if not (t.general or t.incident or t.stakeholders):
                out.append(f'{parent.where}: route "{parent.name}" notifies no target (no tiers)')


def _paging(
    targets: Mapping[str, TargetDef], rotations: Mapping[str, Rotation], out: list[str]
) -> None:
    """A Twilio target without ``to`` pages the people whose handles name it (or ``twilio``),
    as an escalation step reaches them: with nobody's, it can page nobody."""
    handles = {
        key
        for r in rotations.values()
        for m in (*r.members, *(o.member for o in r.overrides))
        for key in m.handles
    }
    for name, t in targets.items():
        nobody = name not in handles and t.type not in handles
        if t.type == "twilio" and getattr(t.config, "to", "") is None and nobody:
            out.append(
                f'{t.where}: target "{name}" pages nobody: it has no `to`, and no '
                f"rotation member's handles name it ({name}: or {t.type}: +1...)"
            )


def lint(
    root: Route,
    rotations: Mapping[str, Rotation],
    refs: Refs,
    places: Mapping[tuple[str, str], tuple[Source, tuple[str, str]]],
    targets: Mapping[str, TargetDef] | None = None,
) -> list[str]:
    out: list[str] = []
    _routes(root, out)
    _paging(targets or {}, rotations, out)
    for name, r in rotations.items():
        if len(r.members) == 1:
            src, loc = places["rotation", name]
            out.append(f'{src.where(loc, key=True)}: rotation "{name}" has only one member')
    for (kind, name), (src, loc) in sorted(places.items(), key=lambda kv: kv[0]):
        if (kind, name) not in refs.used:
            out.append(f'{src.where(loc, key=True)}: {kind} "{name}" is never used')
    return out
