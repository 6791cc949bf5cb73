"""Notification targets: one module per type, each with its config model next to its sender.

``REGISTRY`` maps a target ``type`` (as written in the rules) to its class; each class has a
``Config`` pydantic model (``extra="forbid"``, secrets typed ``Secret``). Importing this
package is cheap: no HTTP client is imported until a target sends.

    cls = REGISTRY["slack"]
    config = cls.Config.model_validate(settings)          # settings without "type"
    target = cls("ops-slack", config, TargetDeps(session=session, clock=clock))
    result = await target.send(notification)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.targets.base import (
    EVENTS,
    TIERS,
    DeliveryError,
    DeliveryResult,
    EventKind,
    Notification,
    PermanentError,
    RetryableError,
    Target,
    TargetConfig,
    TargetDeps,
    Tier,
)
from bridge.targets.console import ConsoleTarget
from bridge.targets.discord import DiscordTarget
from bridge.targets.email import EmailTarget
from bridge.targets.mattermost import MattermostTarget
from bridge.targets.msteams import MSTeamsTarget
from bridge.targets.opsgenie import OpsgenieTarget
from bridge.targets.pagerduty import PagerDutyTarget
from bridge.targets.slack import SlackTarget
from bridge.targets.slack_webhook import SlackWebhookTarget
from bridge.targets.telegram import TelegramTarget
from bridge.targets.webhook import WebhookTarget

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
    )
}


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
]
