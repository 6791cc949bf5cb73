"""The blameless postmortem, pure: its narrative sections (what people write), the facts record
(what the bridge knows: milestones and durations, roles and hand-overs, the timeline with its
corrections applied, the alerts, the validation, the follow-up's items and their tickets), and
the merge of the newest narrative with facts regenerated at each read.

No I/O and no templates here: ``store/postmortem.py`` reads the rows and calls ``build_facts``;
``bridge/kb`` renders ``document(...)`` through the Jinja2 template and writes the files.

The narrative is people's Markdown, one text per section, kept in versions: every save whose
sections differ from the newest version is a new version, never an overwrite. Each section
comes with guidance for an empty one: a blameless postmortem talks about systems, signals and
decisions, not about who is to blame.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from bridge.core.incidents import Event
from bridge.core.timeutil import NS, format_ns, parse_rfc3339
from bridge.core.values import immutable

SectionName = Literal["summary", "impact", "root_cause", "went_well", "went_badly", "lucky"]
SECTIONS: tuple[SectionName, ...] = get_args(SectionName)
# The longest text one section may have (a long root cause fits; a pasted log does not).
MAX_SECTION = 20_000
# The facts keep at most this many timeline rows and alerts (an alert storm has thousands).
MAX_TIMELINE = 1_000
MAX_ALERT_ROWS = 25  # alert_fired / alert_resolved rows kept when the timeline is too long
MAX_ALERTS = 100
ACTOR = "incident-bridge"


@immutable
class Section:
    name: SectionName
    title: str
    guidance: str  # shown in place of an empty section


SECTION_INFO: tuple[Section, ...] = (
    Section(
        "summary",
        "Summary",
        "What happened, in two or three sentences: the service, the symptom, how it was "
        "brought back. Describe systems and decisions, not people.",
    ),
    Section(
        "impact",
        "Impact",
        "Who and what was affected, how much and for how long: users, requests, money, data. "
        "Numbers where there are any; the impact window and durations above are measured.",
    ),
    Section(
        "root_cause",
        "Root cause and trigger",
        "The conditions in the system that made this possible, and what set it off. Ask why the "
        "system allowed it, not who did it; there is rarely a single cause.",
    ),
    Section(
        "went_well",
        "What went well",
        "Signals, tools, runbooks and decisions that helped: what to keep doing.",
    ),
    Section(
        "went_badly",
        "What went badly",
        "Where alerts, dashboards, runbooks, tooling or the process made the response harder. "
        "Name the gap in the system, not a person; everyone acted on what they knew then.",
    ),
    Section(
        "lucky",
        "Where we got lucky",
        "What limited the damage by chance rather than by design: the next incident's risks.",
    ),
)
SECTION_BY_NAME: Mapping[str, Section] = {s.name: s for s in SECTION_INFO}


# --- the narrative ----------------------------------------------------------------------------


@immutable
class Narrative:
    """What people wrote, one Markdown text per section ("" when not written)."""

    summary: str = ""
    impact: str = ""
    root_cause: str = ""
    went_well: str = ""
    went_badly: str = ""
    lucky: str = ""

    def text(self, name: str) -> str:
        return str(getattr(self, name))

    def as_dict(self) -> dict[str, str]:
        return {name: self.text(name) for name in SECTIONS}

    @property
    def written(self) -> tuple[SectionName, ...]:
        """The sections that have text."""
        return tuple(name for name in SECTIONS if self.text(name).strip())


EMPTY = Narrative()


def narrative_from(data: Any) -> Narrative:
    """A stored narrative (JSON object); unknown keys and values that are not text are left out,
    so an older or damaged row still reads."""
    if not isinstance(data, Mapping):
        return EMPTY
    known = {f.name for f in fields(Narrative)}
    return Narrative(**{k: v for k, v in data.items() if k in known and isinstance(v, str)})


def normalize(text: str) -> str:
    """A section's text as it is kept: ``\\r\\n`` as ``\\n``, no blank lines or spaces around it
    (so saving what a form or an editor added around the same text is no new version)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n").strip()


@immutable
class SectionProblem:
    """A change that cannot apply: 400, ``field`` names it (``sections.<name>``)."""

    field: str
    message: str


