"""Drills: a synthetic alert whose incident is practice, marked as such everywhere.

A drill is an ordinary Alertmanager alert carrying the label ``drill="true"`` (``DRILL_LABEL``),
so it travels the same way a real one does: through Alertmanager's API (the whole chain proven)
or straight into the bridge (``POST /api/v1/drills``). The policy that reads it
(``core/policy.drill_decision``) makes its incident a drill: the title starts with ``DRILL:``,
the stakeholders are left out unless the alert asks for them (``drill_stakeholders="true"``),
the route and the severity are the ones the drill names (``drill_route``, ``drill_severity``),
and the incident is stored with ``drill`` set. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.core.timeutil import format_ns

DRILL_LABEL = "drill"
ROUTE_LABEL = "drill_route"
SEVERITY_LABEL = "drill_severity"
STAKEHOLDERS_LABEL = "drill_stakeholders"
ALERTNAME = "IncidentBridgeDrill"
# The first words of every title and message of a drill's incident.
PREFIX = "DRILL: "
SEVERITIES = ("sev1", "sev2", "sev3", "sev4")


def is_drill(labels: Mapping[str, str]) -> bool:
    return labels.get(DRILL_LABEL) == "true"


def route_of(labels: Mapping[str, str]) -> str | None:
    """The route the drill names, if it is a drill and names one."""
    return (labels.get(ROUTE_LABEL) or None) if is_drill(labels) else None


def severity_of(labels: Mapping[str, str]) -> str | None:
    """The severity the drill names (sev1..sev4), if it is a drill and names a valid one."""
    value = labels.get(SEVERITY_LABEL) if is_drill(labels) else None
    return value if value in SEVERITIES else None


def wants_stakeholders(labels: Mapping[str, str]) -> bool:
    return labels.get(STAKEHOLDERS_LABEL) == "true"


def title(text: str) -> str:
    """``text`` with the drill's prefix, once."""
    return text if text.startswith(PREFIX) else PREFIX + text


