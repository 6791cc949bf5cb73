"""The dead man's switch: heartbeats that must keep arriving, and what their absence means.

A heartbeat (``heartbeats:`` in the rules) beats when an Alertmanager alert matching it arrives
firing in a webhook (a ``Watchdog`` that always fires), or when a job posts to
``/api/v1/heartbeats/{name}``. It is late when nothing came for its interval plus its grace,
counted from the last beat, or, for one never seen, from the service's first sight of it in the
rules (both kept in the store). A late heartbeat is one firing alert of the bridge's own
(``HeartbeatMissing``) that starts when it fell late and resolves when the heartbeat returns:
the incident it opens goes through the rules as any alert's, and sending the same alert twice
changes nothing, which is what keeps one incident per lateness episode. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from typing import Literal

from bridge.core.alertmanager import Alert, WebhookPayload, fingerprint
from bridge.core.policy import Severity
from bridge.core.timeutil import format_ns
from bridge.core.values import immutable

NS = 1_000_000_000
# The alertname of the alert a late heartbeat stands for, and the label naming the heartbeat.
MISSING_ALERTNAME = "HeartbeatMissing"
HEARTBEAT_LABEL = "heartbeat"
# The incident key of a heartbeat's incidents: one key, so a later episode reopens or follows it.
KEY_PREFIX = "heartbeat:"
# Alertmanager's "no end" time in a webhook.
GO_ZERO = "0001-01-01T00:00:00Z"

State = Literal["ok", "late"]


@immutable
class Heartbeat:
    """A heartbeat as the rules give it (``docs/heartbeats.md``)."""

    name: str
    interval_s: float
    grace_s: float = 0.0
    route: str | None = None  # None: routed by its labels, as an alert is
    severity: Severity | None = None  # None: the route's severity for the labels
    alertname: str | None = None  # the alert that beats it (None: only the API beats it)
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def allowed_ns(self) -> int:
        """How long it may stay silent: interval plus grace."""
        return int((self.interval_s + self.grace_s) * NS)

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.name


@immutable
class Seen:
    """What the store keeps of a heartbeat: first sight in the rules, the last beat, and the
    start of the lateness episode the bridge has raised (None: none raised)."""

    name: str
    first_seen: int
    last_seen: int | None = None
    late_since: int | None = None


Step = Literal["raise", "clear"]


@immutable
class Verdict:
    name: str
    state: State
    due_at: int  # when it falls late (or fell late): its base plus interval and grace
    step: Step | None = None  # what the bridge must do now; None: nothing


def judge(heartbeat: Heartbeat, seen: Seen, now: int) -> Verdict:
    """Is ``heartbeat`` late at ``now`` and what must change: ``raise`` its alert (late, not
    raised yet), ``clear`` it (raised, and a beat came since), or nothing. Late means strictly
    more than interval plus grace since its base."""
    base = seen.last_seen if seen.last_seen is not None else seen.first_seen
    due_at = base + heartbeat.allowed_ns
    late = now > due_at
    if late and seen.late_since is None:
        return Verdict(heartbeat.name, "late", due_at, "raise")
    if not late and seen.late_since is not None:
        return Verdict(heartbeat.name, "ok", due_at, "clear")
    return Verdict(heartbeat.name, "late" if late else "ok", due_at)


def state_of(heartbeat: Heartbeat, seen: Seen | None, now: int) -> State:
    """What ``GET /api/v1/heartbeats`` and the state gauge say: ``late`` past interval plus
    grace (counted from first sight when never seen), else ``ok``."""
    if seen is None:
        return "ok"
    return judge(heartbeat, seen, now).state


def matches(heartbeat: Heartbeat, labels: Mapping[str, str]) -> bool:
    """Does an alert with ``labels`` beat ``heartbeat``: its alertname, and every label the
    heartbeat names with the same value."""
    if heartbeat.alertname is None or labels.get("alertname") != heartbeat.alertname:
        return False
    return all(labels.get(k) == v for k, v in heartbeat.labels.items())


class BeatIndex:
    """The heartbeats an alert can beat, by alertname: the webhook's path looks up one label of
    each alert and nothing more when no heartbeat has that alertname (most alerts)."""

    def __init__(self, heartbeats: Iterable[Heartbeat]) -> None:
        self.by_alertname: dict[str, list[Heartbeat]] = {}
        for hb in heartbeats:
            if hb.alertname is not None:
                self.by_alertname.setdefault(hb.alertname, []).append(hb)

    def __bool__(self) -> bool:
        return bool(self.by_alertname)

    def split(self, payload: WebhookPayload) -> tuple[list[str], WebhookPayload]:
        """The heartbeats a webhook beats (its firing alerts that match one), and the webhook
        without the alerts that match a heartbeat, firing or resolved: a Watchdog is a beat,
        never an incident of its own. The same payload object when nothing matched."""
        names = self.by_alertname
        if not names:
            return [], payload
        # most webhooks: no alert has a heartbeat's alertname, one lookup each and done
        if not any(a.labels.get("alertname") in names for a in payload.alerts):
            return [], payload
        beaten: dict[str, None] = {}
        kept: list[Alert] = []
        taken = False
        for alert in payload.alerts:
            candidates = names.get(alert.labels.get("alertname", ""))
            hit = [hb for hb in candidates if matches(hb, alert.labels)] if candidates else []
            if not hit:
                kept.append(alert)
                continue
            taken = True
            if alert.status == "firing":
                beaten.update((hb.name, None) for hb in hit)
        if not taken:
            return [], payload
        return list(beaten), payload.model_copy(update={"alerts": kept})


def missing_labels(heartbeat: Heartbeat) -> dict[str, str]:
    """The labels of the alert a late heartbeat stands for: the heartbeat's own labels (which
    route it, as an alert's would), its name and ``alertname: HeartbeatMissing``. Its severity
    is no label: the decision takes it as given (``RulesPolicy.decide_heartbeat``)."""
    return {**heartbeat.labels, "alertname": MISSING_ALERTNAME, HEARTBEAT_LABEL: heartbeat.name}


def missing_payload(
    heartbeat: Heartbeat, *, since: int, resolved_at: int | None = None
) -> WebhookPayload:
    """The webhook of a late heartbeat's alert: firing since ``since`` (the episode's start,
    kept in the store: the same alert every time it is sent), or resolved at ``resolved_at``."""
    labels = missing_labels(heartbeat)
    status = "firing" if resolved_at is None else "resolved"
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {
            "summary": f"Heartbeat {heartbeat.name} is late",
            "description": (
                f"No beat of heartbeat {heartbeat.name} for more than "
                f"{_seconds(heartbeat.interval_s)} plus {_seconds(heartbeat.grace_s)} of grace "
                f"(late since {format_ns(since)}); the pipeline that sends it may be down."
            ),
        },
        "startsAt": format_ns(since),
        "endsAt": GO_ZERO if resolved_at is None else format_ns(resolved_at),
        "generatorURL": "",
        "fingerprint": fingerprint(labels),
    }
    return WebhookPayload.model_validate(
        {
            "version": "4",
            "groupKey": heartbeat.key,
            "status": status,
            "receiver": "incident-bridge",
            "groupLabels": {HEARTBEAT_LABEL: heartbeat.name},
            "commonLabels": labels,
            "commonAnnotations": alert["annotations"],
            "alerts": [alert],
        }
    )


def _seconds(value: float) -> str:
    return f"{value:g}s"


def verdicts(heartbeats: Mapping[str, Heartbeat], seen: Sequence[Seen], now: int) -> list[Verdict]:
    """Each heartbeat of the rules judged against what the store keeps of it (one not kept yet
    is judged when the store has registered it)."""
    kept = {s.name: s for s in seen}
    return [judge(hb, kept[name], now) for name, hb in heartbeats.items() if name in kept]
