"""Reconciliation with Alertmanager's own API: what Alertmanager says now, compared with what the
webhooks told us, decided purely (the reconciler loop fetches, the store writes).

Webhooks are a lossy view: a silenced or inhibited alert stops appearing, a resolve is missed
(``send_resolved: false``, a group truncated by ``max_alerts``, a refused webhook), an alert that
timed out (``resolve_timeout``) never says goodbye. ``plan_incident`` compares one open
incident's alerts with one trusted answer of Alertmanager (``AmView``) by fingerprint.

What it never does: resolve anything from an answer that is not trusted (``trusted``: a peer
whose uptime is past the grace period, so that a peer that restarted with empty memory is not
read as "everything resolved"), or resolve an alert a webhook spoke of after the answer was asked
for (the webhook is newer than the answer).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import field, replace
from typing import Any, Literal

from bridge.core.incidents import ACTIVE_STATUSES, API_ACTOR, Event, Incident
from bridge.core.timeutil import NS, format_ns
from bridge.core.values import immutable

AlertStateName = Literal["active", "suppressed", "unprocessed"]
ACTOR = API_ACTOR  # the actor of what the bridge learned from the API


@immutable
class AmAlert:
    """One alert as ``GET /api/v2/alerts`` lists it (Alertmanager lists only alerts that have not
    ended: an alert it no longer lists is resolved or gone)."""

    fingerprint: str
    labels: Mapping[str, str]
    starts_at: int
    state: AlertStateName = "active"
    annotations: Mapping[str, str] = field(default_factory=dict)
    ends_at: int | None = None
    generator_url: str = ""
    silenced_by: tuple[str, ...] = ()
    inhibited_by: tuple[str, ...] = ()  # fingerprints of the inhibiting alerts
    receivers: tuple[str, ...] = ()


@immutable
class AmSilence:
    """One silence as ``GET /api/v2/silences`` lists it; ``matchers`` rendered as amtool shows
    them (``name="value"``, ``name=~"re"``, ``name!="v"``, ``name!~"re"``)."""

    id: str
    state: str  # active | pending | expired
    created_by: str
    comment: str
    starts_at: int
    ends_at: int
    matchers: tuple[str, ...] = ()


@immutable
class AmView:
    """One peer's answer: its alerts and silences, asked for at ``fetched_at`` (before the
    request went out), from a peer up since ``up_since``."""

    peer: str  # the peer's base URL, without credentials
    fetched_at: int
    up_since: int
    alerts: Mapping[str, AmAlert]
    silences: Mapping[str, AmSilence]
    receivers: frozenset[str] = frozenset()
    # every peer whose answer this view holds (``merge_views``); empty: ``peer`` alone
    peers: tuple[str, ...] = ()


def merge_views(answers: Sequence[AmView], young: Sequence[AmView] = ()) -> AmView:
    """One view of every peer that answered: an alert is gone only when no peer lists it.

    Peers of one cluster should agree, but a peer Prometheus does not send to, or one that
    missed a push, lists less: the union keeps any alert one of them still holds. ``answers``
    are trusted peers' (their entries win, the first's first); ``young`` peers' alerts are
    added only where no trusted peer lists them (a young peer may know too little, never too
    much). Asked for at the earliest ``fetched_at``, so a webhook newer than any of the answers
    wins over them all."""
    if not answers:
        raise ValueError("no trusted answer to merge")
    first = answers[0]
    alerts: dict[str, AmAlert] = {}
    silences: dict[str, AmSilence] = {}
    for answer in (*answers, *young):
        for fp, alert in answer.alerts.items():
            alerts.setdefault(fp, alert)
        for sid, s in answer.silences.items():
            silences.setdefault(sid, s)
    return AmView(
        peer=first.peer,
        fetched_at=min(a.fetched_at for a in (*answers, *young)),
        up_since=first.up_since,
        alerts=alerts,
        silences=silences,
        receivers=frozenset().union(*(a.receivers for a in answers)),
        peers=tuple(a.peer for a in (*answers, *young)),
    )


def trusted(up_since: int, now: int, grace_s: float) -> bool:
    """An answer can resolve alerts only from a peer up for at least ``grace_s``: Alertmanager
    keeps alerts in memory, so a peer that just restarted lists nothing until Prometheus sends
    its alerts again (every ``resend_delay``, 1 minute by default)."""
    return now - up_since >= int(grace_s * NS)


@immutable
class LinkView:
    """What the store holds of one of an incident's alerts."""

    fingerprint: str
    status: str  # firing | resolved
    starts_at: int
    ends_at: int | None
    last_seen: int  # when a webhook last spoke of it (or the reconciler wrote it)
    labels: Mapping[str, str]
    # what the reconciler last recorded of it (None: nothing): {"suppressed": {...}} while
    # silenced or inhibited, {"resolved_via": "api"} after it resolved it
    mark: Mapping[str, Any] | None = None


