"""``incident-bridge search TEXT...`` against a real ``serve`` process: the indexer loop it runs
indexes a note behind its commit, and the command lists the incident with the snippet, as text
for people or as the API's JSON."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import at, run
from tests.cli.test_incident import cli, open_incident
from tests.integration.procs import Bridge, wait_for

pytestmark = pytest.mark.usefixtures("no_developer_settings")


def search(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run(capsys, "search", *args)


def test_search_lists_the_incident_with_its_snippet(
    bridge: Bridge, capsys: pytest.CaptureFixture[str]
) -> None:
    n = open_incident(bridge, "payments slow", service="payments")
    code, _, err = cli(
        capsys, "note", str(n), "a", "wombat", "chewed", "the\x1b[2J", "cable", *at(bridge)
    )
    assert (code, err) == (0, "")
    wait_for(
        "the note in the index",
        lambda: bridge.get_json("/api/v1/search?q=wombat")["results"],
        timeout=15,
    )
    code, out, err = search(capsys, "wombat", *at(bridge))
    assert (code, err) == (0, "")
    first, second = out.splitlines()
    assert first.startswith(f"#{n}  triggered  sev3  20") and "  payments slow" in first
    assert second.startswith("    note #") and "«wombat»" in second
    assert "\x1b" not in out and "\\x1b[2J" in out  # what people typed is safe to print

    code, out, _ = search(capsys, "wombat", "--limit", "1", "-o", "json", *at(bridge))
    body = json.loads(out)
    assert code == 0 and body["query"] == "wombat"
    assert [h["incident_id"] for h in body["results"]] == [n]

    # After "--" (needed before a first word like -staging) the command's flags are still
    # flags, never words of the search.
    code, out, err = search(capsys, *at(bridge), "--", "-staging", "wombat", "--limit", "1",
                            "--output=json")  # fmt: skip
    assert (code, err) == (0, "")
    body = json.loads(out)
    assert (body["query"], [h["incident_id"] for h in body["results"]]) == ("-staging wombat", [n])
    code, out, err = search(capsys, "-o", "json", "--", "-staging", "wombat", "--limit", "1",
                            *at(bridge))  # fmt: skip
    assert code == 0 and json.loads(out)["query"] == "-staging wombat", err
    code, out, err = search(capsys, *at(bridge), "--", "-staging", "wombat", "--limit")
    assert (code, out) == (2, "") and "--limit: expected one argument" in err

    assert search(capsys, "nothing-like-this-anywhere", *at(bridge))[:2] == (
        0,
        "no incidents match\n",
    )


def test_what_cannot_be_searched_says_why(
    bridge: Bridge, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = search(capsys, *at(bridge), "--", "-only")
    assert (code, out) == (1, "")
    assert err.startswith("incident-bridge: 400: q: nothing to look for")
    code, _, err = search(capsys, "x", "--limit", "0", *at(bridge))
    assert code == 1 and "limit" in err
    code, _, err = search(capsys, *at(bridge))  # no TEXT: a usage error
    assert code == 2 and "TEXT" in err