def apply_sections(base: Narrative, changes: Mapping[str, Any]) -> Narrative | SectionProblem:
    """``base`` with the sections in ``changes`` replaced (an empty text clears one); the
    sections not named keep their text."""
    values = base.as_dict()
    for name, text in changes.items():
        if name not in SECTION_BY_NAME:
            return SectionProblem(
                f"sections.{name}", f"unknown section {name!r}; sections: {', '.join(SECTIONS)}"
            )
        if not isinstance(text, str):
            return SectionProblem(f"sections.{name}", "must be text (Markdown)")
        if len(text) > MAX_SECTION:
            return SectionProblem(f"sections.{name}", f"at most {MAX_SECTION} characters")
        values[name] = normalize(text)
    return Narrative(**values)


def changed_sections(before: Narrative, after: Narrative) -> tuple[SectionName, ...]:
    return tuple(name for name in SECTIONS if before.text(name) != after.text(name))


@immutable
class Version:
    """A saved version of the narrative: its number (1, 2, ...), who saved it and when."""

    version: int
    author: str
    saved_at: int
    narrative: Narrative


def narrative_text(narrative: Narrative) -> str:
    """The narrative as one Markdown text, section by section (what diffs compare)."""
    parts = []
    for section in SECTION_INFO:
        parts.append(f"## {section.title}\n\n{narrative.text(section.name)}".rstrip() + "\n")
    return "\n".join(parts)


def diff(before: Narrative, after: Narrative, from_label: str, to_label: str) -> str:
    """A unified diff of two narratives' texts ("" when they are the same)."""
    return "".join(
        difflib.unified_diff(
            narrative_text(before).splitlines(keepends=True),
            narrative_text(after).splitlines(keepends=True),
            fromfile=from_label,
            tofile=to_label,
        )
    )


# --- the facts --------------------------------------------------------------------------------


@immutable
class Duration:
    name: str  # detection_delay, time_to_acknowledge, time_to_mitigate, time_to_resolve
    label: str
    ns: int | None  # None: the milestone was not reached


@immutable
class Handover:
    """A role given, handed over or released (a ``role_changed`` entry)."""

    at: int
    role: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    action: str  # assign, handover, release
    actor: str


@immutable
class Row:
    """A timeline entry as the postmortem shows it: a corrected entry reads as corrected."""

    id: int
    at: int
    kind: str
    actor: str
    text: str
    corrected_by: int | None = None


@immutable
class AlertFact:
    alertname: str
    status: str
    starts_at: int | None
    ends_at: int | None
    summary: str
    generator_url: str
    runbook_url: str
    labels: tuple[tuple[str, str], ...]


@immutable
class PostmortemCheck:
    """One PromQL check as the postmortem tells it, read back from the validation kept (the
    record of ``core/checks.CheckResult``): ``passed`` None when the record does not say."""

    name: str
    passed: bool | None
    reason: str


@immutable
class ValidationFact:
    """The follow-up's validation: quiet over the stabilization window, the PromQL checks."""

    validated_at: int | None
    passed: bool | None  # None: not run (yet), or skipped
    quiet: bool | None
    skipped: str
    reasons: tuple[str, ...]
    checks: tuple[PostmortemCheck, ...]


@immutable
class ActionItem:
    """A follow-up item, with its ticket once the ticket target opened it."""

    id: int
    kind: str
    text: str
    owner: str
    state: str
    reason: str
    ticket_key: str
    ticket_url: str


@immutable
class Facts:
    """What the bridge knows of the incident, regenerated at every read."""

    incident_id: int
    title: str
    severity: str
    status: str
    route: str
    team: str
    service: str
    key: str
    milestones: tuple[tuple[str, int | None], ...]
    durations: tuple[Duration, ...]
    roles: tuple[tuple[str, tuple[str, ...]], ...]
    handovers: tuple[Handover, ...]
    timeline: tuple[Row, ...]
    timeline_omitted: int
    alerts: tuple[AlertFact, ...]
    alerts_omitted: int
    validation: ValidationFact | None
    items: tuple[ActionItem, ...]

    def at(self, milestone: str) -> int | None:
        return dict(self.milestones).get(milestone)

    @property
    def impact_end(self) -> int | None:
        """When the impact stopped: mitigated (resolved when it never was)."""
        return self.at("mitigated_at") or self.at("resolved_at")