@immutable
class LinkChange:
    """A link to write: its new status and ends_at, and its new mark (None clears it)."""

    fingerprint: str
    status: str
    starts_at: int
    ends_at: int | None
    mark: Mapping[str, Any] | None


@immutable
class ReconcilePlan:
    incident: Incident
    events: tuple[Event, ...] = ()
    links: tuple[LinkChange, ...] = ()
    # the firing alerts this answer says are gone (old enough, no newer webhook): the next
    # answer must say so too before they are resolved (``plan_incident``'s ``gone_before``)
    gone: frozenset[str] = frozenset()

    @property
    def changed(self) -> bool:
        return bool(self.events or self.links)


def alert_name(labels: Mapping[str, str], fingerprint: str) -> str:
    name = labels.get("alertname", fingerprint)
    instance = labels.get("instance")
    return f"{name} ({instance})" if instance else name


MS = 1_000_000


def same_start(api: int, held: int) -> bool:
    """Alertmanager's API gives times to the millisecond (webhooks carry them as they were
    sent, to the nanosecond): the same occurrence when they agree to the millisecond."""
    return api // MS == held // MS


def _suppression(alert: AmAlert, view: AmView) -> dict[str, Any] | None:
    """What keeps ``alert`` quiet, as the mark keeps it (None: nothing, it is active)."""
    if alert.state != "suppressed" or not (alert.silenced_by or alert.inhibited_by):
        return None
    out: dict[str, Any] = {}
    if alert.silenced_by:
        silences = []
        for sid in sorted(alert.silenced_by):
            s = view.silences.get(sid)
            entry: dict[str, Any] = {"id": sid}
            if s is not None:
                entry.update(
                    created_by=s.created_by,
                    comment=s.comment,
                    ends_at=format_ns(s.ends_at),
                )
            silences.append(entry)
        out["silenced_by"] = silences
    if alert.inhibited_by:
        inhibitors = []
        for fp in sorted(alert.inhibited_by):
            src = view.alerts.get(fp)
            # the inhibiting alert's name ("" when the answer does not list it any more);
            # the text shows its instance too (``describe_suppression``)
            inhibitors.append(
                {
                    "fingerprint": fp,
                    "alertname": src.labels.get("alertname", "") if src else "",
                    "instance": src.labels.get("instance", "") if src else "",
                }
            )
        out["inhibited_by"] = inhibitors
    return out


