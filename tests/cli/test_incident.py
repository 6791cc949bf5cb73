"""``incident-bridge incident ...`` against a real ``serve`` process on a free loopback port: the
CLI runs in-process through ``main()`` (and as ``python -m bridge`` where the process matters),
so every answer it reads is the real API's. A small stdlib server stands in for the service
only where a real one cannot be made to misbehave on cue: a 503 or a dropped connection (the
retry), a redirect, an answer that is not the API's."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from tests.cli.conftest import at, run
from tests.integration.procs import Bridge, _clean_env, free_port

TEXT_OF = re.compile(r"#(\d+) note #(\d+) added by (\S+)")


pytestmark = pytest.mark.usefixtures("no_developer_settings")


_groups = iter(range(1, 10_000))


def open_incident(bridge: Bridge, summary: str = "disk full", **labels: str) -> int:
    """A new incident from a webhook of its own group; its id."""
    n = next(_groups)
    alert_labels = {"alertname": f"Cli{n}", "severity": "warning", **labels}
    payload = {
        "version": "4",
        "status": "firing",
        "receiver": "bridge",
        "groupKey": f"cli-test-{n}",
        "groupLabels": {"alertname": alert_labels["alertname"]},
        "commonLabels": alert_labels,
        "commonAnnotations": {"summary": summary},
        "externalURL": "http://alertmanager",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": "firing",
                "labels": alert_labels,
                "annotations": {"summary": summary},
                "startsAt": "2026-11-27T04:05:44Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
            }
        ],
    }
    answer = bridge.post_webhook(payload)
    assert answer.status == 200, answer.body
    incident_id: int = answer.json()["incidents"][0]["id"]
    return incident_id


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``incident-bridge incident ARGS``: exit code, stdout, stderr."""
    return run(capsys, "incident", *args)


def test_list_shows_a_table_and_its_filters(
    bridge: Bridge, capsys: pytest.CaptureFixture[str]
) -> None:
    first = open_incident(bridge, "checkout is slow", team="payments", severity="critical")
    second = open_incident(bridge, "a title far too long for one line of the table " * 3)
    code, out, err = cli(capsys, "list", *at(bridge))
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "STATUS", "SEVERITY", "AGE", "TITLE", "COMMANDER", "TEAM"]
    assert rows[0].startswith(f"#{second} ")  # newest first
    assert "…" in rows[0] and "too long for one line of the table a title" not in rows[0]
    commander = bridge.incident(first)["roles"].get("commander", ["unassigned"])[0]
    mine = next(r for r in rows if r.startswith(f"#{first} "))
    assert re.search(rf"triggered\s+sev\d\s+\d+s\s+checkout is slow\s+{commander}\s+payments", mine)

    code, out, _ = cli(capsys, "list", "--team", "payments", "--status", "triggered", *at(bridge))
    assert code == 0 and f"#{first} " in out and f"#{second} " not in out
    code, out, _ = cli(
        capsys, "list", "--team", "nobody", "--status", "closed,resolved", *at(bridge)
    )
    assert (code, out) == (0, "no incidents\n")
    code, out, _ = cli(capsys, "list", "--limit", "1", *at(bridge))
    assert code == 0 and out.splitlines()[-1] == f"(more: --before {second})"
    code, out, _ = cli(capsys, "list", "--limit", "1", "--before", str(second), *at(bridge))
    assert out.splitlines()[1].startswith(f"#{first} ")

    # -o json: the API's answer as it came
    code, out, _ = cli(capsys, "list", "--severity", "sev4,sev3", "-o", "json", *at(bridge))
    assert json.loads(out) == bridge.get_json("/api/v1/incidents?severity=sev4,sev3")