MILESTONE_LABELS = {
    "started_at": "Started (first alert)",
    "opened_at": "Opened",
    "acknowledged_at": "Acknowledged",
    "mitigated_at": "Mitigated",
    "resolved_at": "Resolved",
    "closed_at": "Closed",
}
# (name, label, the milestone it runs to from started_at, the index page's column)
DURATIONS = (
    ("detection_delay", "Detection delay (started to opened)", "opened_at", "Detected in"),
    ("time_to_acknowledge", "Time to acknowledge", "acknowledged_at", "Acknowledged in"),
    ("time_to_mitigate", "Time to mitigate", "mitigated_at", "Mitigated in"),
    ("time_to_resolve", "Time to resolve", "resolved_at", "Resolved in"),
)


def to_ns(value: Any) -> int | None:
    """A time as the store gives it: ns, RFC 3339 text, or nothing."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value:
        try:
            return parse_rfc3339(value)
        except ValueError:
            return None
    return None


def durations(milestones: Mapping[str, int | None]) -> tuple[Duration, ...]:
    """Every duration from ``started_at`` (the first alert): to opened (the detection delay),
    acknowledged, mitigated, resolved; None for a milestone not reached."""
    start = milestones.get("started_at")
    out = []
    for name, label, milestone, _ in DURATIONS:
        at = milestones.get(milestone)
        out.append(Duration(name, label, None if at is None or start is None else at - start))
    return tuple(out)


def format_duration(ns: int | None) -> str:
    """``45s``, ``4m 12s``, ``2h 05m 00s``, ``3d 04h 00m``; ``-`` for none."""
    if ns is None:
        return "-"
    sign = "-" if ns < 0 else ""
    seconds = abs(ns) // NS
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{sign}{minutes}m {secs:02d}s"
    return f"{sign}{secs}s"


def format_time(ns: int | None) -> str:
    """``2026-11-27 04:06:40`` (UTC); ``-`` for none."""
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns // NS, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence):
        return tuple(str(v) for v in value)
    return ()


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# The postmortem's own entries are not part of the incident's story it tells (and a
# publication would otherwise change the next rendering, making a commit of its own).
OWN_KINDS = ("postmortem_saved", "postmortem_published")


def _own(kind: str, data: Mapping[str, Any]) -> bool:
    """An entry of the postmortem's own, or the close (publishing closes the incident)."""
    return kind in OWN_KINDS or (kind == "status_changed" and data.get("to") == "closed")


def _timeline(entries: Sequence[Mapping[str, Any]]) -> tuple[list[Row], list[Handover]]:
    """The rows (corrections applied: a corrected entry reads as corrected and the correcting
    entry is not shown again; the postmortem's own entries and the close left out) and the
    role changes."""
    by_id = {e.get("id"): e for e in entries}
    rows: list[Row] = []
    handovers: list[Handover] = []
    for e in entries:
        data = _mapping(e.get("data"))
        at = to_ns(e.get("time")) or 0
        kind, actor = _text(e.get("kind")), _text(e.get("actor"))
        if _own(kind, data):
            continue
        if kind == "role_changed":
            handovers.append(
                Handover(
                    at,
                    _text(data.get("role")),
                    _names(data.get("from")),
                    _names(data.get("to")),
                    _text(data.get("action")),
                    actor,
                )
            )
        if data.get("corrects") in by_id:
            continue  # applied to the entry it corrects
        text = _text(e.get("text"))
        corrected_by = e.get("corrected_by")
        if isinstance(corrected_by, int):
            # A correction may be corrected in turn: the last one in the chain is what it says.
            last, seen = e, set()
            while isinstance(last.get("corrected_by"), int) and last["corrected_by"] not in seen:
                seen.add(last["corrected_by"])
                fixed_text = _text(last.get("corrected_text"))
                last = by_id.get(last["corrected_by"]) or {}
            head, sep, _ = text.partition(": ")
            text = f"{head}: {fixed_text}" if sep else fixed_text
            corrected_by = max(seen)
        else:
            corrected_by = None
        rows.append(Row(int(e.get("id") or 0), at, kind, actor, text, corrected_by))
    return rows, handovers