def labels(
    *,
    name: str,
    route: str | None = None,
    severity: str | None = None,
    stakeholders: bool = False,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The labels of a drill's synthetic alert; ``name`` makes each drill an alert (and so an
    incident) of its own."""
    out = {**(extra or {}), "alertname": ALERTNAME, DRILL_LABEL: "true", "drill_id": name}
    if route:
        out[ROUTE_LABEL] = route
    if severity:
        out[SEVERITY_LABEL] = severity
    if stakeholders:
        out[STAKEHOLDERS_LABEL] = "true"
    return out


def fingerprint(alert_labels: Mapping[str, str]) -> str:
    """A stable fingerprint of the labels (Alertmanager computes its own when it sends)."""
    text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(alert_labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def webhook(
    alert_labels: Mapping[str, str], now_ns: int, receiver: str = "drill"
) -> dict[str, Any]:
    """The webhook (version 4) Alertmanager would send for the drill's alert, firing now: what
    ``POST /api/v1/drills`` feeds into the bridge without Alertmanager."""
    at = format_ns(now_ns) or ""
    group = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in sorted(alert_labels.items())) + "}"
    summary = "Drill: practice incident, no real failure"
    return {
        "version": "4",
        "groupKey": group,
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": receiver,
        "groupLabels": dict(alert_labels),
        "commonLabels": dict(alert_labels),
        "commonAnnotations": {"summary": summary},
        "externalURL": "",
        "alerts": [
            {
                "status": "firing",
                "labels": dict(alert_labels),
                "annotations": {"summary": summary},
                "startsAt": at,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": fingerprint(alert_labels),
            }
        ],
    }


def alertmanager_alert(alert_labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """The body of Alertmanager's ``POST /api/v2/alerts`` for the drill's alert (firing: no
    end; Alertmanager sets the start)."""
    return [
        {
            "labels": dict(alert_labels),
            "annotations": {"summary": "Drill: practice incident, no real failure"},
        }
    ]


def message(body: str, *, html: bool = False) -> str:
    """A rendered message of a drill's incident with its first words ``DRILL:``; in an HTML
    document, the first words of its body."""
    if body.startswith(PREFIX.strip()):
        return body
    if html:
        lower = body.lower()
        at = lower.find("<body")
        if at >= 0:
            end = body.find(">", at)
            if end >= 0:
                return body[: end + 1] + "<p><strong>DRILL:</strong></p>" + body[end + 1 :]
        return "<p><strong>DRILL:</strong></p>" + body
    return PREFIX + body


# --- the report ---------------------------------------------------------------------------------

# a stage, the milestone that ends it, and the severity's target it is judged against (None: no
# target in the rules, the time is only shown)
STAGES: tuple[tuple[str, str, str | None], ...] = (
    ("acknowledge", "acknowledged_at", "acknowledge_within_s"),
    ("mitigate", "mitigated_at", None),
    ("resolve", "resolved_at", None),
)


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s} s" if s else f"{m} min"
    h, m = divmod(m, 60)
    return f"{h} h {m} min" if m else f"{h} h"


def report(
    facts: Mapping[str, Any],
    *,
    acknowledge_within_s: float | None,
    update_every_s: float | None,
    now_ns: int,
) -> dict[str, Any]:
    """A drill's report from the store's facts (store/drills.report_facts, times in ns) and the
    severity's targets (the rules' reminders for its route and severity): each target delivered
    or failed (with the error), each stage's time against its target, what was skipped."""
    incident = facts["incident"]
    targets = {"acknowledge_within_s": acknowledge_within_s}
    opened = int(incident["opened_at"])
    stages = []
    for name, column, target_key in STAGES:
        at = incident.get(column)
        seconds = (int(at) - opened) / 1e9 if at is not None else None
        target = targets.get(target_key) if target_key else None
        met = None if seconds is None or target is None else seconds <= target
        stages.append({"stage": name, "seconds": seconds, "target_s": target, "met": met})
    # each target: its newest outcome per (target, tier) over the drill's messages
    delivery: dict[tuple[str, str], dict[str, Any]] = {}
    for row in facts["outbox"]:
        key = (row["target"], row["tier"])
        seen = delivery.setdefault(
            key,
            {
                "target": row["target"],
                "tier": row["tier"],
                "delivered": 0,
                "failed": 0,
                "pending": 0,
            },
        )
        state = row["state"]
        if state == "delivered":
            seen["delivered"] += 1
        elif state == "dead":
            seen["failed"] += 1
            seen["error"] = row["error"]
        else:
            seen["pending"] += 1
            if row["error"]:
                seen["error"] = row["error"]
    kinds = [e["kind"] for e in facts["timeline"]]
    skipped = []
    commander = (incident.get("roles") or {}).get("commander") or []
    took = any(
        e["kind"] == "role_changed" and (e["data"] or {}).get("role") == "commander"
        for e in facts["timeline"]
    )
    if not commander and not took:
        skipped.append("no commander taken")
    updates = [int(e["time"]) for e in facts["timeline"] if e["kind"] == "status_update"]
    if update_every_s is not None:
        due = opened + int(update_every_s * 1e9)
        if not updates and now_ns > due:
            skipped.append(f"no status update within the cadence ({_fmt_s(update_every_s)})")
        elif updates and updates[0] > due:
            skipped.append(
                f"the first status update came after the cadence ({_fmt_s(update_every_s)})"
            )
    if "note" not in kinds and "decision" not in kinds:
        skipped.append("no note or decision on the timeline")
    if "followup_opened" not in kinds:
        skipped.append("the follow-up did not open (not mitigated)")
    if "postmortem_saved" not in kinds:
        skipped.append("no postmortem draft saved")
    return {
        "incident": {
            "id": incident["id"],
            "title": incident["title"],
            "severity": incident["severity"],
            "status": incident["status"],
            "route": incident["route"],
        },
        "targets": sorted(delivery.values(), key=lambda d: (d["tier"], d["target"])),
        "stages": stages,
        "skipped": skipped,
    }


def report_markdown(r: Mapping[str, Any]) -> str:
    """The report as the knowledge base keeps it (``drills/<id>.md``) and the CLI shows it."""
    inc = r["incident"]
    lines = [
        f"# Drill report: incident {inc['id']}",
        "",
        f"{inc['title']} ({inc['severity']}, route {inc['route']}, {inc['status']})",
        "",
        "## Targets",
        "",
        "| target | tier | delivered | failed | pending | error |",
        "|---|---|---|---|---|---|",
    ]
    for t in r["targets"]:
        error = str(t.get("error") or "").replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {t['target']} | {t['tier']} | {t['delivered']} | {t['failed']} | {t['pending']} | "
            f"{error} |"
        )
    if not r["targets"]:
        lines.append("| (none) | | | | | |")
    lines += ["", "## Stages", "", "| stage | time | target | met |", "|---|---|---|---|"]
    for s in r["stages"]:
        met = {True: "yes", False: "NO", None: "-"}[s["met"]]
        lines.append(f"| {s['stage']} | {_fmt_s(s['seconds'])} | {_fmt_s(s['target_s'])} | {met} |")
    lines += ["", "## Skipped", ""]
    lines += [f"- {s}" for s in r["skipped"]] or ["- nothing"]
    return "\n".join(lines) + "\n"


