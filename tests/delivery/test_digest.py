"""The Slack target's digest: what Slack receives (a golden file, UPDATE_GOLDEN=1 rewrites
it), its size limits, and a broken digest template that must not lose a storm."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.delivery.protocol import Digest, Notification
from bridge.delivery.templates import Renderer
from bridge.targets import build_target
from bridge.targets.base import Target, TargetDeps
from tests.fakes.slack import TOKEN, SlackAPIFake
from tests.targets.conftest import incident, make_notification

GOLDEN = Path(__file__).parent / "golden" / "slack_digest.json"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
STORM = [
    ("opened", "sev1", "triggered", "Checkout error rate above 5%"),
    ("opened", "sev1", "triggered", "Payments API <down> & *failing*"),
    ("acknowledged", "sev2", "acknowledged", "Search latency p99 above 2 s"),
    ("opened", "sev3", "triggered", "Disk 90% full on db-7"),
    ("mitigated", "sev3", "mitigated", "Queue backlog on mailer"),
    ("resolved", "sev4", "resolved", "Certificate expires in 20 days"),
]


def items(storm: list[tuple[str, str, str, str]], first: int = 101) -> tuple[Notification, ...]:
    return tuple(
        make_notification(
            event,
            inc=incident(
                id=i,
                severity=sev,
                status=status,
                title=title,
                url=f"https://bridge.example/incidents/{i}",
            ),
        )
        for i, (event, sev, status, title) in enumerate(storm, first)
    )


@pytest.fixture
async def target(slack_api: SlackAPIFake) -> AsyncIterator[Target]:
    async with aiohttp.ClientSession() as session:
        yield build_target(
            "slack",
            "slack",
            {"token": TOKEN, "api_url": slack_api.url + "/api", "channel": "C0GENERAL"},
            TargetDeps(session=session),
        )


async def test_the_digest_slack_receives(slack_api: SlackAPIFake, target: Target) -> None:
    result = await target.send_digest(Digest("slack", "general", items(STORM)))  # type: ignore[attr-defined]
    [sent] = slack_api.messages
    got = json.dumps({k: v for k, v in sent.items() if k != "ts"}, indent=2, sort_keys=True)
    if UPDATE:
        GOLDEN.write_text(got + "\n", encoding="utf-8")
    assert got + "\n" == GOLDEN.read_text(encoding="utf-8"), "UPDATE_GOLDEN=1 rewrites it"
    assert result.provider_ids == {"channel": "C0GENERAL", "ts": sent["ts"]}
    text = sent["text"]
    assert "Payments API &lt;down&gt; &amp; *failing*" in text  # escaped: no markup from titles
    assert "thread_ts" not in sent and "blocks" in sent


async def test_a_full_digest_keeps_within_slacks_section_limit(
    slack_api: SlackAPIFake, target: Target
) -> None:
    """Twenty incidents with long titles: more than one section's 3,000 characters, so the
    lines are spread over sections, none cut, each within the limit (the fake refuses more)."""
    long = [("opened", "sev2", "triggered", "x" * 300 + f" {n}") for n in range(20)]
    await target.send_digest(Digest("slack", "general", items(long)))  # type: ignore[attr-defined]
    [sent] = slack_api.messages
    sections = [b["text"]["text"] for b in sent["blocks"]]
    assert len(sections) >= 2 and all(len(s) <= 3000 for s in sections)
    lines = "\n".join(sections).splitlines()
    assert sum("|#" in line for line in lines) == 20


async def test_a_broken_digest_template_still_names_every_incident(
    slack_api: SlackAPIFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "slack").mkdir()
    (tmp_path / "slack" / "digest.j2").write_text("{{ incidents[0].nope.deeper }}\n")
    async with aiohttp.ClientSession() as session:
        target: Any = build_target(
            "slack",
            "slack",
            {"token": TOKEN, "api_url": slack_api.url + "/api", "channel": "C0GENERAL"},
            TargetDeps(session=session, renderer=Renderer(tmp_path)),
        )
        with caplog.at_level(logging.ERROR):
            await target.send_digest(Digest("slack", "general", items(STORM)))
    assert "template error for target slack" in caplog.text
    [sent] = slack_api.messages
    for n in range(101, 101 + len(STORM)):
        assert f"#{n} " in sent["text"]