def test_every_change_says_what_it_did(bridge: Bridge, capsys: pytest.CaptureFixture[str]) -> None:
    n = open_incident(bridge)
    flags = at(bridge)

    def ok(*args: str) -> str:
        code, out, err = cli(capsys, *args, *flags)
        assert (code, err) == (0, ""), (args, err)
        return out.rstrip("\n")

    assert ok("ack", str(n), "--as", "alice") == f"#{n} acknowledged by alice"
    assert ok("ack", f"#{n}", "--as", "alice") == f"#{n}: nothing to change (already acknowledged)"
    took = ok("role", str(n), "commander", "alice", "--as", "alice")
    assert re.fullmatch(rf"#{n} (alice is commander|Commander handed over from \S+ to alice)", took)
    assert ok("role", str(n), "commander", "alice") == (
        f"#{n}: nothing to change (alice is already commander)"
    )
    assert ok("role", str(n), "responder", "bob", "--as", "bob") == f"#{n} bob joined as responder"
    assert ok("role", str(n), "scribe", "--release") == (
        f"#{n}: nothing to change (nobody holds the role scribe)"
    )
    assert ok("role", str(n), "scribe", "carol", "--as", "carol") == f"#{n} carol is scribe"
    assert ok("role", str(n), "scribe", "--release", "--as", "carol") == (
        f"#{n} carol released the role scribe; scribe is unassigned"
    )
    note = TEXT_OF.fullmatch(ok("note", str(n), "the", "disk", "is", "full", "--as", "bob"))
    assert note and note.group(1, 3) == (str(n), "bob")
    correction = ok("note", str(n), "--corrects", note.group(2), "the disk was full")
    assert re.fullmatch(rf"#{n} note #\d+ added by api, correcting #{note.group(2)}", correction)
    assert re.fullmatch(rf"#{n} decision #\d+ added by api", ok("decision", str(n), "roll back"))
    assert re.fullmatch(
        rf"#{n} action item #\d+ added by api \(owner: zed\)",
        ok("action", str(n), "add", "a", "disk", "alert", "--owner", "zed"),
    )
    update = ok("update", str(n), "rolling back", "--next", "30m", "--as", "dana")
    assert re.fullmatch(rf"#{n} status update #\d+ sent by dana; next one due \S+ \S+Z", update)
    assert ok("update", str(n), "still", "--next", "2030-01-01T00:00:00Z").startswith(f"#{n} ")
    assert ok("severity", str(n), "sev2", "--reason", "customers see it") == (
        f"#{n} severity raised from sev3 to sev2 by api: customers see it"
    )
    assert ok("severity", str(n), "sev2", "--reason", "again") == (
        f"#{n}: nothing to change (already sev2)"
    )
    assert (
        ok("mitigate", str(n), "--reason", "rolled back") == f"#{n} mitigated by api: rolled back"
    )
    # Mitigated, its follow-up opens with its checklist: resolving over it takes a reason.
    assert ok("resolve", str(n), "--reason", "tracked in OPS-7") == (
        f"#{n} resolved by api: tracked in OPS-7"
    )
    # A sev2 incident closes once its postmortem is published (the shipped policy): the close
    # says so, and publishing closes it, by the publisher.
    code, out, err = cli(capsys, "close", str(n), "--as", "alice", *flags)
    assert code == 1 and out == ""
    assert "409: cannot close: a postmortem is required for sev2" in err
    edit = ["edit", str(n), "--section", "summary", "--text", "The disk filled up."]
    assert main(["postmortem", *edit, *flags]) == 0
    assert main(["postmortem", "publish", str(n), "--as", "alice", *flags]) == 0
    published = capsys.readouterr().out.splitlines()
    assert published[-1] == f"#{n} closed by alice"
    assert ok("close", str(n)) == f"#{n}: nothing to change (already closed)"

    incident = bridge.incident(n)
    assert (incident["status"], incident["severity"]) == ("closed", "sev2")
    assert incident["roles"]["commander"] == ["alice"]
    assert incident["roles"]["responders"] == ["bob"]
    assert "scribe" not in incident["roles"]
    by_kind = {e["kind"]: e for e in incident["timeline"]}
    assert by_kind["action"]["data"] == {"text": "add a disk alert", "owner": "zed"}
    updates = [e for e in incident["timeline"] if e["kind"] == "status_update"]
    assert [e["actor"] for e in updates] == ["dana", "api"]
    assert updates[0]["data"]["next_update_at"] > updates[0]["time"]
    assert updates[1]["data"]["next_update_at"] == "2030-01-01T00:00:00Z"

    # show: the header, roles, alerts and the timeline with the correction on both sides
    code, out, _ = cli(capsys, "show", str(n), *flags)
    assert code == 0
    assert out.startswith(f"#{n} disk full\n")
    assert re.search(r"^status\s+closed$", out, re.M)
    assert re.search(r"^acknowledged\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  after \S+$", out, re.M)
    assert re.search(r"^closed\s+\S+ \S+Z  after \S+$", out, re.M)
    assert "open for" not in out and "next update" not in out  # closed: neither applies
    assert re.search(r"^  commander\s+alice$", out, re.M)
    assert re.search(r"^  scribe\s+unassigned$", out, re.M)
    assert re.search(r"^  responders\s+bob$", out, re.M)
    assert "Alerts       1 (1 firing, 0 resolved)" in out
    timeline = out.split("Timeline\n", 1)[1].splitlines()
    original = next(i for i, line in enumerate(timeline) if "Note: the disk is full" in line)
    assert re.search(
        rf"#{note.group(2)}\s+bob\s+note\s+Note: the disk is full$", timeline[original]
    )
    assert re.fullmatch(r"\s+\[corrected by #\d+: the disk was full\]", timeline[original + 1])
    assert any(
        re.search(rf"\s+api\s+note\s+Note \(corrects #{note.group(2)}\): the disk was full$", line)
        for line in timeline
    )
    assert re.search(r"\S+Z  #\d+\s+alice\s+status_changed\s+Closed by alice$", out, re.M)