def _bounded(rows: list[Row]) -> tuple[tuple[Row, ...], int]:
    """At most MAX_TIMELINE rows: alert rows beyond the first MAX_ALERT_ROWS go first (an alert
    storm says little row by row), then the newest rows."""
    if len(rows) <= MAX_TIMELINE:
        return tuple(rows), 0
    kept: list[Row] = []
    alert_rows = 0
    for row in rows:
        if row.kind in ("alert_fired", "alert_resolved"):
            alert_rows += 1
            if alert_rows > MAX_ALERT_ROWS:
                continue
        kept.append(row)
    kept = kept[:MAX_TIMELINE]
    return tuple(kept), len(rows) - len(kept)


def _alert(a: Mapping[str, Any]) -> AlertFact:
    labels = {str(k): _text(v) for k, v in _mapping(a.get("labels")).items()}
    notes = _mapping(a.get("annotations"))
    runbook = _text(notes.get("runbook_url") or notes.get("runbook"))
    return AlertFact(
        alertname=labels.get("alertname", ""),
        status=_text(a.get("status")),
        starts_at=to_ns(a.get("starts_at")),
        ends_at=to_ns(a.get("ends_at")),
        summary=_text(notes.get("summary") or notes.get("description")),
        generator_url=_text(a.get("generator_url")),
        runbook_url=runbook,
        labels=tuple(sorted(labels.items())),
    )


def _validation(followup: Mapping[str, Any] | None) -> ValidationFact | None:
    if not followup:
        return None
    v = _mapping(followup.get("validation"))
    checks = tuple(
        PostmortemCheck(
            _text(c.get("name")),
            c.get("passed") if isinstance(c.get("passed"), bool) else None,
            _text(c.get("reason") or c.get("error")),
        )
        for c in v.get("checks") or ()
        if isinstance(c, Mapping)
    )
    passed, quiet = v.get("passed"), v.get("quiet")
    return ValidationFact(
        validated_at=to_ns(followup.get("validated_at")),
        passed=passed if isinstance(passed, bool) else None,
        quiet=quiet if isinstance(quiet, bool) else None,
        skipped=_text(v.get("skipped")),
        reasons=tuple(_text(r) for r in v.get("reasons") or () if r),
        checks=checks,
    )


def _items(
    items: Sequence[Mapping[str, Any]], tickets: Mapping[str, Any]
) -> tuple[ActionItem, ...]:
    out = []
    for item in items:
        ticket = _mapping(tickets.get(str(item.get("id"))))
        out.append(
            ActionItem(
                id=int(item.get("id") or 0),
                kind=_text(item.get("kind")),
                text=_text(item.get("text")),
                owner=_text(item.get("owner")),
                state=_text(item.get("state")),
                reason=_text(item.get("reason")),
                ticket_key=_text(ticket.get("key")),
                ticket_url=_text(ticket.get("url")),
            )
        )
    return tuple(out)


def build_facts(
    incident: Mapping[str, Any],
    timeline: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]] = (),
    *,
    alert_count: int | None = None,
    followup: Mapping[str, Any] | None = None,
    items: Sequence[Mapping[str, Any]] = (),
    tickets: Mapping[str, Any] | None = None,
) -> Facts:
    """The facts record from what the store read: the incident (times as ns or RFC 3339), its
    timeline in order (``corrected_by``/``corrected_text`` on corrected entries), its alerts (at
    most ``MAX_ALERTS`` shown of ``alert_count``), the follow-up (``validated_at``,
    ``validation``), its items and the tickets by item id. Anything missing reads as empty."""
    milestones = {name: to_ns(incident.get(name)) for name in MILESTONE_LABELS}
    rows, handovers = _timeline(timeline)
    shown, omitted = _bounded(rows)
    roles = _mapping(incident.get("roles"))
    listed = [_alert(a) for a in alerts[:MAX_ALERTS]]
    total = alert_count if alert_count is not None else len(alerts)
    return Facts(
        incident_id=int(incident.get("id") or 0),
        title=_text(incident.get("title")),
        severity=_text(incident.get("severity")),
        status=_text(incident.get("status")),
        route=_text(incident.get("route")),
        team=_text(incident.get("team")),
        service=_text(incident.get("service")),
        key=_text(incident.get("key")),
        milestones=tuple(milestones.items()),
        durations=durations(milestones),
        roles=tuple((role, _names(names)) for role, names in roles.items()),
        handovers=tuple(handovers),
        timeline=shown,
        timeline_omitted=omitted,
        alerts=tuple(listed),
        alerts_omitted=max(0, total - len(listed)),
        validation=_validation(followup),
        items=_items(items, tickets or {}),
    )


