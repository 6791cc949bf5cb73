"""``incident-bridge report`` against a real ``serve`` process: the insights as tables, Markdown,
CSV and JSON, the same numbers as the API; a bad --since is the API's 400 naming it."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.cli.conftest import at, run
from tests.cli.test_incident import cli, open_incident
from tests.integration.procs import Bridge

pytestmark = pytest.mark.usefixtures("no_developer_settings")


def test_report_in_every_format(bridge: Bridge, capsys: pytest.CaptureFixture[str]) -> None:
    n = open_incident(bridge, "disk full", service="storage")
    assert cli(capsys, "ack", str(n), *at(bridge))[0] == 0
    api = bridge.get_json("/api/v1/insights?since=7d")

    code, out, err = run(capsys, "report", "--since", "7d", *at(bridge))
    assert (code, err) == (0, "")
    assert "NOISIEST" in out and "storage" in out and "Cli" in out

    code, out, _ = run(capsys, "report", "--since", "7d", "--format", "json", *at(bridge))
    body = json.loads(out)
    assert code == 0 and body["tables"]["noisiest"] == api["tables"]["noisiest"]

    code, out, _ = run(capsys, "report", "--format", "csv", "--table", "noisiest", *at(bridge))
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and rows[0] == api["tables"]["noisiest"]["columns"]
    assert rows[1][1] == "storage"

    code, out, _ = run(capsys, "report", "--format", "markdown", *at(bridge))
    assert code == 0 and out.startswith("# Insights from ") and "## Noisiest" in out
    assert "| alertname | service |" in out

    code, out, err = run(capsys, "report", "--since", "30x", *at(bridge))
    assert code == 1 and out == "" and "since" in err
