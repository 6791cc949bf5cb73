"""``incident-bridge postmortem show|edit|versions|diff|publish`` against a real ``serve`` whose
knowledge base is a real Git repository: the CLI runs in-process through ``main()``, so every
answer it reads is the real API's."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from bridge.cli import main
from tests.cli.conftest import at, run
from tests.cli.test_incident import open_incident
from tests.integration.procs import Bridge

AUTHOR = "KB Bot <kb@bridge.example>"


pytestmark = pytest.mark.usefixtures("no_developer_settings")


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kb")
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, timeout=30)
    return path


@pytest.fixture(scope="module")
def bridge_args(kb: Path) -> list[str]:
    return ["--kb-dir", str(kb), "--kb-author", AUTHOR]


def pm(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``incident-bridge postmortem ARGS``: exit code, stdout, stderr."""
    return run(capsys, "postmortem", *args)


def test_a_postmortem_from_the_terminal(
    bridge: Bridge,
    kb: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    n = open_incident(bridge, "queue backlog on orders")
    flags = at(bridge)

    code, out, err = pm(capsys, "show", str(n), *flags)
    assert (code, err) == (0, "")
    assert out.startswith(f"# Postmortem: #{n} queue backlog on orders\n")
    assert "> _Not written yet._" in out

    code, out, err = pm(
        capsys, "edit", str(n), "--section", "summary", "--text", "Orders queued.", *flags
    )
    assert (code, err) == (0, "")
    assert out == f"#{n} Postmortem v1 saved by api (summary)\n"
    code, out, _ = pm(
        capsys, "edit", str(n), "--section", "summary", "--text", "Orders queued.", *flags
    )
    assert out == f"#{n}: nothing to change (the summary already reads so)\n"
    cause = tmp_path / "cause.md"
    cause.write_text("A consumer stopped:\n\n- no alert on lag\n")
    code, out, _ = pm(
        capsys, "edit", str(n), "--section", "root_cause", "--file", str(cause), "--as", "dana",
        *flags,
    )  # fmt: skip
    assert out == f"#{n} Postmortem v2 saved by dana (root cause and trigger)\n"
    monkeypatch.setattr("sys.stdin", io.StringIO("We had spare capacity.\n"))
    code, out, _ = pm(capsys, "edit", str(n), "--section", "lucky", "--file", "-", *flags)
    assert code == 0 and "Postmortem v3 saved by api (where we got lucky)" in out

    code, out, err = pm(capsys, "edit", str(n), "--section", "blame", "--text", "bob", *flags)
    assert code == 2 and "invalid choice: 'blame'" in err
    code, _, err = pm(capsys, "edit", str(n), "--section", "impact", *flags)
    assert code == 2 and "one of the arguments --text --file is required" in err
    code, _, err = pm(capsys, "edit", str(n), "--section", "impact", "--file", "/nope", *flags)
    assert code == 2 and "--file /nope: No such file or directory" in err

    code, out, _ = pm(capsys, "versions", str(n), *flags)
    lines = out.splitlines()
    assert lines[0].split() == ["VERSION", "SAVED", "AUTHOR", "SECTIONS"]
    assert [line.split()[0] for line in lines[1:]] == ["v1", "v2", "v3"]
    assert lines[2].split()[-3:] == ["dana", "summary,", "root_cause"]

    code, out, _ = pm(capsys, "diff", str(n), "1", "2", *flags)
    assert code == 0 and out.startswith("--- v1\n+++ v2\n")
    assert "+A consumer stopped:\n" in out
    code, out, _ = pm(capsys, "diff", str(n), "2", "2", *flags)
    assert out == f"#{n}: v2 and v2 read the same\n"
    code, _, err = pm(capsys, "diff", str(n), "1", "9", *flags)
    assert code == 1 and "404: to: incident" in err

    code, out, _ = pm(capsys, "show", str(n), "--version", "1", "-o", "json", *flags)
    body = json.loads(out)
    assert body["version"] == 1 and body["sections"]["root_cause"] == ""

    # Publishing waits for the incident to be resolved.
    code, out, err = pm(capsys, "publish", str(n), *flags)
    assert code == 1 and "409: cannot publish: the incident is triggered" in err
    assert main(["incident", "resolve", str(n), *flags]) == 0
    capsys.readouterr()
    code, out, err = pm(capsys, "publish", str(n), "--as", "dana", *flags)
    assert (code, err) == (0, "")
    path = f"{bridge_year(bridge, n)}/{n}-queue-backlog-on-orders.md"
    first, closed = out.splitlines()
    assert first.startswith(f"#{n} Postmortem v3 published by dana: {path} (commit ")
    assert closed == f"#{n} closed by dana"
    assert (kb / path).read_text().startswith(f"# Postmortem: #{n} queue backlog on orders")
    author = subprocess.run(
        ["git", "log", "-1", "--format=%an <%ae>"],
        cwd=kb,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    assert author == AUTHOR
    code, out, _ = pm(capsys, "publish", str(n), *flags)
    assert out == f"#{n}: nothing to change (v3 is published as it is)\n"
    code, out, _ = pm(capsys, "versions", str(n), *flags)
    assert "published v3 " in out and f"by dana: {path} commit " in out


def bridge_year(bridge: Bridge, incident: int) -> str:
    return str(bridge.incident(incident)["opened_at"])[:4]