# --- the merge: narrative and facts -------------------------------------------------------------


@immutable
class Postmortem:
    """The newest (or a chosen) version of the narrative over facts regenerated now; ``version``
    None: nothing saved yet (a draft of the facts with the guidance)."""

    facts: Facts
    narrative: Narrative = EMPTY
    version: int | None = None
    author: str | None = None
    saved_at: int | None = None


def merge(facts: Facts, version: Version | None) -> Postmortem:
    if version is None:
        return Postmortem(facts)
    return Postmortem(facts, version.narrative, version.version, version.author, version.saved_at)


def _at(ns: int | None) -> str | None:
    return format_ns(ns)


def facts_dict(facts: Facts) -> dict[str, Any]:
    """The facts as plain JSON data (times RFC 3339, durations in seconds and as text): what the
    API answers and what templates read."""
    v = facts.validation
    return {
        "incident": {
            "id": facts.incident_id,
            "title": facts.title,
            "severity": facts.severity,
            "status": facts.status,
            "route": facts.route,
            "team": facts.team,
            "service": facts.service,
            "key": facts.key,
        },
        "impact": {
            "start": _at(facts.at("started_at")),
            "end": _at(facts.impact_end),
            "duration": format_duration(
                None
                if facts.impact_end is None or facts.at("started_at") is None
                else facts.impact_end - (facts.at("started_at") or 0)
            ),
        },
        "milestones": [
            {"name": name, "label": MILESTONE_LABELS[name], "at": _at(at)}
            for name, at in facts.milestones
        ],
        "durations": [
            {
                "name": d.name,
                "label": d.label,
                "seconds": None if d.ns is None else d.ns / NS,
                "text": format_duration(d.ns),
            }
            for d in facts.durations
        ],
        "roles": [{"role": role, "people": list(people)} for role, people in facts.roles],
        "handovers": [
            {
                "at": _at(h.at),
                "role": h.role,
                "from": list(h.before),
                "to": list(h.after),
                "action": h.action,
                "actor": h.actor,
            }
            for h in facts.handovers
        ],
        "timeline": [
            {
                "id": r.id,
                "at": _at(r.at),
                "kind": r.kind,
                "actor": r.actor,
                "text": r.text,
                "corrected_by": r.corrected_by,
            }
            for r in facts.timeline
        ],
        "timeline_omitted": facts.timeline_omitted,
        "alerts": [
            {
                "alertname": a.alertname,
                "status": a.status,
                "starts_at": _at(a.starts_at),
                "ends_at": _at(a.ends_at),
                "summary": a.summary,
                "generator_url": a.generator_url,
                "runbook_url": a.runbook_url,
                "labels": dict(a.labels),
            }
            for a in facts.alerts
        ],
        "alerts_omitted": facts.alerts_omitted,
        "validation": None
        if v is None
        else {
            "validated_at": _at(v.validated_at),
            "passed": v.passed,
            "quiet": v.quiet,
            "skipped": v.skipped,
            "reasons": list(v.reasons),
            "checks": [{"name": c.name, "passed": c.passed, "reason": c.reason} for c in v.checks],
        },
        "action_items": [
            {
                "id": i.id,
                "kind": i.kind,
                "text": i.text,
                "owner": i.owner,
                "state": i.state,
                "reason": i.reason,
                "ticket": {"key": i.ticket_key, "url": i.ticket_url} if i.ticket_key else None,
            }
            for i in facts.items
        ],
    }


def document(pm: Postmortem) -> dict[str, Any]:
    """What the postmortem template reads: the facts (``facts_dict``) and the narrative's
    sections in order, each with its title, text and the guidance for an empty one."""
    return {
        **facts_dict(pm.facts),
        "sections": [
            {
                "name": s.name,
                "title": s.title,
                "text": pm.narrative.text(s.name),
                "guidance": s.guidance,
            }
            for s in SECTION_INFO
        ],
        "version": pm.version,
        "author": pm.author,
        "saved_at": _at(pm.saved_at),
    }


