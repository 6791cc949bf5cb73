"""The outbox's built-in sender ``@alertmanager``: a silence in Alertmanager while an incident is
acknowledged, expired when it is resolved.

The sender is convergent rather than event-driven: whatever rows were coalesced into a
notification, it looks at the incident's status now and brings Alertmanager to match it.

- open (and no silence recorded yet): adopt the silence a previous send made but whose answer
  was lost (an active or pending silence whose comment carries ``MARKER #<id>:``), else create
  one for the incident's firing alerts, for ``duration(route)`` seconds (None or 0: the rules
  turned silencing off for the route). Its id goes to the (incident, target) state; the next
  send sees it and does nothing.
- resolved or closed: expire the silences of the state, and any other active or pending silence
  carrying this incident's marker (a create whose answer was lost).

Each change is a ``TimelineNote`` the worker records with the state. Network failures and
Alertmanager's 5xx are retryable; a silence Alertmanager refuses (4xx) is permanent.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bridge.alertmanager_api import AlertmanagerClient, AmError
from bridge.core.timeutil import NS, format_ns
from bridge.delivery.protocol import (
    DeliveryError,
    DeliveryResult,
    Notification,
    PermanentError,
    RetryableError,
    TimelineNote,
)

log = logging.getLogger("bridge.silences")

# "@" is not allowed in the rules' target names, so no target of the rules can take it.
SENDER = "@alertmanager"
# In every comment the bridge writes: "<MARKER> #<id>: <url> ...", how a silence is found again.
MARKER = "incident-bridge incident"
DEFAULT_ACTOR = "incident-bridge"
CLOSED = ("resolved", "closed")
LIVE = ("active", "pending")  # silence states that still silence (or will)


def silence_matchers(alerts: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """Matchers that cover every one of ``alerts`` (their label sets), sorted by name.

    A label with one value in every alert is an equality matcher; a label every alert has, with
    different values, is one regex matcher of the escaped values (``v1|v2``; Alertmanager
    anchors it). A label only some alerts have is left out. The silence can therefore match a
    little more than the incident's alerts (any combination of the varying values, and alerts
    with extra labels), never less. No alerts: no matchers."""
    if not alerts:
        return []
    common = set(alerts[0]).intersection(*(set(a) for a in alerts[1:]))
    out: list[dict[str, Any]] = []
    for name in sorted(common):
        values = sorted({a[name] for a in alerts})
        if len(values) == 1:
            out.append({"name": name, "value": values[0], "isRegex": False, "isEqual": True})
        else:
            pattern = "|".join(re.escape(v) for v in values)
            out.append({"name": name, "value": pattern, "isRegex": True, "isEqual": True})
    return out


def marker(incident_id: Any) -> str:
    """What every comment of the incident's silences contains (the colon ends the id)."""
    return f"{MARKER} #{incident_id}:"


def acknowledged_by(events: Sequence[Mapping[str, Any]]) -> str:
    """The actor of the newest acknowledgement among ``events`` (oldest first)."""
    for event in reversed(events):
        kind = event.get("kind")
        data = event.get("data") or {}
        acked = kind == "acknowledged" or (
            kind == "status_changed"
            and isinstance(data, Mapping)
            and data.get("to") == "acknowledged"
        )
        actor = event.get("actor")
        if acked and isinstance(actor, str) and actor:
            return actor
    return DEFAULT_ACTOR


def _short(ids: Sequence[str]) -> str:
    return ", ".join(i[:8] for i in ids)


def _error(exc: AmError, what: str, state: Mapping[str, Any] | None = None) -> DeliveryError:
    """A client error as the worker sees it: Alertmanager refusing the request (4xx but a
    timeout or rate limit) is permanent, anything else is worth retrying."""
    status = exc.status or 0
    if exc.reason == "http_error" and 400 <= status < 500 and status not in (408, 429):
        log.warning("%s: Alertmanager refused it: %s", what, exc)
        return PermanentError("rejected", state=state)
    log.warning("%s failed: %s", what, exc)
    return RetryableError(exc.reason, state=state)


