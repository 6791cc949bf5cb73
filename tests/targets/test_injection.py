"""Text from alerts that tries to mention, link or inject markup arrives inert everywhere."""

from __future__ import annotations

import pytest

from bridge.targets import REGISTRY
from tests.fakes.chat import telegram_visible_text
from tests.targets.conftest import incident
from tests.targets.samples import build, sample, wire

EVIL = "<!channel> <@U1> @everyone @here </b><script>x</script> *bold* [click](http://evil.example) &amp;"


def evil_incident() -> dict[str, object]:
    inc = incident(
        title=f"Title {EVIL}",
        team=f"team {EVIL}",
        service=f"svc {EVIL}",
        roles={"commander": [f"cmd {EVIL}"], "responders": []},
    )
    alert = inc["alerts"][0]  # type: ignore[index]
    alert["labels"]["alertname"] = f"Alert {EVIL}"
    alert["annotations"]["summary"] = f"Summary {EVIL}"
    alert["annotations"]["runbook_url"] = "javascript:alert(1)"
    return inc


# Raw forms that must never reach a target whose markup would act on them.
ACTIVE = {
    # Slack mrkdwn has no [text](url) links, and *bold* cannot be escaped (docs/targets.md)
    "slack": ["<!channel>", "<@U1>", "</b>", "<script>", "<javascript:"],
    "html": ["</b><script>", "<script>", "javascript:", '<a href="http://evil'],
    "markdown": [
        "@everyone",
        "@here",
        "<@U1>",
        "*bold*",
        "[click](http://evil.example)",
        "<!channel>",
    ],
}
MARKUP = {
    "slack": "slack",
    "slack_webhook": "slack",
    "telegram": "html",
    "email": "html",
    "discord": "markdown",
    "mattermost": "markdown",
    "msteams": "markdown",
}


@pytest.mark.parametrize("event", ["opened", "timeline"])
@pytest.mark.parametrize("type_name", sorted(REGISTRY))
async def test_injection_is_inert(type_name: str, event: str) -> None:
    n = sample(event, evil_incident())
    n = type(n)(**{**n.__dict__, "events": ({"kind": event, "text": f"note {EVIL}"},)})
    out = await wire(build(type_name), n)
    markup = MARKUP.get(type_name)
    if markup is None:  # plain-text targets show the text as it is, which is inert there
        return
    if type_name == "email":
        out = out.split("--- html ---", 1)[1]
    for raw in ACTIVE[markup]:
        # JSON-encoded payloads escape nothing of these; check the decoded text too
        assert raw not in out.replace('\\"', '"'), f"{type_name}: {raw!r} got through"
    if markup == "slack":
        assert "&lt;!channel&gt;" in out and "&amp;amp;" in out
    if markup == "markdown":
        assert "@\u200beveryone" in out or "@\\u200beveryone" in out


def test_telegram_payload_parses_as_valid_html() -> None:
    n = sample("opened", evil_incident())
    text = build("telegram").payload(n)["text"]  # type: ignore[attr-defined]
    visible = telegram_visible_text(text)  # raises on a stray tag or entity
    assert "</b><script>x</script>" in visible  # shown as text, literally
