from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bridge.cli import build_parser
from bridge.config import ConfigError, Settings, settings_from


def settings(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    return settings_from(build_parser().parse_args(["serve", *argv]), env or {})


def test_defaults() -> None:
    s = settings([])
    assert (s.host, s.port, str(s.db)) == ("127.0.0.1", 9096, "data/incident-bridge.db")
    assert s.max_body_bytes == 8 * 1024 * 1024 and s.reopen_window_s == 3600


def test_flags_win_over_environment(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-file\n")
    env = {
        "INCIDENT_BRIDGE_LISTEN": "127.0.0.2:1000",
        "INCIDENT_BRIDGE_DB": "/env.db",
        "INCIDENT_BRIDGE_WEBHOOK_TOKEN": "from-env",
    }
    s = settings(["--listen", "127.0.0.1:2000", "--webhook-token-file", str(token)], env)
    assert (s.port, str(s.db)) == (2000, "/env.db")
    assert s.webhook_token is not None and s.webhook_token.reveal() == "from-file"
    assert settings([], env).webhook_token.reveal() == "from-env"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (
            ["--listen", "0.0.0.0:9096"],
            {},
            "refusing to listen on 0.0.0.0:9096 without webhook credentials",
        ),
        (["--listen", "nonsense"], {}, "--listen"),
        (["--webhook-token-file", "/does/not/exist"], {}, "--webhook-token-file"),
        (["--webhook-basic-user", "am"], {}, "basic auth needs both"),
        ([], {"INCIDENT_BRIDGE_MAX_BODY_BYTES": "lots"}, "--max-body-bytes"),
        (["--max-body-bytes", "10"], {}, "at least 1024"),
    ],
)
def test_bad_settings_name_the_setting(argv: list[str], env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings(argv, env)
    assert needle in str(err.value)


def test_non_loopback_allowed_with_credentials_or_insecure_flag() -> None:
    assert (
        settings(["--listen", "0.0.0.0:1"], {"INCIDENT_BRIDGE_WEBHOOK_TOKEN": "t"}).host
        == "0.0.0.0"
    )
    assert settings(["--listen", "0.0.0.0:1", "--insecure-no-auth"]).insecure_no_auth


def test_settings_repr_hides_secrets() -> None:
    s = settings(
        [],
        {"INCIDENT_BRIDGE_WEBHOOK_TOKEN": "hunter2-token", "INCIDENT_BRIDGE_API_TOKEN": "api-xyz"},
    )
    assert "hunter2-token" not in repr(s) and "api-xyz" not in repr(s)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_refuses_public_listen_without_auth_and_says_why(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge",
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--db",
            str(tmp_path / "x.db"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_BRIDGE_")},
    )
    assert proc.returncode == 2
    assert "without webhook credentials" in proc.stderr and "--insecure-no-auth" in proc.stderr
    assert not (tmp_path / "x.db").exists()


def test_serve_with_no_arguments_works_and_stops_on_sigterm(tmp_path: Path) -> None:
    """Started with nothing but a working directory: creates ./data/incident-bridge.db."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_BRIDGE_")}
    env["INCIDENT_BRIDGE_LISTEN"] = f"127.0.0.1:{port}"  # the default port may be taken here
    env["INCIDENT_BRIDGE_WEBHOOK_TOKEN"] = "tok-do-not-log-me"
    env["INCIDENT_BRIDGE_LOG_FORMAT"] = "json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.1)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/alerts",
            data=b"{",
            method="POST",
            headers={"Authorization": "Bearer tok-do-not-log-me"},
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 400
        err.value.close()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert (tmp_path / "data" / "incident-bridge.db").exists()
    lines = [line for line in stderr.splitlines() if line.strip()]
    import json

    assert all(json.loads(line)["msg"] for line in lines), "every log line is one JSON event"
    assert "tok-do-not-log-me" not in stderr