def test_dismiss_closes_a_false_alarm_without_a_postmortem(
    bridge: Bridge, capsys: pytest.CaptureFixture[str]
) -> None:
    # A sev1 (critical) incident: its route requires a postmortem before a close.
    n = open_incident(bridge, "a test webhook", severity="critical")
    flags = at(bridge)
    code, out, err = cli(capsys, "dismiss", str(n), "--reason", "a test", "--as", "alice", *flags)
    assert (code, out, err) == (0, f"#{n} dismissed by alice: a test\n", "")
    code, out, _ = cli(capsys, "dismiss", str(n), "--reason", "a test", *flags)
    assert (code, out) == (0, f"#{n}: nothing to change (already dismissed)\n")
    incident = bridge.incident(n)
    assert (incident["status"], incident["resolved_at"]) == ("closed", None)
    assert incident["timeline"][-1]["kind"] == "dismissed"
    assert re.search(
        r'^incident_bridge_incidents_dismissed_total\{severity="sev1",team="none"\} [1-9]',
        bridge.metrics(),
        re.M,
    )
    # The reason is required; a resolved incident is closed, not dismissed.
    code, out, err = cli(capsys, "dismiss", str(n), *flags)
    assert (code, out) == (2, "") and "--reason" in err
    m = open_incident(bridge)
    assert cli(capsys, "resolve", str(m), *flags)[0] == 0
    code, out, err = cli(capsys, "dismiss", str(m), "--reason", "x", *flags)
    assert code == 1 and "409: cannot dismiss: the incident is resolved" in err


def test_show_while_open_and_as_json(bridge: Bridge, capsys: pytest.CaptureFixture[str]) -> None:
    n = open_incident(bridge, "queue backlog")
    code, out, _ = cli(capsys, "update", str(n), "looking", "--next", "1h", *at(bridge))
    assert code == 0
    code, out, _ = cli(capsys, "show", str(n), *at(bridge))
    assert code == 0
    assert re.search(r"^open for\s+\d+s$", out, re.M)
    assert re.search(r"^next update\s+\S+ \S+Z  \(in (59m\d\ds|1h00m)\)$", out, re.M)
    assert re.search(r"^acknowledged\s+-$", out, re.M)
    assert re.search(r"  alertmanager\s+opened\s+Incident opened: queue backlog$", out, re.M)

    code, out, _ = cli(capsys, "show", str(n), "-o", "json", *at(bridge))
    assert json.loads(out) == bridge.incident(n)
    code, out, _ = cli(capsys, "ack", str(n), "-o", "json", "--as", "erin", *at(bridge))
    answer = json.loads(out)
    assert answer["changed"] is True and answer["incident"]["status"] == "acknowledged"
    assert [(e["kind"], e["actor"]) for e in answer["events"]] == [("status_changed", "erin")]
    code, out, _ = cli(capsys, "ack", str(n), "-o", "json", *at(bridge))
    assert (json.loads(out)["changed"], json.loads(out)["events"]) == (False, [])