def searchable_text(pm: Postmortem) -> str:
    """What search indexes of a published postmortem: its title, narrative and action items
    (the timeline's entries are indexed on their own)."""
    parts = [f"Postmortem: {pm.facts.title}"]
    parts += [pm.narrative.text(name) for name in pm.narrative.written]
    parts += [item.text for item in pm.facts.items if item.text]
    return "\n\n".join(parts)


# --- the timeline's entries -------------------------------------------------------------------


def saved_event(version: int, actor: str, changed: Sequence[str]) -> Event:
    titles = ", ".join(SECTION_BY_NAME[n].title.lower() for n in changed if n in SECTION_BY_NAME)
    return Event(
        "postmortem_saved",
        f"Postmortem v{version} saved by {actor}" + (f" ({titles})" if titles else ""),
        {"version": version, "sections": list(changed)},
        actor,
    )


def published_event(version: int, actor: str, path: str, commit: str | None) -> Event:
    text = f"Postmortem v{version} published by {actor}"
    if path:
        text += f": {path}"
    if commit:
        text += f" (commit {commit[:12]})"
    data: dict[str, Any] = {"version": version, "path": path, "commit": commit}
    return Event("postmortem_published", text, data, actor)


# --- the knowledge base's layout ------------------------------------------------------------------

MAX_SLUG = 60


def slug(title: str) -> str:
    """The file name's words: the title in lower-case ASCII (accents dropped, anything else a
    hyphen), at most ``MAX_SLUG`` characters cut at a hyphen; ``incident`` when none is left."""
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(words) > MAX_SLUG:
        cut = words[: MAX_SLUG + 1]
        words = cut.rsplit("-", 1)[0] if "-" in cut else cut[:MAX_SLUG]
    return words.strip("-") or "incident"


def kb_path(incident_id: int, title: str, opened_at: int) -> str:
    """``<year>/<id>-<slug>.md``, relative to the knowledge base's folder; the year the incident
    opened (UTC)."""
    year = datetime.fromtimestamp(opened_at // NS, UTC).year
    return f"{year:04d}/{incident_id}-{slug(title)}.md"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def md_escape(text: str) -> str:
    """Text inert in Markdown: what would make emphasis, a link, code, HTML or a table's column
    is backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_cell(text: str, *, escaped: bool = False) -> str:
    """Text for one cell of a Markdown table: escaped (unless ``escaped`` already), pipes
    escaped, newlines as ``<br>``."""
    out = text if escaped else md_escape(text)
    if escaped:
        out = re.sub(r"(?<!\\)\|", r"\\|", out)
    return out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


@immutable
class IndexEntry:
    """One published postmortem on the knowledge base's index page."""

    incident_id: int
    title: str
    severity: str
    team: str
    path: str
    started_at: int | None
    durations: tuple[Duration, ...]


def index_entry(facts: Facts, path: str) -> IndexEntry:
    return IndexEntry(
        facts.incident_id,
        facts.title,
        facts.severity,
        facts.team,
        path,
        facts.at("started_at"),
        facts.durations,
    )


INDEX_HEADER = (
    "# Postmortems\n\n"
    "Published by incident-bridge, newest first. This page is written again at every "
    "publication: edit the postmortems through incident-bridge, not here.\n"
)


def index_page(entries: Sequence[IndexEntry]) -> str:
    """The index page: every entry once (the last given for an incident wins), newest first (by
    when the incident started, then id), with its severity, team and durations."""
    latest: dict[int, IndexEntry] = {}
    for entry in entries:
        latest[entry.incident_id] = entry
    ordered = sorted(
        latest.values(), key=lambda e: (e.started_at or 0, e.incident_id), reverse=True
    )
    head = ["Incident", "Started (UTC)", "Severity", "Team", "Title"]
    head += [column for *_, column in DURATIONS]
    lines = [INDEX_HEADER, "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in ordered:
        link = f"[#{e.incident_id}]({e.path})"
        cells = [
            link,
            format_time(e.started_at),
            md_cell(e.severity),
            md_cell(e.team or "-"),
            md_cell(e.title),
        ]
        cells += [format_duration(d.ns) for d in e.durations]
        lines.append("| " + " | ".join(cells) + " |")
    if not ordered:
        lines.append("| " + " | ".join("-" for _ in head) + " |")
    return "\n".join(lines) + "\n"
