from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from bridge.core.alertmanager import WebhookPayload
from bridge.rules import RuleSet, load_rules


def load_text(tmp_path: Path, text: str, name: str = "rules.yaml") -> RuleSet:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    result = load_rules([path], env={})
    assert result.ruleset is not None, result.errors
    return result.ruleset


def payload(
    *alerts: dict[str, str], group_key: str = "{}:{}", fingerprints: bool = True
) -> WebhookPayload:
    items: list[dict[str, Any]] = [
        {"status": "firing", "labels": labels, "startsAt": "2026-11-27T10:00:00Z"}
        for labels in alerts
    ]
    return WebhookPayload.model_validate(
        {"groupKey": group_key, "status": "firing", "alerts": items}
    )