def test_api_errors_are_one_line_and_exit_1(
    bridge: Bridge, capsys: pytest.CaptureFixture[str]
) -> None:
    n = open_incident(bridge)
    # an illegal move: 409 with the moves allowed now
    code, out, err = cli(capsys, "close", str(n), *at(bridge))
    assert (code, out) == (1, "")
    assert err == (
        "incident-bridge: 409: cannot close: the incident is triggered; "
        "allowed now: acknowledge, mitigate, resolve\n"
    )
    # a field the API refuses is named
    code, out, err = cli(capsys, "update", str(n), "soon", "--next", "30s", *at(bridge))
    assert (code, out) == (1, "")
    assert err.startswith("incident-bridge: 400: next_update_in: ")
    code, _, err = cli(capsys, "list", "--status", "open", *at(bridge))
    assert code == 1 and err.startswith("incident-bridge: 400: status: 'open' is not one of")
    # what is not there: 404
    code, _, err = cli(capsys, "show", "999999", *at(bridge))
    assert (code, err) == (1, "incident-bridge: 404: no such incident\n")
    code, _, err = cli(capsys, "note", str(n), "x", "--corrects", "999999", *at(bridge))
    assert (code, err) == (
        1,
        "incident-bridge: 404: entry 999999 is not on this incident's timeline\n",
    )
    # a wrong token: 401, and how to give the right one
    code, _, err = cli(
        capsys, "ack", str(n), "--url", bridge.url, "--token", "not-the-token-at-all"
    )
    assert code == 1
    assert err == (
        "incident-bridge: 401: missing or wrong API token "
        "(give --token-file, --token or $INCIDENT_BRIDGE_API_TOKEN)\n"
    )
    assert bridge.incident(n)["status"] == "triggered"


def test_usage_errors_exit_2(bridge: Bridge, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (
        ["show", "twelve"],
        ["show", "0"],
        ["role", "1", "commander"],  # nobody to give it to
        ["role", "1", "boss", "alice"],
        ["severity", "1", "sev2"],  # --reason is required
        ["severity", "1", "sev9", "--reason", "x"],
        ["update", "1", "text", "--next", "soon"],
        ["note", "1"],
        ["ack", "1", "--idempotency-key", "nö"],
        ["ack", "1", "--token", "a", "--token-file", "b"],
        ["ack", "1", "--url", "ftp://example.com"],
        ["ack", "1", "--token-file", str(bridge.workdir / "no-such-file")],
    ):
        where = [] if "--url" in args else ["--url", bridge.url]
        code, out, err = cli(capsys, *args, *where)
        assert (code, out) == (2, ""), (args, out, err)
        assert err.strip() and "Traceback" not in err, args


def test_connection_refused_names_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, out, err = cli(capsys, "ack", "3", "--url", url, "--token", "x" * 20)
    assert (code, out) == (1, "")
    assert (
        err
        == f"incident-bridge: cannot reach {url}: connection refused (is the service running?)\n"
    )


def test_as_a_process_with_the_url_from_the_environment(bridge: Bridge) -> None:
    n = open_incident(bridge)
    env = _clean_env({"INCIDENT_BRIDGE_URL": bridge.url, "INCIDENT_BRIDGE_DB": str(bridge.db)})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bridge", "incident", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    done = run("ack", str(n), "--as", "zoe", "--reason", "on it")
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"#{n} acknowledged by zoe: on it\n",
        "",
    )
    refused = run("ack", str(n), "--url", f"http://127.0.0.1:{free_port()}")
    assert refused.returncode == 1 and "connection refused" in refused.stderr
    assert "Traceback" not in refused.stderr
    usage = run("role", str(n))
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_the_same_idempotency_key_changes_nothing_twice(
    bridge: Bridge, capsys: pytest.CaptureFixture[str]
) -> None:
    n = open_incident(bridge)
    key = ["--idempotency-key", f"note-once-{n}"]
    code, first, _ = cli(capsys, "note", str(n), "once", *key, *at(bridge))
    code, again, _ = cli(capsys, "note", str(n), "once", *key, *at(bridge))
    assert code == 0 and first == again  # the first answer, replayed
    notes = [e for e in bridge.incident(n)["timeline"] if e["kind"] == "note"]
    assert len(notes) == 1
    code, _, err = cli(capsys, "note", str(n), "another", *key, *at(bridge))
    assert code == 1 and err.startswith("incident-bridge: 422: Idempotency-Key: ")
    # without a key, each invocation is its own change
    for _ in range(2):
        assert cli(capsys, "note", str(n), "twice", *at(bridge))[0] == 0
    assert sum(e["kind"] == "note" for e in bridge.incident(n)["timeline"]) == 3