class SilenceSender:
    """The outbox's built-in sender ``@alertmanager`` over one Alertmanager cluster.
    ``duration(route)`` is how long the silence of an incident on that route lasts, in
    seconds (None or not positive: none is made)."""

    name = SENDER

    def __init__(
        self,
        client: AlertmanagerClient,
        duration: Callable[[str], float | None],
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.client = client
        self.duration = duration
        self.clock = clock

    @property
    def pacing_s(self) -> float:
        return 0.0

    async def _marked(self, incident_id: Any, what: str) -> list[str]:
        """The ids of the live silences carrying this incident's marker."""
        wanted = marker(incident_id)
        try:
            silences = await self.client.silences()
        except AmError as exc:
            raise _error(exc, what) from None
        return sorted(s.id for s in silences if s.state in LIVE and wanted in s.comment)

    async def send(self, notification: Notification) -> DeliveryResult:
        incident = notification.incident
        status = str(incident.get("status", ""))
        recorded = [str(i) for i in notification.state.get("silences") or ()]
        if status in CLOSED:
            return await self._expire(incident, status, recorded)
        if recorded:
            return DeliveryResult(state=dict(notification.state), skipped=True)
        return await self._create(notification)

    async def _expire(
        self, incident: Mapping[str, Any], status: str, recorded: list[str]
    ) -> DeliveryResult:
        what = f"expiring the silences of incident #{incident.get('id')}"
        # Listed first: a failure here leaves everything to the retry, nothing half done.
        found = await self._marked(incident.get("id"), what)
        wanted = list(dict.fromkeys([*recorded, *found]))
        expired: list[str] = []
        for n, sid in enumerate(wanted):
            try:
                if await self.client.expire_silence(sid):
                    expired.append(sid)
            except AmError as exc:
                raise _error(exc, what, state={"silences": wanted[n:]}) from None
        state = {"silences": [], "expired": expired}
        if not expired:
            return DeliveryResult(state=state)
        noun = "Silence" if len(expired) == 1 else "Silences"
        note = TimelineNote(
            "silence",
            f"{noun} {_short(expired)} expired in Alertmanager (the incident is {status})",
            {"action": "expired", "ids": expired},
        )
        return DeliveryResult(
            state=state, provider_ids={"silence_id": expired[0]}, timeline=(note,)
        )

    async def _create(self, notification: Notification) -> DeliveryResult:
        incident = notification.incident
        incident_id = incident.get("id")
        what = f"the silence of incident #{incident_id}"
        found = await self._marked(incident_id, what)
        if found:
            # A previous send made it and its answer was lost: adopt it, make no second one.
            note = TimelineNote(
                "silence",
                f"Silence {_short(found)} adopted: Alertmanager already holds this incident's "
                "silence (made earlier, its answer was lost)",
                {"action": "adopted", "ids": found},
            )
            return DeliveryResult(
                state={"silences": found}, provider_ids={"silence_id": found[0]}, timeline=(note,)
            )
        seconds = self.duration(str(incident.get("route", "")))
        if seconds is None or seconds <= 0:
            return DeliveryResult(state=dict(notification.state), skipped=True)
        firing = [
            dict(a.get("labels") or {})
            for a in incident.get("alerts") or ()
            if a.get("status") == "firing"
        ]
        matchers = silence_matchers(firing)
        if not matchers:
            return DeliveryResult(state=dict(notification.state), skipped=True)
        created_by = acknowledged_by(notification.events)
        comment = (
            f"{marker(incident_id)} {incident.get('url') or ''} (acknowledged by {created_by})"
        )
        starts_at = self.clock()
        ends_at = starts_at + int(seconds * NS)
        try:
            sid = await self.client.create_silence(
                matchers, starts_at, ends_at, created_by, comment
            )
        except AmError as exc:
            raise _error(exc, what) from None
        until = format_ns(ends_at)
        note = TimelineNote(
            "silence",
            f"Silence {sid} created in Alertmanager for {len(firing)} alert(s) until {until}, "
            f"by {created_by}",
            {
                "action": "created",
                "ids": [sid],
                "matchers": matchers,
                "ends_at": until,
                "created_by": created_by,
            },
        )
        return DeliveryResult(
            state={"silences": [sid]}, provider_ids={"silence_id": sid}, timeline=(note,)
        )
