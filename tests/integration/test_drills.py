"""A drill through the real Alertmanager (both backends): `incident-bridge drill
--through-alertmanager` posts the drill's alert to Alertmanager's API, Alertmanager routes it
to a real bridge process, whose incident is a drill: every message reaching the targets' contract
fake starts with DRILL, the stakeholders hear nothing, and `--auto` then walks its stages."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.config import api_token_path
from tests.conftest import BOTH_BACKENDS
from tests.fakes.base import in_a_thread
from tests.fakes.webhook import SECRET, WebhookFake
from tests.integration.procs import Bridge, alertmanager_config, running_alertmanagers, wait_for

pytestmark = pytest.mark.integration

TIMEOUT = 30.0
RULES = """\
targets:
  general: {type: webhook, url: "${GENERAL_URL}", secret: "${HOOK_SECRET}"}
  room: {type: webhook, url: "${ROOM_URL}", secret: "${HOOK_SECRET}"}
  execs: {type: webhook, url: "${EXECS_URL}", secret: "${HOOK_SECRET}"}
route:
  name: default
  tiers:
    general: [general]
    incident: room
    stakeholders: {targets: [execs], min_severity: sev4}
"""


@pytest.fixture
def fakes() -> Iterator[dict[str, WebhookFake]]:
    servers = {name: WebhookFake() for name in ("general", "room", "execs")}
    with in_a_thread(*servers.values()):
        yield servers


def cli(*argv: str) -> tuple[int, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, json.loads(out.getvalue()) if out.getvalue().strip() else None


@BOTH_BACKENDS
def test_a_drill_through_alertmanager_reaches_the_targets_as_a_drill(
    alertmanager_binary: str, tmp_path: Path, fakes: dict[str, WebhookFake], bridge_db: str | None
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = {
        "GENERAL_URL": fakes["general"].hook_url,
        "ROOM_URL": fakes["room"].hook_url,
        "EXECS_URL": fakes["execs"].hook_url,
        "HOOK_SECRET": SECRET,
    }
    bridge = Bridge(
        tmp_path / "bridge", args=["--rules", str(rules)], env=env, database_url=bridge_db
    ).start()
    try:
        token = api_token_path(bridge.db).read_text().strip()
        config = alertmanager_config(bridge.url, bridge.token, group_by=("alertname", "drill_id"))
        with running_alertmanagers(tmp_path, config, binary=alertmanager_binary) as [am]:
            code, fired = cli(
                "drill",
                "--url",
                bridge.url,
                "--token",
                token,
                "--through-alertmanager",
                "--alertmanager-url",
                am.url,
                "--severity",
                "sev2",
                "--auto",
                "--wait",
                str(TIMEOUT),
                "-o",
                "json",
            )
            assert code == 0, fired
            (incident_id,) = fired["incidents"]
            assert fired["labels"]["drill"] == "true"
            assert all(s["ok"] for s in fired["auto"]), fired["auto"]
            wait_for(
                "the acknowledgement in the dedicated channel",
                lambda: (
                    any(
                        e["event"] == "acknowledged"
                        for d in fakes["room"].deliveries.values()
                        for e in d["events"]
                    )
                    or None
                ),
                TIMEOUT,
            )
        incident = bridge.incident(incident_id)
        assert incident["drill"] is True and incident["severity"] == "sev2"
        assert incident["title"].startswith("DRILL: ")
        texts = [d["text"] for f in ("general", "room") for d in fakes[f].deliveries.values()]
        assert texts and all(t.startswith("DRILL") for t in texts), texts
        assert fakes["execs"].deliveries == {}  # the stakeholders left out
        # the report, written into the knowledge base
        code, report = cli(
            "drill", "report", str(incident_id), "--url", bridge.url, "--token", token, "-o", "json"
        )
        assert code == 0, report
        assert {t["target"] for t in report["targets"]} >= {"general", "room"}
        assert report["knowledge_base"]["path"] == f"drills/{incident_id}.md"
    finally:
        bridge.stop()
