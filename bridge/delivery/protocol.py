"""What the outbox worker hands a target, what comes back, and what a target must offer.

A target turns one ``Notification`` into one (or a few) requests to its remote API. It keeps no
state of its own between sends: whatever it must remember per (incident, target) -- a Slack
channel id, a thread ts, the first e-mail's Message-ID -- goes back in ``DeliveryResult.state``
(or on an error, ``DeliveryError.state``) and the caller persists it and passes it in again.

The worker knows targets only through ``Sender``; ``bridge.targets`` implements it, one module
per remote API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from bridge.core.events import EventKind, Tier, event_kind


@dataclass(frozen=True)
class Notification:
    """One outbox row, ready to send.

    ``incident`` is the snapshot of ``bridge.delivery.snapshot`` (its keys are documented in
    docs/targets.md). ``events`` holds the timeline events this message covers, oldest first;
    more than one when waiting events for the same incident and target were coalesced
    (``event`` is then the newest milestone). ``state`` is what the previous send to this
    (incident, target) returned.
    """

    id: int
    idempotency_key: str
    target: str
    tier: Tier
    event: EventKind
    incident: Mapping[str, Any]
    events: tuple[Mapping[str, Any], ...] = ()
    state: Mapping[str, Any] = field(default_factory=dict)
    sequence: int = 0
    # A channel message (tied to no incident: a hand-off, a drill's announcement): its
    # ``kind`` and data (docs/targets.md); ``incident`` is then empty, and targets render the
    # type's ``message`` template (``Target.render``).
    message: Mapping[str, Any] | None = None

    @property
    def kinds(self) -> tuple[EventKind, ...]:
        """Notification events covered, oldest first (timeline kinds of the state machine,
        such as ``status_changed`` to ``mitigated``, mapped with ``event_kind``)."""
        kinds = tuple(
            event_kind(str(e["kind"]), e.get("data")) for e in self.events if e.get("kind")
        )
        return kinds or (self.event,)


@dataclass(frozen=True)
class Digest:
    """Several incidents' messages to one channel as one message, when more wait for that
    channel than its rate lets out within the worker's budget (a storm). ``items`` holds one
    notification per incident (each as it would have been sent alone), most severe first;
    once the digest is delivered, none of them is sent again on its own."""

    target: str
    tier: Tier
    items: tuple[Notification, ...]


@dataclass(frozen=True)
class TimelineNote:
    """A timeline entry a send asks for, written with its delivered state in one transaction
    (the silence a built-in sender made in Alertmanager, with its id). ``kind`` is one of
    ``core.events.TimelineKind``."""

    kind: str
    text: str
    data: Mapping[str, Any] = field(default_factory=dict)
    actor: str = "incident-bridge"


@dataclass(frozen=True)
class DeliveryResult:
    """A successful send: the per-(incident, target) state to persist and the provider's ids."""

    state: Mapping[str, Any] = field(default_factory=dict)
    provider_ids: Mapping[str, str] = field(default_factory=dict)
    # True when the target had nothing to do for this event (e.g. PagerDuty and a note).
    skipped: bool = False
    # entries for the incident's timeline, recorded with the state (built-in senders only)
    timeline: tuple[TimelineNote, ...] = ()


class DeliveryError(Exception):
    """A failed send. ``reason`` is short and bounded: it becomes a metric label.

    ``state``, when not None, is progress to persist even though the send failed (e.g. the
    Slack channel was created but posting failed), so a retry does not redo it.
    """

    retryable: ClassVar[bool] = False

    def __init__(self, reason: str, *, state: Mapping[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.state = state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"


class RetryableError(DeliveryError):
    retryable: ClassVar[bool] = True

    def __init__(
        self,
        reason: str,
        retry_after: float | None = None,
        *,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(reason, state=state)
        self.retry_after = retry_after

    def __str__(self) -> str:
        if self.retry_after is None:
            return self.reason
        return f"{self.reason} (retry after {self.retry_after:g}s)"

    def __repr__(self) -> str:
        return f"RetryableError({self.reason!r}, retry_after={self.retry_after!r})"


class RateLimited(RetryableError):
    """The remote API said "too many requests" (a 429, Slack's ``ratelimited``...): a wait, not
    a failure. The worker reschedules the row for the end of the window without counting an
    attempt, so a rate-limited row is never dead-lettered.

    ``scope`` names the limit the answer was about when the target keeps that window itself
    (a Slack method, one channel's posts): the target holds only the requests of that scope,
    and the worker does not pause the whole target. Without a scope the whole target waits.
    """

    def __init__(
        self,
        reason: str = "rate_limited",
        retry_after: float | None = None,
        *,
        state: Mapping[str, Any] | None = None,
        scope: str | None = None,
    ) -> None:
        super().__init__(reason, retry_after, state=state)
        self.scope = scope

    def __repr__(self) -> str:
        return (
            f"RateLimited({self.reason!r}, retry_after={self.retry_after!r}, scope={self.scope!r})"
        )


class PermanentError(DeliveryError):
    pass


class Sender(Protocol):
    """A configured target as the worker sees it. ``send`` must be safe to call again with the
    same notification after a crash (``idempotency_key`` is passed on where the API allows)."""

    name: str

    @property
    def pacing_s(self) -> float:
        """Least seconds between two messages to one channel (0: no pacing)."""
        ...

    async def send(self, notification: Notification) -> DeliveryResult: ...


@runtime_checkable
class DigestSender(Sender, Protocol):
    """A target that can merge several incidents into one message (``Digest``)."""

    async def send_digest(self, digest: Digest) -> DeliveryResult: ...
