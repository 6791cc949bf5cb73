"""Sample notifications for every event, shared by the golden and injection tests."""

from __future__ import annotations

import io
import json
from typing import Any

from bridge.targets import EVENTS, REGISTRY, Notification, Target, TargetDeps
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
from tests.targets.conftest import FixedClock, incident, make_notification

STATUS = {
    "opened": "triggered",
    "acknowledged": "acknowledged",
    "severity_changed": "acknowledged",
    "mitigated": "mitigated",
    "resolved": "resolved",
    "closed": "closed",
    "reopened": "triggered",
    "postmortem_published": "closed",
    "update": "acknowledged",
    "reminder": "acknowledged",
    "escalated": "triggered",
    "ticket": "mitigated",
    "timeline": "acknowledged",
}
TEXT = {
    "acknowledged": "Acknowledged by alice",
    "severity_changed": "Severity changed from sev3 to sev2",
    "mitigated": "All alerts resolved",
    "reopened": "HighErrorRate fired again",
    "postmortem_published": "Postmortem published at https://kb.example/pm/42",
    "timeline": "Rolled back checkout-api to v1.2.3",
}
UPDATE = (
    "Checkout errors are back under 1% since the rollback of checkout-api to v1.2.3;"
    " we keep watching the error rate."
)
# The new events as the timeline writes them: their own kind (the notification event is
# derived from it) and data.
ROWS: dict[str, dict[str, Any]] = {
    "update": {
        "kind": "status_update",
        "actor": "bob",
        "text": f"Status update: {UPDATE}",
        "data": {"text": UPDATE, "next_update_at": "2026-11-27T06:15:00Z"},
    },
    "reminder": {
        "kind": "reminder",
        "actor": "incident-bridge",
        "text": "A status update is due",
        "data": {"due_at": "2026-11-27T06:15:00Z", "liaison": ["bob"]},
    },
    "ticket": {
        "kind": "ticket_requested",
        "actor": "alice",
        "text": "Ticket requested: Add a circuit breaker to checkout-api's calls to payments",
        "data": {
            "item": 7,
            "text": "Add a circuit breaker to checkout-api's calls to payments",
            "owner": "bob",
        },
    },
    "escalated": {
        "kind": "escalated",
        "actor": "incident-bridge",
        "text": "Not acknowledged within its target",
        "data": {"after_s": 960, "target_s": 900},
    },
}
# The role holders' Slack ids, as the rotations give them: Slack messages mention them.
PEOPLE = {"alice": {"slack": "U0ALICE"}, "bob": {"slack": "U0BOB"}}
SETTINGS: dict[str, dict[str, Any]] = {
    "console": {},
    "webhook": {"url": "http://hooks.example/x", "secret": "s"},
    "slack_webhook": {"url": "http://hooks.example/services/x"},
    "slack": {"token": "xoxb-1", "channel": "C0GENERAL"},
    "msteams": {"url": "http://teams.example/x"},
    "mattermost": {"url": "http://mm.example/hooks/x"},
    "discord": {"url": "http://discord.example/api/webhooks/1/x"},
    "pagerduty": {"routing_key": "R" * 32},
    "opsgenie": {"api_key": "k"},
    "email": {"host": "127.0.0.1", "from": "bridge@example.com", "to": ["oncall@example.com"]},
    "telegram": {"token": "1:x", "chat_id": -100123},
    "jira": {
        "url": "https://example.atlassian.net",
        "email": "bridge@example.com",
        "api_token": "t",
        "project": "OPS",
        "labels": ["follow-up"],
        "assignees": {"bob": "5b10ac8d82e05b22cc7d4ef5"},
    },
    "github": {
        "token": "t",
        "repo": "example/checkout",
        "labels": ["follow-up"],
        "assignees": {"bob": "bob-gh"},
    },
    "twilio": {
        "account_sid": "AC" + "0" * 32,
        "auth_token": "t",
        "from": "+14155550100",
        "to": "+14155550123",
        "callback_url": "https://bridge.example.com",
        "person": "alice",
    },
    "ntfy": {
        "topic": "oncall",
        "callback_url": "https://bridge.example.com",
        "callback_secret": "s",
    },
    "pushover": {
        "token": "t",
        "user": "u" * 30,
        "callback_url": "https://bridge.example.com",
        "priority_map": {"sev2": 2},
    },
}


def sample(event: str, inc: dict[str, Any] | None = None) -> Notification:
    inc = inc or incident(status=STATUS[event], people=PEOPLE)
    row = {"kind": event, "actor": "alice", "text": TEXT.get(event, ""), **ROWS.get(event, {})}
    events = ({"at": "2026-11-27T05:45:00Z", **row},)
    return make_notification(event, inc=inc, events=events, target="golden")


def build(type_name: str, **overrides: Any) -> Target:
    deps = TargetDeps(clock=FixedClock(), stream=io.StringIO())
    return REGISTRY[type_name].from_settings("golden", {**SETTINGS[type_name], **overrides}, deps)


async def wire(target: Target, n: Notification) -> str:
    """What the target would put on the wire for ``n``, as stable text."""
    data: Any
    if isinstance(target, ConsoleTarget):
        await target.send(n)
        stream = target.deps.stream
        assert isinstance(stream, io.StringIO)
        return stream.getvalue()
    if isinstance(target, EmailTarget):
        msg = target.message(n)
        head = "".join(
            f"{k}: {v}\n" for k, v in msg.items() if k not in ("Content-Type", "MIME-Version")
        )
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        assert text is not None and html is not None
        return f"{head}\n--- text ---\n{text.get_content()}--- html ---\n{html.get_content()}"
    if isinstance(target, SlackTarget):
        data = target.payload(n, "C0GENERAL")
    elif isinstance(target, PagerDutyTarget):
        data = target.events(n)
    elif isinstance(target, OpsgenieTarget | JiraTarget | GitHubTarget):
        data = target.requests(n)  # the ticket targets: [] for any other event than a ticket
    elif isinstance(
        target,
        WebhookTarget
        | SlackWebhookTarget
        | MSTeamsTarget
        | MattermostTarget
        | DiscordTarget
        | TelegramTarget,
    ):
        data = target.payload(n)
    elif isinstance(target, TwilioTarget):
        # the paging targets: what a page sends, or nothing for an event that does not page
        data = {"sms": target.sms_body(n), "twiml": target.twiml(n)} if target.pages(n) else {}
    elif isinstance(target, NtfyTarget):
        headers, body = target.request(n) if target.pages(n) else ({}, b"")
        data = {"headers": headers, "body": body.decode()}
    elif isinstance(target, PushoverTarget):
        data = {k: v for k, v in target.form(n).items() if k != "token"} if target.pages(n) else {}
    else:  # pragma: no cover - a new target type needs a line here
        raise AssertionError(f"no wire() for {type(target).__name__}")
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


ALL_EVENTS = EVENTS
