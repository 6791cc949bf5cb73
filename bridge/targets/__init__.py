"""Notification targets: one module per remote API, each with its config model next to its sender.

``REGISTRY`` maps a target ``type`` (as written in the rules) to its class, and is the only list
of target types: the rules check settings against each class's ``Config`` pydantic model
(``extra="forbid"``, secrets typed ``Secret``), ``rules check`` renders each class's templates
with its ``markup``. Importing this package is cheap: no HTTP client and no Jinja2 is imported
until a target sends.

    cls = REGISTRY["slack"]
    config = cls.Config.model_validate(settings)          # settings without "type"
    target = cls("ops-slack", config, TargetDeps(session=session, clock=clock))
    result = await target.send(notification)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.core.events import EVENTS, TIERS, EventKind, Tier
from bridge.delivery.protocol import (
    DeliveryError,
    DeliveryResult,
    Notification,
    PermanentError,
    RetryableError,
)
from bridge.targets.base import Target, TargetConfig, TargetDeps
from bridge.targets.console import ConsoleTarget
from bridge.targets.discord import DiscordTarget
from bridge.targets.email import EmailTarget
from bridge.targets.github import GitHubTarget
from bridge.targets.jira import JiraTarget
from bridge.targets.mattermost import MattermostTarget
from bridge.targets.msteams import MSTeamsTarget
from bridge.targets.ntfy import NtfyTarget
from bridge.targets.opsgenie import OpsgenieTarget
from bridge.targets.pagerduty import PagerDutyTarget
from bridge.targets.pushover import PushoverTarget
from bridge.targets.slack import SlackTarget
from bridge.targets.slack_webhook import SlackWebhookTarget
from bridge.targets.telegram import TelegramTarget
from bridge.targets.twilio import TwilioTarget
from bridge.targets.webhook import WebhookTarget

if TYPE_CHECKING:
    from bridge.delivery.templates import Renderer, TemplateError

REGISTRY: dict[str, type[Target]] = {
    cls.type_name: cls
    for cls in (
        ConsoleTarget,
        WebhookTarget,
        SlackWebhookTarget,
        SlackTarget,
        MSTeamsTarget,
        MattermostTarget,
        DiscordTarget,
        PagerDutyTarget,
        OpsgenieTarget,
        EmailTarget,
        TelegramTarget,
        JiraTarget,
        GitHubTarget,
        TwilioTarget,
        NtfyTarget,
        PushoverTarget,
    )
}

# The types that take channel messages (tied to no incident: a rotation's hand-off, a drill's
# announcement; docs/delivery.md): a channel people read, with a ``message`` template. The
# others (paging, tickets, an incident per message) have no such channel; the rules refuse
# them in ``handoff_to``, and a drill's announcement leaves them out.
MESSAGE_TYPES: frozenset[str] = frozenset(
    {"console", "webhook", "slack_webhook", "slack", "msteams", "mattermost", "discord", "email",
     "telegram"}
)  # fmt: skip


def render_all(
    renderer: Renderer | None = None, incident: Mapping[str, Any] | None = None
) -> list[TemplateError]:
    """Every target type's templates for every event against a sample incident (``rules
    check``); the errors, each naming its file and line."""
    from bridge.delivery import templates  # Jinja2 only when rendering

    errors = templates.render_all(REGISTRY.values(), renderer, incident)
    kinds = [REGISTRY[name] for name in sorted(MESSAGE_TYPES)]
    return errors + templates.render_messages(kinds, renderer)


def render_preview(
    type_name: str,
    event: str,
    incident: Mapping[str, Any],
    *,
    templates_dir: Path | str | None = None,
) -> str:
    """One message of a target type as ``incident-bridge template render`` prints it."""
    from bridge.delivery import templates

    kind = REGISTRY.get(type_name)
    if kind is None:
        raise templates.TemplateError(
            type_name, None, f"unknown target type (one of {', '.join(REGISTRY)})"
        )
    return templates.render_preview(kind, event, incident, templates_dir=templates_dir)


def config_model(type_name: str) -> type[TargetConfig]:
    """The settings model of a target type; ``KeyError`` for an unknown type."""
    return REGISTRY[type_name].Config


def build_target(
    name: str, type_name: str, settings: Mapping[str, Any] | TargetConfig, deps: TargetDeps
) -> Target:
    """A ready target from its rules entry. ``settings`` may include ``type`` (ignored)."""
    cls = REGISTRY[type_name]
    if isinstance(settings, TargetConfig):
        return cls(name, settings, deps)
    return cls.from_settings(name, {k: v for k, v in settings.items() if k != "type"}, deps)


__all__ = [
    "EVENTS",
    "MESSAGE_TYPES",
    "REGISTRY",
    "TIERS",
    "DeliveryError",
    "DeliveryResult",
    "EventKind",
    "Notification",
    "PermanentError",
    "RetryableError",
    "Target",
    "TargetConfig",
    "TargetDeps",
    "Tier",
    "build_target",
    "config_model",
    "render_all",
    "render_preview",
]
