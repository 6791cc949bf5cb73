"""The console's messages link to the incident's page, as the other targets' do."""

from __future__ import annotations

import io
import json

from bridge.targets import REGISTRY, TargetDeps
from tests.targets.conftest import incident, make_notification

URL = "http://bridge.example:9096/incidents/42"


async def test_the_console_line_carries_the_page_url() -> None:
    for fmt in ("text", "json"):
        out = io.StringIO()
        target = REGISTRY["console"].from_settings("c", {"format": fmt}, TargetDeps(stream=out))
        await target.send(make_notification("opened", target="c", inc=incident(url=URL)))
        line = out.getvalue()
        if fmt == "json":
            assert json.loads(line)["url"] == URL
            assert f" url={URL}" in json.loads(line)["text"]
        else:
            assert f" url={URL}" in line.splitlines()[0]
    # Without a URL the service can give (a wildcard listen address): nothing is made up.
    out = io.StringIO()
    target = REGISTRY["console"].from_settings("c", {"format": "json"}, TargetDeps(stream=out))
    await target.send(make_notification("opened", target="c", inc=incident(url=None)))
    line = json.loads(out.getvalue())
    assert line["url"] is None and "url=" not in line["text"]
