from __future__ import annotations

import io
import json

from bridge.targets import REGISTRY, TargetDeps
from tests.targets.conftest import incident, make_notification


async def test_console_writes_one_line_per_message() -> None:
    out = io.StringIO()
    target = REGISTRY["console"].from_settings("console", {}, TargetDeps(stream=out))
    events = ({"kind": "timeline", "text": "first\nsecond"},)
    await target.send(make_notification("timeline", target="console", events=events))
    await target.send(
        make_notification("resolved", target="console", inc=incident(status="resolved"))
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[console/general] Timeline: [sev2] #42 High error rate on checkout")
    assert "first | second" in lines[0]
    assert "Incident resolved" in lines[1]


async def test_console_json() -> None:
    out = io.StringIO()
    target = REGISTRY["console"].from_settings("c", {"format": "json"}, TargetDeps(stream=out))
    await target.send(make_notification("opened", target="c"))
    line = json.loads(out.getvalue())
    assert line["event"] == "opened" and line["incident"] == 42 and line["target"] == "c"


async def test_console_never_writes_control_characters() -> None:
    """A label can hold ESC sequences (clear screen, set the terminal's title) or BEL."""
    hostile = "web-1\x1b[2J\x1b]0;pwned\x07\x9b31m\u2028end"
    for fmt in ("text", "json"):
        out = io.StringIO()
        target = REGISTRY["console"].from_settings("c", {"format": fmt}, TargetDeps(stream=out))
        await target.send(make_notification("opened", target="c", inc=incident(title=hostile)))
        written = out.getvalue()
        assert written.count("\n") == 1 and written.endswith("\n")
        assert not any(c in written for c in "\x1b\x07\x9b\u2028"), (fmt, written)
        assert "\\x1b[2J" in written