def _cause_key(mark: Mapping[str, Any] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    supp = (mark or {}).get("suppressed") or {}
    return (
        tuple(str(s.get("id")) for s in supp.get("silenced_by") or ()),
        tuple(str(i.get("fingerprint")) for i in supp.get("inhibited_by") or ()),
    )


def _inhibitor(entry: Mapping[str, Any]) -> str:
    name = str(entry.get("alertname") or "")
    if not name:  # an inhibiting alert the answer did not list: its fingerprint
        return "alert " + str(entry.get("fingerprint", ""))[:16]
    instance = entry.get("instance")
    return f"{name} ({instance})" if instance else name


def describe_suppression(supp: Mapping[str, Any]) -> str:
    """``silenced by 1f2e… (alice: "db maintenance", until …)``, ``inhibited by NodeDown``."""
    parts: list[str] = []
    for s in supp.get("silenced_by") or ():
        short = str(s.get("id", ""))[:8]
        who = s.get("created_by")
        detail = []
        if who:
            comment = s.get("comment") or ""
            detail.append(f'{who}: "{comment}"' if comment else str(who))
        if s.get("ends_at"):
            detail.append(f"until {s['ends_at']}")
        parts.append(f"silenced by {short}" + (f" ({', '.join(detail)})" if detail else ""))
    inhibitors = [_inhibitor(i) for i in supp.get("inhibited_by") or ()]
    if inhibitors:
        parts.append("inhibited by " + ", ".join(inhibitors))
    return "; ".join(parts)


def plan_incident(
    incident: Incident,
    links: Sequence[LinkView],
    view: AmView,
    now: int,
    *,
    min_age_ns: int = 0,
    gone_before: Collection[str] | None = None,
) -> ReconcilePlan:
    """Compare one open incident's alerts with a trusted answer of Alertmanager.

    - firing here, not listed there (by any peer that answered), no webhook since the answer
      was asked for, the last webhook older than ``min_age_ns``, and, when ``gone_before`` is
      given, already gone in the previous answer: resolved, learned from the API (the incident
      is mitigated when none fires any more). A peer that Prometheus does not send to, or a
      load balancer answering for the wrong peer, lists nothing: one such answer must not
      resolve an alert a webhook has just announced. The plan's ``gone`` are the alerts this
      answer found gone, for the next call's ``gone_before``;
    - listed there as suppressed: silenced (by which silence, who made it, its comment and end)
      or inhibited (by which alert), once per change of cause; active again: recorded too;
    - resolved here by the API, listed there again with the same start: firing again (the
      answer we resolved it from was wrong, or Alertmanager forgot and learned it again).
    """
    events: list[Event] = []
    changes: list[LinkChange] = []
    gone: set[str] = set()
    status = {link.fingerprint: link.status for link in links}
    peer = ", ".join(view.peers) if view.peers else view.peer
    for link in links:
        fp = link.fingerprint
        name = alert_name(link.labels, fp)
        seen = view.alerts.get(fp)
        newer_webhook = link.last_seen >= view.fetched_at
        base = {"fingerprint": fp, "alertname": link.labels.get("alertname", ""), "via": "api"}
        if link.status == "firing":
            if seen is None:
                if newer_webhook or view.fetched_at - link.last_seen < min_age_ns:
                    continue
                gone.add(fp)
                if gone_before is not None and fp not in gone_before:
                    continue  # the next answer must agree
                status[fp] = "resolved"
                changes.append(
                    LinkChange(
                        fp, "resolved", link.starts_at, view.fetched_at, {"resolved_via": "api"}
                    )
                )
                events.append(
                    Event(
                        "alert_resolved",
                        f"Alert resolved: {name} (Alertmanager no longer lists it; learned from "
                        "its API, no webhook said so)",
                        {**base, "peer": peer},
                        actor=ACTOR,
                    )
                )
                continue
            if not same_start(seen.starts_at, link.starts_at):
                continue  # another occurrence: its webhook says what happened
            supp = _suppression(seen, view)
            old = (link.mark or {}).get("suppressed")
            if supp is None and seen.state == "unprocessed":
                continue  # not yet looked at by Alertmanager: nothing to say
            new_mark = {"suppressed": supp} if supp is not None else None
            if _cause_key(new_mark) == _cause_key(link.mark):
                continue
            changes.append(LinkChange(fp, link.status, link.starts_at, link.ends_at, new_mark))
            if supp is not None:
                kind = "alert_silenced" if supp.get("silenced_by") else "alert_inhibited"
                events.append(
                    Event(
                        kind,
                        f"Alert {name} is {describe_suppression(supp)}",
                        {**base, **supp},
                        actor=ACTOR,
                    )
                )
            else:
                was = describe_suppression(old or {})
                events.append(
                    Event(
                        "alert_unsuppressed",
                        f"Alert {name} is active again (it was {was})",
                        {**base, "was": old or {}},
                        actor=ACTOR,
                    )
                )
        elif (
            seen is not None
            and (link.mark or {}).get("resolved_via") == "api"
            and same_start(seen.starts_at, link.starts_at)
            and not newer_webhook
        ):
            status[fp] = "firing"
            changes.append(LinkChange(fp, "firing", link.starts_at, None, None))
            events.append(
                Event(
                    "alert_fired",
                    f"Alert fired: {name} (Alertmanager lists it again; learned from its API)",
                    {**base, "peer": peer},
                    actor=ACTOR,
                )
            )
    after = incident
    firing = any(s == "firing" for s in status.values())
    if after.status in ACTIVE_STATUSES and status and not firing and changes:
        events.append(
            Event(
                "status_changed",
                "All alerts resolved (learned from Alertmanager's API): mitigated",
                {"from": after.status, "to": "mitigated", "via": "api"},
                actor=ACTOR,
            )
        )
        after = replace(after, status="mitigated", mitigated_at=now)
    elif after.status == "mitigated" and firing and any(c.status == "firing" for c in changes):
        events.append(
            Event(
                "reopened",
                "Reopened: Alertmanager lists its alerts again (learned from its API)",
                {"from": "mitigated", "to": "triggered", "via": "api"},
                actor=ACTOR,
            )
        )
        after = replace(after, status="triggered", mitigated_at=None)
    return ReconcilePlan(after, tuple(events), tuple(changes), frozenset(gone))


def group_missing(
    view: AmView,
    receiver: str,
    group_labels: Mapping[str, str],
    held: set[str],
) -> list[AmAlert]:
    """The alerts of a truncated group that the incident does not hold: those Alertmanager
    routes to ``receiver`` whose labels carry every group label."""
    out = []
    for alert in view.alerts.values():
        if alert.fingerprint in held or receiver not in alert.receivers:
            continue
        if all(alert.labels.get(k) == v for k, v in group_labels.items()):
            out.append(alert)
    return sorted(out, key=lambda a: (a.starts_at, a.fingerprint))
