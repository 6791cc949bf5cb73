"""The base of every target: its settings model, what it gets injected, and how it renders.

A target is a ``bridge.delivery.protocol.Sender``: the worker hands it a ``Notification`` and
gets a ``DeliveryResult`` back or a ``DeliveryError``. ``markup`` (and ``extra_parts``, for a
target that renders more than one template, such as e-mail's HTML part) says how text from
alerts is escaped in its templates; the registry in ``bridge.targets`` is the only list of
target types.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from pydantic import BaseModel, ConfigDict, Field

from bridge.delivery.markup import Markup
from bridge.delivery.protocol import DeliveryResult, Digest, Notification, PermanentError

if TYPE_CHECKING:
    import aiohttp

    from bridge.delivery.templates import Rendered, Renderer


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
        # Imported on first use: importing the targets (to validate rule files) needs no Jinja2.
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
    # How text from alerts is escaped in this type's templates.
    markup: ClassVar[Markup] = "text"
    # Further templates the type renders, by file suffix, each with its own markup.
    extra_parts: ClassVar[Mapping[str, Markup]] = {}
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
        from bridge.delivery.templates import TemplateError, context, message_context

        markup = self.extra_parts.get(suffix, self.markup)
        if n.message is not None:
            # A channel message (no incident): the type's ``message`` template.
            ctx = message_context(n.message, tier=n.tier, target=n.target)
            event = "message"
        else:
            ctx = context(n.incident, n.event, n.events, tier=n.tier, target=n.target)
            event = n.event
        try:
            return self.deps.get_renderer().render(
                self.type_name, event, ctx, markup=markup, suffix=suffix
            )
        except TemplateError as exc:
            self.deps.logger.error("template error for target %s: %s", self.name, exc)
            raise PermanentError("template_error") from None

    def render_digest(self, digest: Digest) -> Rendered:
        """Render this type's ``digest`` template: one line per incident (``incidents``: id,
        title, severity, status, url, event, team, service), most severe first, with
        ``count`` and ``severities`` (how many of each)."""
        from bridge.delivery.templates import TemplateError

        incidents: list[dict[str, Any]] = [
            {
                "id": n.incident.get("id"),
                "title": str(n.incident.get("title") or ""),
                "severity": str(n.incident.get("severity") or ""),
                "status": str(n.incident.get("status") or ""),
                "url": str(n.incident.get("url") or ""),
                "team": str(n.incident.get("team") or ""),
                "service": str(n.incident.get("service") or ""),
                "event": n.event,
            }
            for n in digest.items
        ]
        severities: dict[str, int] = {}
        for item in incidents:
            sev = str(item["severity"])
            severities[sev] = severities.get(sev, 0) + 1
        ctx = {
            "incidents": incidents,
            "count": len(incidents),
            "severities": dict(sorted(severities.items())),
            "target": digest.target,
            "tier": digest.tier,
        }
        try:
            return self.deps.get_renderer().render(
                self.type_name, "digest", ctx, markup=self.markup
            )
        except TemplateError as exc:
            # A storm is no time to dead-letter every incident of a broken digest template
            # (``rules check`` renders the events' templates, not this one): plain lines.
            self.deps.logger.error("template error for target %s: %s", self.name, exc)
            from bridge.delivery.markup import ESCAPERS
            from bridge.delivery.templates import Rendered

            escape = ESCAPERS[self.markup]
            lines = [f"{len(incidents)} incidents at once:"] + [
                escape(f"{i['severity']} #{i['id']} {i['title']} ({i['status']}) {i['url']}")
                for i in incidents
            ]
            return Rendered(title="", body="\n".join(lines), template="(built in)")

    async def aclose(self) -> None:
        """Release resources held by the target (none by default)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
