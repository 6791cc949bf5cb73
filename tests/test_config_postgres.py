"""``--db`` for PostgreSQL: the URL's forms, its password kept out of ``ps`` and out of every
message, the files a PostgreSQL service keeps in ``--data-dir``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import build_parser
from bridge.cli.apiclient import files_base
from bridge.cli.serve import credentials
from bridge.config import ConfigError, Settings, api_token_path, settings_from
from bridge.core.dburl import DatabaseUrl, UrlError
from bridge.core.secrets import mask
from tests.pgcluster import free_port

SECRET = "s3cr3t-Pa55"


def settings(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    return settings_from(build_parser().parse_args(["serve", *argv]), env or {})


def test_a_postgresql_url_selects_postgresql_and_the_files_go_to_the_data_dir(
    tmp_path: Path,
) -> None:
    s = settings(["--db", "postgresql://bridge@db.example:5432/bridge?sslmode=require"])
    assert s.database_url is not None
    assert s.database_url.conninfo.endswith("/bridge?sslmode=require")
    assert s.db == Path("data/incident-bridge")
    assert api_token_path(s.db) == Path("data/incident-bridge.api-token")
    assert s.kb_folder == Path("data/kb")
    s = settings(["--db", "postgres://bridge@db/bridge", "--data-dir", str(tmp_path)])
    assert s.db == tmp_path / "incident-bridge"
    # the CLI's API commands find the generated token where the service keeps it
    assert files_base("postgresql://bridge@db/bridge") == Path("data/incident-bridge")


def test_sqlite_is_a_path_or_a_sqlite_url(tmp_path: Path) -> None:
    assert settings(["--db", str(tmp_path / "x.db")]).database_url is None
    s = settings(["--db", f"sqlite://{tmp_path}/y.db"])
    assert (s.db, s.database_url) == (tmp_path / "y.db", None)
    with pytest.raises(ConfigError, match="absolute path"):
        settings(["--db", "sqlite://relative.db"])
    with pytest.raises(ConfigError, match="not mysql://"):
        settings(["--db", "mysql://root@db/x"])
    with pytest.raises(ConfigError, match="no database name"):
        settings(["--db", "postgresql://bridge@db:5432"])


def test_a_password_in_the_url_is_refused_on_the_command_line_without_showing_it() -> None:
    with pytest.raises(ConfigError) as refused:
        settings(["--db", f"postgresql://bridge:{SECRET}@db/bridge"])
    assert SECRET not in str(refused.value)
    assert "--db-password-file" in str(refused.value) and "***" in str(refused.value)


def test_a_password_in_the_variable_is_accepted_and_masked_everywhere() -> None:
    s = settings([], {"INCIDENT_BRIDGE_DB": f"postgresql://bridge:{SECRET}@db/bridge"})
    assert s.database_url is not None
    assert SECRET not in s.database_url.masked and SECRET not in repr(s.database_url)
    assert SECRET not in str(s) and SECRET not in repr(s)
    # the log lines mask every credential the settings hold
    assert SECRET in credentials(s)
    assert SECRET not in mask(f"connect to {s.database_url.conninfo} failed", credentials(s))
    # a URL without a password is no secret: the logs name the database as it is
    plain = settings(["--db", "postgresql://bridge@db/bridge"])
    assert plain.database_url is not None
    assert mask(plain.database_url.masked, credentials(plain)) == "postgresql://bridge@db/bridge"


def test_a_world_writable_data_dir_is_refused_by_its_flag(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match=r"^--data-dir: "):
        settings(["--db", "postgresql://bridge@db/bridge", "--data-dir", str(shared)])


def test_the_password_file_and_a_password_in_the_url_do_not_mix(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    s = settings(["--db", "postgresql://bridge@db/bridge", "--db-password-file", str(secret)])
    assert s.db_password is not None and s.db_password.reveal() == SECRET
    with pytest.raises(ConfigError, match="has a password already"):
        settings(
            ["--db-password-file", str(secret)],
            {"INCIDENT_BRIDGE_DB": f"postgresql://bridge:{SECRET}@db/bridge"},
        )


def test_a_password_parameter_of_the_query_is_masked_too() -> None:
    url = DatabaseUrl.parse(f"postgresql://bridge@db/bridge?password={SECRET}&sslmode=verify-full")
    assert url.has_password and SECRET not in url.masked
    assert "sslmode=verify-full" in url.masked
    with pytest.raises(UrlError) as bad:
        DatabaseUrl.parse(f"postgresql://bridge:{SECRET}@db:notaport/bridge")
    assert SECRET not in str(bad.value)


def test_serve_names_an_unreachable_database_without_its_password(tmp_path: Path) -> None:
    """The service cannot start: one line on stderr, the URL masked, exit status not 0."""
    port = free_port()  # nothing listens there
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "INCIDENT_BRIDGE_DB": f"postgresql://bridge:{SECRET}@127.0.0.1:{port}/bridge",
        "INCIDENT_BRIDGE_DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "serve", "--listen", f"127.0.0.1:{free_port()}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert SECRET not in output
    assert f"127.0.0.1:{port}" in output and "***" in output
