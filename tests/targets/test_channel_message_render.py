"""Channel messages (no incident: a hand-off, a drill's announcement) rendered by the targets
that take them: readable in each markup, with the links and mentions, a user's template
preferred over the shipped one, and the type's message template checked by ``rules check``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from bridge.delivery.protocol import Notification
from bridge.delivery.templates import SAMPLE_MESSAGES, Renderer
from bridge.targets import MESSAGE_TYPES, REGISTRY, render_all
from bridge.targets.base import TargetDeps

HANDOFF, DRILL = SAMPLE_MESSAGES
MANY = {
    **HANDOFF,
    "incidents": [
        {"id": i, "title": f"<b>@here</b> disk {i}", "severity": "sev3", "status": "triggered"}
        for i in range(1, 21)
    ],
    "incident_count": 23,
}
SETTINGS: dict[str, dict[str, Any]] = {
    "slack": {"token": "xoxb-1", "channel": "C0OPS"},
    "slack_webhook": {"url": "https://hooks.example/s"},
    "msteams": {"url": "https://teams.example/w"},
    "mattermost": {"url": "https://mm.example/h"},
    "discord": {"url": "https://discord.example/api/webhooks/1/x"},
    "telegram": {"token": "123:abc", "chat_id": "42"},
    "email": {"host": "127.0.0.1", "sender": "bridge@example.com", "to": ["ops@example.com"]},
    "webhook": {"url": "https://hook.example/x"},
    "console": {},
}


def note(message: dict[str, Any], target: str = "t") -> Notification:
    return Notification(
        id=7,
        idempotency_key="message:k:t",
        target=target,
        tier="general",
        event="timeline",
        incident={},
        message=message,
    )


def build(type_name: str, renderer: Renderer | None = None, stream: Any = None) -> Any:
    deps = TargetDeps(renderer=renderer, stream=stream)
    return REGISTRY[type_name].from_settings(type_name, SETTINGS[type_name], deps)


@pytest.mark.parametrize("type_name", sorted(MESSAGE_TYPES))
@pytest.mark.parametrize("message", [HANDOFF, DRILL, MANY], ids=["handoff", "drill", "many"])
def test_every_message_type_renders_both_kinds_readably(
    type_name: str, message: dict[str, Any]
) -> None:
    body = build(type_name).render(note(message)).body
    if message["kind"] == "handoff":
        alice = "<@U0ALICE>" if REGISTRY[type_name].markup == "slack" else "alice"
        assert alice in body and "bob" in body and "primary" in body
        assert "High error rate on checkout" in body or "disk 20" in body
    else:
        assert "DRILL" in body and "checkout" in body and "sev2" in body
        assert "2026-11-30 14:00" in body
    if message is MANY:  # the 20 listed, and the total
        assert "and 3 more" in body
        if REGISTRY[type_name].markup == "markdown":  # never a ping
            assert "@here" not in body.replace("@\u200bhere", "")
        if REGISTRY[type_name].markup in ("html", "slack"):
            assert "<b>@here" not in body  # label text escaped


def test_slack_posts_a_plain_message_to_its_channel_with_mentions_and_links() -> None:
    target = build("slack")
    payload = target.payload(note(HANDOFF), "C0OPS")
    text = payload["text"]
    assert payload["channel"] == "C0OPS"
    # alice's Slack id is known (her rotation's handles), bob's is not
    assert "<@U0ALICE> hands to bob" in text
    assert "<http://incident-bridge.example/incidents/42|#42 High error rate on checkout>" in text
    assert not any(b.get("type") == "actions" for b in payload["blocks"])  # no buttons


def test_teams_card_has_the_title_and_no_incident_facts() -> None:
    payload = build("msteams").payload(note(DRILL))
    content = payload["attachments"][0]["content"]
    assert content["body"][0]["text"] == "DRILL scheduled: checkout (sev2)"
    assert [b["type"] for b in content["body"]] == ["TextBlock", "TextBlock"]
    assert "actions" not in content


def test_email_subject_and_both_parts() -> None:
    msg = build("email").message(note(HANDOFF))
    assert msg["Subject"] == "Hand-off: alice hands primary to bob"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "bob inherits 1 open incident(s)" in text
    assert '<a href="http://incident-bridge.example/incidents/42">' in html


def test_mattermost_and_console(capsys: pytest.CaptureFixture[str]) -> None:
    payload = build("mattermost").payload(note(HANDOFF))
    assert payload["text"].startswith("**Hand-off of primary**: alice hands to bob")
    stream = io.StringIO()
    console = build("console", stream=stream)
    import asyncio

    asyncio.run(console.send(note(DRILL, "console")))
    line = stream.getvalue()
    assert line.startswith("[console/general] DRILL announced: a practice sev2 incident")


def test_a_users_message_template_is_preferred_and_checked(tmp_path: Path) -> None:
    (tmp_path / "slack").mkdir()
    (tmp_path / "slack" / "message.j2").write_text(
        "{% if message.kind == 'handoff' %}Now on call: {{ message.to }}{% else %}drill{% endif %}"
    )
    renderer = Renderer(tmp_path)
    assert build("slack", renderer).render(note(HANDOFF)).body == "Now on call: bob"
    (tmp_path / "slack" / "message.j2").write_text("{{ message.nope.deeper }}")
    renderer = Renderer(tmp_path)
    errors = [str(e) for e in render_all(renderer)]
    assert any("slack/message.j2:1" in e for e in errors), errors
