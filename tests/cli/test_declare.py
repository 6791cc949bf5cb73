"""``incident-bridge incident declare|link|merge`` against a real ``serve`` process: the CLI
declares through the API, links a group, merges, and names a bad field as the API does."""

from __future__ import annotations

import pytest

from tests.cli.conftest import at, run
from tests.cli.test_incident import open_incident
from tests.integration.procs import Bridge

pytestmark = pytest.mark.usefixtures("no_developer_settings")


def test_declare_link_and_merge(bridge: Bridge, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "incident", "declare", *at(bridge), "--title", "Checkout is slow",
        "--severity", "sev2", "--team", "payments", "--description", "p99 at 4 s",
        "--label", "service=checkout", "--as", "alice",
    )  # fmt: skip
    assert (code, err) == (0, ""), err
    first = out.splitlines()[0]
    declared = int(first.split()[0].lstrip("#"))
    shown = bridge.incident(declared)
    assert first == (
        f"#{declared} declared (sev2, route {shown['route']}, triggered): Checkout is slow"
    )
    assert shown["team"] == "payments" and shown["service"] == "checkout"
    assert shown["source"]["declared_by"] == "alice"

    duplicate = open_incident(bridge, "checkout errors")
    code, out, err = run(
        capsys, "incident", "merge", str(duplicate), "--into", f"#{declared}", *at(bridge)
    )
    assert (code, err) == (0, "")
    assert f"#{duplicate} Merged into incident {declared} by" in out
    code, out, err = run(
        capsys, "incident", "link", str(declared), "--group-key", "g-1", *at(bridge)
    )
    assert (code, err) == (0, "") and "Alertmanager group g-1 linked by" in out


def test_declare_refusals_name_the_field(
    bridge: Bridge, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "incident", "declare", *at(bridge), "--title", "x", "--severity", "sev2",
        "--route", "nope",
    )  # fmt: skip
    assert code == 1 and "route" in err and "unknown route 'nope'" in err
    code, _, err = run(
        capsys, "incident", "declare", *at(bridge), "--title", "x", "--severity", "sev2",
        "--label", "novalue",
    )  # fmt: skip
    assert code == 2 and "NAME=VALUE" in err
