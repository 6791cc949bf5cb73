from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bridge.cli import build_parser
from bridge.config import (
    OPTIONS,
    ConfigError,
    Settings,
    add_serve_arguments,
    options_markdown,
    settings_from,
)

ROOT = Path(__file__).parent.parent


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
        (["--reopen-window", "-1"], {}, "--reopen-window: must not be negative"),
        ([], {"INCIDENT_BRIDGE_LOG_FORMAT": "xml"}, "INCIDENT_BRIDGE_LOG_FORMAT: 'xml'"),
        ([], {"INCIDENT_BRIDGE_LOG_LEVEL": "verbose"}, "INCIDENT_BRIDGE_LOG_LEVEL: 'verbose'"),
        ([], {"INCIDENT_BRIDGE_SQLITE_SYNCHRONOUS": "off"}, "is not NORMAL, FULL or EXTRA"),
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


def test_secrets_from_variables_are_trimmed_like_files(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    from_file = settings(["--webhook-token-file", str(token)]).webhook_token
    from_env = settings([], {"INCIDENT_BRIDGE_WEBHOOK_TOKEN": "t0ken\n"}).webhook_token
    assert from_file is not None and from_env is not None
    assert from_env.reveal() == from_file.reveal() == "t0ken"


def test_settings_repr_hides_secrets() -> None:
    s = settings(
        [],
        {"INCIDENT_BRIDGE_WEBHOOK_TOKEN": "hunter2-token", "INCIDENT_BRIDGE_API_TOKEN": "api-xyz"},
    )
    assert "hunter2-token" not in repr(s) and "api-xyz" not in repr(s)


def test_environment_values_of_each_kind() -> None:
    s = settings(
        [],
        {
            "INCIDENT_BRIDGE_INSECURE_NO_AUTH": "yes",
            "INCIDENT_BRIDGE_WATCH_RULES": "0",
            "INCIDENT_BRIDGE_RULES": "a::b",
            "INCIDENT_BRIDGE_SQLITE_SYNCHRONOUS": "normal",
            "INCIDENT_BRIDGE_MAX_BODY_BYTES": "2048",
            "INCIDENT_BRIDGE_BODY_RETENTION": "0",
            "INCIDENT_BRIDGE_TEMPLATES": "tpl",
            "INCIDENT_BRIDGE_WEBHOOK_BASIC_USER": "am",
            "INCIDENT_BRIDGE_WEBHOOK_BASIC_PASSWORD": "pw",
            "INCIDENT_BRIDGE_LOG_LEVEL": "WARN",  # as Python's logging spells it
        },
    )
    assert (s.insecure_no_auth, s.watch_rules) == (True, False)
    assert s.rules == (Path("a"), Path("b"))
    assert (s.sqlite_synchronous, s.max_body_bytes, s.body_retention_s) == ("NORMAL", 2048, 0)
    assert (s.templates, s.basic_user, s.log_level) == (Path("tpl"), "am", "warning")
    assert s.basic_password is not None and s.basic_password.reveal() == "pw"


def test_rules_flag_repeats_and_replaces_the_variable() -> None:
    s = settings(["--rules", "x", "--rules", "y"], {"INCIDENT_BRIDGE_RULES": "a:b"})
    assert s.rules == (Path("x"), Path("y"))


def test_empty_values_mean_the_default() -> None:
    empty = {option.var: "" for option in OPTIONS}
    assert settings(["--listen", "", "--db", ""], empty) == settings([])


def _table(markdown: str) -> str:
    lines = markdown.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("| flag |"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "".join(lines[start:end])


def test_docs_table_is_generated_from_the_options() -> None:
    # To regenerate: `.venv/bin/python -m bridge.config` prints the table (options_markdown());
    # paste it over the table in docs/configuration.md.
    documented = _table((ROOT / "docs" / "configuration.md").read_text(encoding="utf-8"))
    assert documented == options_markdown(), (
        "docs/configuration.md's flag table differs from bridge/config.py's OPTIONS; regenerate "
        "it with `python -m bridge.config` and paste the output over the table"
    )


def test_every_environment_variable_is_documented() -> None:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(path.read_text(encoding="utf-8") for path in docs)
    names = [option.var for option in OPTIONS]
    assert names and all(name.startswith("INCIDENT_BRIDGE_") for name in names)
    assert [name for name in names if name not in text] == []


def test_every_option_is_a_flag_that_names_its_variable() -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    helps = {flag: action.help for action in parser._actions for flag in action.option_strings}
    fields = set(Settings.__dataclass_fields__) | {"listen"}
    for option in OPTIONS:
        assert option.var in str(helps[option.flag]) and option.name in fields, option


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