def test_named_tokens_read_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alice write alice-token-0123456789\ngrafana read grafana-token-0123456789\n")
    tokens.chmod(0o600)
    bridge = Bridge(tmp_path / "b", args=["--api-tokens-file", str(tokens)])
    bridge.start()
    try:
        n = open_incident(bridge)
        alice = tmp_path / "alice"
        alice.write_text("alice-token-0123456789\n")
        code, out, _ = cli(capsys, "ack", str(n), "--url", bridge.url, "--token-file", str(alice))
        assert (code, out) == (0, f"#{n} acknowledged by alice\n")  # the token's name acts
        reader = ["--url", bridge.url, "--token", "grafana-token-0123456789"]
        code, out, _ = cli(capsys, "list", *reader)
        assert code == 0 and f"#{n} " in out
        code, _, err = cli(capsys, "mitigate", str(n), *reader)
        assert (code, err) == (
            1,
            "incident-bridge: 403: the token 'grafana' can only read; changes need a write token\n",
        )
        code, _, err = cli(capsys, "list", "--url", bridge.url, "--token", "wrong-token-0123456")
        assert code == 1 and err.startswith("incident-bridge: 401: missing or wrong API token")
    finally:
        bridge.stop()


NOTE = {"id": 7, "kind": "note", "actor": "api", "text": "Note: hi", "data": {}}
NOTE_ADDED = json.dumps({"changed": True, "incident": {"id": 3}, "events": [NOTE]}).encode()
STORE_BUSY = b'{"error": "the store cannot answer now"}'
ROW = {"id": 5, "state": "pending", "incident_id": 3, "target": "hook", "tier": "general"}
OUTBOX = json.dumps(
    {
        "notifications": [
            {**ROW, "event": "opened", "attempts": 2, "last_error": "503 \x1b[2J\nboom"}
        ]
    }
).encode()


