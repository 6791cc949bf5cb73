"""The registry is stable and cheap to import; every config key is documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from bridge.core.events import EVENTS
from bridge.core.secrets import Secret
from bridge.delivery.markup import MARKUPS
from bridge.targets import REGISTRY, TargetConfig, TargetDeps, build_target

DOC = Path(__file__).resolve().parents[2] / "docs" / "targets.md"
TYPES = [
    "console",
    "webhook",
    "slack_webhook",
    "slack",
    "msteams",
    "mattermost",
    "discord",
    "pagerduty",
    "opsgenie",
    "email",
    "telegram",
    "jira",
    "github",
    "twilio",
    "ntfy",
    "pushover",
]
SECRET_KEYS = {
    "webhook": {"url", "secret", "authorization"},
    "slack_webhook": {"url"},
    "slack": {"token"},
    "msteams": {"url"},
    "mattermost": {"url", "actions_token"},
    "discord": {"url"},
    "pagerduty": {"routing_key"},
    "opsgenie": {"api_key"},
    "email": {"password"},
    "telegram": {"token"},
    "console": set(),
    "jira": {"api_token"},
    "github": {"token"},
    "twilio": {"auth_token"},
    "ntfy": {"token", "password", "callback_secret"},
    "pushover": {"token"},
}


def test_registry_types() -> None:
    assert sorted(REGISTRY) == sorted(TYPES)
    for name, cls in REGISTRY.items():
        assert cls.type_name == name
        assert issubclass(cls.Config, TargetConfig)
        assert cls.Config.model_config.get("extra") == "forbid"
        assert cls.markup in MARKUPS and set(cls.extra_parts.values()) <= set(MARKUPS)


@pytest.mark.parametrize("type_name", TYPES)
def test_secret_fields_are_typed_secret(type_name: str) -> None:
    fields = REGISTRY[type_name].Config.model_fields
    typed = {k for k, f in fields.items() if "Secret" in str(f.annotation)}
    assert typed == SECRET_KEYS[type_name]


@pytest.mark.parametrize("type_name", TYPES)
def test_unknown_keys_are_rejected(type_name: str) -> None:
    with pytest.raises(ValidationError, match="extra"):
        REGISTRY[type_name].Config.model_validate({"bogus_key": 1})


def test_build_target_ignores_type_and_masks_secrets() -> None:
    t = build_target(
        "s", "slack", {"type": "slack", "token": "xoxb-1", "channel": "C1"}, TargetDeps()
    )
    assert isinstance(t.config.token, Secret)  # type: ignore[attr-defined]
    assert "xoxb-1" not in repr(t) + repr(t.config) + t.config.model_dump_json()


def test_import_is_cheap() -> None:
    code = "import sys, bridge.targets; print('aiohttp' in sys.modules, 'jinja2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def _sections() -> dict[str, str]:
    text = DOC.read_text()
    parts = re.split(r"^### `([a-z_]+)`$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize("type_name", TYPES)
def test_every_config_key_is_documented(type_name: str) -> None:
    sections = _sections()
    assert type_name in sections, f"docs/targets.md has no section for {type_name}"
    common = DOC.read_text().split("## Target types")[0]
    for name, field in REGISTRY[type_name].Config.model_fields.items():
        key = field.alias or name
        where = common if name in TargetConfig.model_fields else sections[type_name]
        assert re.search(rf"^\| `{key}` \|", where, flags=re.M), f"{type_name}.{key} undocumented"


def test_every_event_is_documented() -> None:
    text = DOC.read_text()
    assert all(f"`{e}`" in text for e in EVENTS)


@pytest.mark.parametrize("type_name", TYPES)
def test_validation_errors_do_not_echo_values(type_name: str) -> None:
    with pytest.raises(ValidationError) as err:
        REGISTRY[type_name].Config.model_validate({"tokne": "xoxb-SECRET-VALUE", "timeout_s": "x"})
    assert "xoxb-SECRET-VALUE" not in str(err.value)
