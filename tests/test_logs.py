"""Log lines: one event per line, nothing a terminal would obey, secrets masked."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from bridge.core.secrets import Secret
from bridge.core.text import escape_controls
from bridge.logs import JsonFormatter, RedactFilter, TextFormatter

HOSTILE = "a\nb\rc\x1b[2J\x1b]0;title\x07d\x85e\u2028f\u2029g\x7fh\ti"


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("bridge.test", logging.WARNING, __file__, 1, message, (), None)


def test_escape_controls() -> None:
    assert escape_controls("plain text, ünïcode") == "plain text, ünïcode"
    assert escape_controls(HOSTILE) == (
        "a\\nb\\rc\\x1b[2J\\x1b]0;title\\x07d\\x85e\\u2028f\\u2029g\\x7fh\\ti"
    )


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
def test_a_hostile_message_stays_one_inert_line(formatter: logging.Formatter) -> None:
    line = formatter.format(record(f"label value {HOSTILE}"))
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in line), repr(line)
    assert "\u2028" not in line and "\u2029" not in line
    if isinstance(formatter, JsonFormatter):
        assert json.loads(line)["msg"].endswith(HOSTILE)


def test_known_secrets_are_masked() -> None:
    rec = record("token is hunter2-token here")
    RedactFilter([Secret("hunter2-token")]).filter(rec)
    assert "hunter2" not in TextFormatter().format(rec)


def test_every_credential_of_the_settings_is_masked_in_every_form() -> None:
    """Outbound clients' credentials come back in answers and exceptions as given, percent-
    encoded in a URL or as the base64 of a Basic header: the log filter masks each form."""
    from bridge.cli.serve import credentials
    from bridge.config import Settings

    settings = Settings(
        prometheus_url="https://prom:pa%2Fss-word@prometheus.example/prometheus",
        prometheus_token=Secret("prom-bearer-token"),
        alertmanager_urls=("http://am:am-pass-word@am1:9093",),
        alertmanager_basic_user="amuser",
        alertmanager_basic_password=Secret("am-basic-secret"),
        slack_signing_secret=Secret("slack-signing-secret"),
    )
    said = [
        "prom-bearer-token",
        "pa%2Fss-word",
        "pa/ss-word",
        base64.b64encode(b"prom:pa/ss-word").decode(),
        "am-pass-word",
        base64.b64encode(b"am:am-pass-word").decode(),
        base64.b64encode(b"amuser:am-basic-secret").decode(),
        "slack-signing-secret",
    ]
    masked = RedactFilter(credentials(settings))
    for value in said:
        rec = record(f"gateway said: Authorization: {value}!")
        masked.filter(rec)
        assert value not in rec.getMessage() and "<secret>" in rec.getMessage()