class _StandIn(http.server.ThreadingHTTPServer):
    """Stands in for the service: answers each request by the next step of ``plan`` (then
    ``ok``) and keeps every request's headers."""

    def __init__(self, plan: list[str]) -> None:
        self.plan = plan
        self.seen: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", 0), _StandInHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _StandInHandler(http.server.BaseHTTPRequestHandler):
    server: _StandIn
    STEPS: dict[str, tuple[int, str, bytes, dict[str, str]]] = {
        "ok": (200, "application/json", NOTE_ADDED, {}),
        "503": (503, "application/json", STORE_BUSY, {"Retry-After": "0"}),
        "redirect": (302, "text/plain", b"", {"Location": "http://elsewhere.example/api"}),
        "html": (200, "text/html", b"<!DOCTYPE html>\n<title>Welcome</title>", {}),
        "other-json": (200, "application/json", b'{"status": "success", "data": []}', {}),
        "outbox": (200, "application/json", OUTBOX, {}),
    }

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append(dict(self.headers.items()))
        step = self.server.plan.pop(0) if self.server.plan else "ok"
        if step == "drop":
            return  # HTTP/1.0: the connection closes without an answer
        status, kind, raw, headers = self.STEPS[step]
        self.send_response(status)
        for name, value in {"Content-Type": kind, **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def stand_in(plan: list[str]) -> Iterator[_StandIn]:
    server = _StandIn(plan)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.parametrize(
    ("plan", "code"),
    [(["503"], 0), (["drop"], 0), (["503", "503"], 1), (["drop", "drop"], 1)],
)
def test_a_change_is_retried_once_with_the_same_key(
    plan: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with stand_in(list(plan)) as server:
        got, out, err = cli(capsys, "note", "3", "hi", "--url", server.url, "--token", "t" * 20)
    assert got == code, err
    assert len(server.seen) == 2  # once again, never more
    keys = {h["Idempotency-Key"] for h in server.seen}
    assert len(keys) == 1 and keys.pop().startswith("incident-bridge-cli-")
    assert all(h["Authorization"] == "Bearer " + "t" * 20 for h in server.seen)
    if code == 0:
        assert out == "#3 note #7 added by api\n"
    elif "503" in plan:
        assert err == "incident-bridge: 503: the store cannot answer now\n"
    else:
        assert err == (
            f"incident-bridge: cannot reach {server.url}: the connection closed without an answer\n"
        )


def test_text_from_the_api_cannot_drive_the_terminal(
    bridge: Bridge, capsys: pytest.CaptureFixture[str]
) -> None:
    n = open_incident(bridge, "red \x1b[31malert\x1b[0m")
    code, out, _ = cli(capsys, "note", str(n), "bell\x07", *at(bridge))
    assert code == 0
    for args in (["list"], ["show", str(n)]):
        code, out, _ = cli(capsys, *args, *at(bridge))
        assert code == 0 and "\x1b" not in out and "\x07" not in out
        assert "red \\x1b[31malert\\x1b[0m" in out


@pytest.mark.parametrize(
    ("step", "message"),
    [
        # the token must not travel to wherever a redirect points
        ("redirect", "302: redirected to http://elsewhere.example/api; give the service's own URL as --url"),
        ("html", "answered 200 but not JSON: '<!DOCTYPE html>' (is --url the incident-bridge API?)"),
        ("other-json", "the answer is not the incident-bridge API's (KeyError: 'incidents')"),
    ],
)  # fmt: skip
def test_what_is_not_the_service_is_said_so(
    step: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with stand_in([step]) as server:
        code, out, err = cli(capsys, "list", "--url", server.url, "--token", "t" * 20)
    assert (code, out) == (1, "")
    assert message in err and err.count("\n") == 1
    assert len(server.seen) == 1


def test_notifications_share_the_client(bridge: Bridge, capsys: pytest.CaptureFixture[str]) -> None:
    """``notifications`` reads through the same client: the generated token, the errors."""
    code = main(["notifications", "list", "-o", "json", *at(bridge)])
    assert code == 0 and isinstance(json.loads(capsys.readouterr().out), list)
    code = main(["notifications", "retry", "999999", *at(bridge)])
    assert code == 1 and "999999: 404: " in capsys.readouterr().err
    # the channel messages tied to no incident, through the same commands
    code = main(["notifications", "list", "--messages", "-o", "json", *at(bridge)])
    assert code == 0 and json.loads(capsys.readouterr().out) == []
    code = main(["notifications", "retry", "--messages", "999999", *at(bridge)])
    assert code == 1 and "999999: 404: no such message" in capsys.readouterr().err


def test_notifications_show_what_a_target_answered_safely(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with stand_in(["outbox"]) as server:
        code = main(["notifications", "list", "--url", server.url, "--token", "t" * 20])
    out = capsys.readouterr().out
    assert code == 0 and "\x1b" not in out
    assert out.endswith("hook/general opened  attempts=2  503 \\x1b[2J boom\n")
