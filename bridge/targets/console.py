"""``console``: one line per message on stdout or stderr. The default; needs no secrets."""

from __future__ import annotations

import json
from typing import Literal

from bridge.core.text import escape_controls
from bridge.delivery.protocol import DeliveryResult, Notification
from bridge.targets.base import Target, TargetConfig


class ConsoleConfig(TargetConfig):
    stream: Literal["stdout", "stderr"] = "stdout"
    format: Literal["text", "json"] = "text"


class ConsoleTarget(Target):
    type_name = "console"
    Config = ConsoleConfig
    config: ConsoleConfig

    async def send(self, notification: Notification) -> DeliveryResult:
        n = notification
        rendered = self.render(n)
        # One line, whatever the template: a multi-line body is joined with " | ", and control
        # characters from labels are shown as escapes, never sent to the terminal.
        text = escape_controls(
            " | ".join(line.strip() for line in rendered.body.splitlines() if line.strip())
        )
        if self.config.format == "json":
            line = json.dumps(
                {
                    "target": n.target,
                    "tier": n.tier,
                    "event": n.event,
                    "incident": n.incident.get("id"),
                    # the incident's page, when the service knows its URL (the text has it too)
                    "url": n.incident.get("url"),
                    "idempotency_key": n.idempotency_key,
                    "text": text,
                },
                ensure_ascii=False,
            )
        else:
            line = f"[{n.target}/{n.tier}] {text}"
        stream = self.deps.get_stream(self.config.stream)
        stream.write(line + "\n")
        stream.flush()
        return DeliveryResult(state=dict(n.state))
