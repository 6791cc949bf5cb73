"""The target protocol: what the outbox worker hands a target, and what comes back.

A target turns one ``Notification`` into one (or a few) requests to its remote API. It keeps no
state of its own between sends: whatever it must remember per (incident, target) -- a Slack
channel id, a thread ts, the first e-mail's Message-ID -- goes back in ``DeliveryResult.state``
(or on an error, ``DeliveryError.state``) and the caller persists it and passes it in again.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TextIO, get_args

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import aiohttp

    from bridge.delivery.templates import Rendered, Renderer

Tier = Literal["general", "incident", "stakeholders"]
TIERS: tuple[Tier, ...] = get_args(Tier)
EventKind = Literal[
    "opened",
    "acknowledged",
    "severity_changed",
    "mitigated",
    "resolved",
    "closed",
    "reopened",
    "postmortem_published",
    "timeline",
]
EVENTS: tuple[EventKind, ...] = get_args(EventKind)


def event_kind(kind: str, data: Mapping[str, Any] | None = None) -> EventKind:
    """The notification event for a timeline event kind of the state machine: milestones
    keep their name, a status change names its new status, the rest is ``timeline``."""
    for known in EVENTS:
        if kind == known:
            return known
    if kind == "status_changed":
        to = (data or {}).get("to")
        if to == "triggered":
            return "reopened"
        for known in ("acknowledged", "mitigated", "resolved", "closed"):
            if to == known:
                return known
    return "timeline"


@dataclass(frozen=True)
class Notification:
    """One outbox row, ready to send.

    ``incident`` is a plain snapshot (see docs/targets.md for its keys). ``events`` holds the
    timeline events this message covers, oldest first; more than one when waiting events for
    the same incident and target were coalesced (``event`` is then the newest kind).
    ``state`` is what the previous send to this (incident, target) returned.
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

    @property
    def kinds(self) -> tuple[EventKind, ...]:
        """Notification events covered, oldest first (timeline kinds of the state machine,
        such as ``status_changed`` to ``mitigated``, mapped with ``event_kind``)."""
        kinds = tuple(
            event_kind(str(e["kind"]), e.get("data")) for e in self.events if e.get("kind")
        )
        return kinds or (self.event,)


@dataclass(frozen=True)
class DeliveryResult:
    """A successful send: the per-(incident, target) state to persist and the provider's ids."""

    state: Mapping[str, Any] = field(default_factory=dict)
    provider_ids: Mapping[str, str] = field(default_factory=dict)
    # True when the target had nothing to do for this event (e.g. PagerDuty and a note).
    skipped: bool = False


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


class PermanentError(DeliveryError):
    pass


class TargetConfig(BaseModel):
    """Settings common to every target. Subclasses add their own; unknown keys are errors."""

    # hide_input_in_errors: a misspelt key holding a token must not echo it in the error.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    timeout_s: float = Field(default=10.0, gt=0, le=300)
    # Seconds between two messages to one channel; None: the type's default (1 s for Slack).
    min_interval_s: float | None = Field(default=None, ge=0, le=3600)


@dataclass(frozen=True)
class TargetDeps:
    """What a target gets injected. ``session`` is needed by every HTTP target."""

    session: aiohttp.ClientSession | None = None
    clock: Callable[[], float] = time.time
    renderer: Renderer | None = None
    stream: TextIO | None = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("bridge.targets"))

    def get_renderer(self) -> Renderer:
        if self.renderer is not None:
            return self.renderer
        from bridge.delivery.templates import default_renderer

        return default_renderer()

    def get_stream(self, name: str) -> TextIO:
        if self.stream is not None:
            return self.stream
        return sys.stderr if name == "stderr" else sys.stdout


class Target:
    """Base class of every target. ``send`` must be safe to call again with the same
    notification after a crash (use ``idempotency_key`` where the remote API allows)."""

    type_name: ClassVar[str] = ""
    Config: ClassVar[type[TargetConfig]] = TargetConfig
    # Least seconds between two messages to one channel, unless the config says otherwise.
    min_interval_s: ClassVar[float] = 0.0

    @property
    def pacing_s(self) -> float:
        configured = self.config.min_interval_s
        return self.min_interval_s if configured is None else configured

    def __init__(self, name: str, config: TargetConfig, deps: TargetDeps | None = None) -> None:
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}")
        self.name = name
        self.config = config
        self.deps = deps or TargetDeps()

    @classmethod
    def from_settings(
        cls, name: str, settings: Mapping[str, Any], deps: TargetDeps | None = None
    ) -> Target:
        return cls(name, cls.Config.model_validate(dict(settings)), deps)

    async def send(self, notification: Notification) -> DeliveryResult:
        raise NotImplementedError

    def render(self, n: Notification, *, suffix: str = ".j2") -> Rendered:
        """Render this target type's template for ``n``; a broken template is permanent
        (logged with its file and line) until the templates are fixed and the row retried."""
        from bridge.delivery.templates import TemplateError, context

        ctx = context(n.incident, n.event, n.events, tier=n.tier, target=n.target)
        try:
            return self.deps.get_renderer().render(self.type_name, n.event, ctx, suffix=suffix)
        except TemplateError as exc:
            self.deps.logger.error("template error for target %s: %s", self.name, exc)
            raise PermanentError("template_error") from None

    async def aclose(self) -> None:
        """Release resources held by the target (none by default)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