# --- scheduled drills ---------------------------------------------------------------------------

# minute, hour, day of month, month, day of week (0 or 7 Sunday): the five fields' ranges
_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
MINUTE_NS = 60 * 10**9
# A slot is fired only while it is this recent: a bridge down across a drill's time does not
# fire it hours late (the report of a drill nobody expected would be noise).
FIRE_WITHIN_NS = 15 * MINUTE_NS


class CronError(ValueError):
    """A cron expression outside the subset: the message says which field and why."""


@dataclass(frozen=True)
class Cron:
    """A cron expression (5 fields, UTC): each field's allowed values; ``dom_any``/``dow_any``
    say whether day of month / day of week were ``*`` (when both are restricted, either
    matches, as in cron)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 Sunday .. 6 Saturday
    dom_any: bool
    dow_any: bool

    def matches(self, when: datetime) -> bool:
        if (
            when.minute not in self.minutes
            or when.hour not in self.hours
            or when.month not in self.months
        ):
            return False
        dom = when.day in self.days
        dow = (when.isoweekday() % 7) in self.weekdays
        if self.dom_any or self.dow_any:
            return dom and dow
        return dom or dow


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name}: step {step_text!r} is not a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        else:
            first, dash, last = base.partition("-")
            if not first.isdigit() or (dash and not last.isdigit()):
                raise CronError(
                    f"{name}: {part!r} is not *, a number, a range a-b or a step */n "
                    "(names and L, W, # are not supported)"
                )
            start = int(first)
            end = int(last) if dash else (high if step_text else start)
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise CronError(f"{name}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def parse_cron(text: str) -> Cron:
    """Five fields (minute hour day-of-month month day-of-week), in UTC: ``*``, numbers, lists
    ``a,b``, ranges ``a-b`` and steps ``*/n``, ``a-b/n``; raises ``CronError``."""
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"{len(parts)} fields; a cron expression has 5: minute hour day-of-month month "
            'day-of-week (e.g. "0 10 * * 1")'
        )
    found = [_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in found[4])
    return Cron(found[0], found[1], found[2], found[3], weekdays, parts[2] == "*", parts[4] == "*")


@dataclass(frozen=True)
class Schedule:
    """A route's scheduled drill (the rules' ``drills:``): when, at which severity, announced
    how long before, stakeholders or not."""

    cron: Cron
    expression: str
    severity: str = "sev3"
    announce_before_s: float | None = None
    stakeholders: bool = False


def slots(cron: Cron, after_ns: int, upto_ns: int, limit: int = 100) -> list[int]:
    """The cron's times in (after_ns, upto_ns], ns, oldest first (at most ``limit``)."""
    out: list[int] = []
    t = (after_ns // MINUTE_NS + 1) * MINUTE_NS
    while t <= upto_ns and len(out) < limit:
        if cron.matches(datetime.fromtimestamp(t / 1e9, tz=UTC)):
            out.append(t)
        t += MINUTE_NS
    return out


def due(schedule: Schedule, now_ns: int) -> tuple[list[int], list[int]]:
    """What a tick at ``now_ns`` does for ``schedule``: the slots to announce (those coming
    within ``announce_before``) and the slot to fire (the newest of the last FIRE_WITHIN_NS). The
    store claims each once, so repeating a tick, or two replicas, do nothing twice."""
    # the newest slot only: older ones of the window were fired by an earlier tick, or missed
    fire = slots(schedule.cron, now_ns - FIRE_WITHIN_NS, now_ns)[-1:]
    announce: list[int] = []
    if schedule.announce_before_s:
        ahead = int(schedule.announce_before_s * 1e9)
        announce = slots(schedule.cron, now_ns, now_ns + ahead, limit=10)
    return announce, fire
