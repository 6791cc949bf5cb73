"""Service settings from flags and environment (flags win). The names are a public contract."""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bridge.core.secrets import Secret

ENV_PREFIX = "INCIDENT_BRIDGE_"
DEFAULT_LISTEN = "127.0.0.1:9096"
DEFAULT_DB = "./data/incident-bridge.db"
DEFAULT_MAX_BODY = 8 * 1024 * 1024


class ConfigError(Exception):
    """A setting is invalid; the message names the flag or variable."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 9096
    db: Path = Path(DEFAULT_DB)
    webhook_token: Secret | None = None
    basic_user: str | None = None
    basic_password: Secret | None = None
    api_token: Secret | None = None
    insecure_no_auth: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY
    reopen_window_s: float = 3600.0
    log_format: str = "text"
    log_level: str = "info"
    body_retention_s: float = 7 * 86400.0
    sqlite_synchronous: str = "FULL"
    shutdown_timeout_s: float = 10.0
    rules: tuple[Path, ...] = ()
    templates: Path | None = None
    external_url: str = ""
    watch_rules: bool = False

    @property
    def base_url(self) -> str:
        """Where people reach this service (links in notifications)."""
        return self.external_url.rstrip("/") or f"http://{self.listen}"

    @property
    def has_webhook_auth(self) -> bool:
        return self.webhook_token is not None or self.basic_password is not None

    @property
    def listen(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def default_rules() -> tuple[Path, ...]:
    """./rules when the working directory has one, else the example rules shipped with the
    package; none at all means the built-in policy (one incident per Alertmanager group)."""
    local = Path("rules")
    if local.is_dir():
        return (local,)
    package = Path(__file__).resolve().parent
    for candidate in (package / "_embedded" / "rules", package.parent / "rules"):
        if candidate.is_dir():
            return (candidate,)
    return ()


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen: {value!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_secret_file(path: str, flag: str) -> Secret:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot read {path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"{flag}: {path} is empty")
    return Secret(value)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--listen", help=f"HOST:PORT to listen on (env {ENV_PREFIX}LISTEN, default {DEFAULT_LISTEN})")
    a("--db", help=f"SQLite database file (env {ENV_PREFIX}DB, default {DEFAULT_DB})")
    a(
        "--webhook-token-file",
        help=f"file holding the webhook bearer token (or env {ENV_PREFIX}WEBHOOK_TOKEN)",
    )
    a(
        "--webhook-basic-user",
        help=f"basic-auth user for webhooks (env {ENV_PREFIX}WEBHOOK_BASIC_USER)",
    )
    a(
        "--webhook-basic-password-file",
        help=f"file holding the basic-auth password (or env {ENV_PREFIX}WEBHOOK_BASIC_PASSWORD)",
    )
    a(
        "--api-token-file",
        help=f"file holding the read API bearer token (or env {ENV_PREFIX}API_TOKEN)",
    )
    a(
        "--insecure-no-auth",
        action="store_true",
        default=None,
        help="allow listening on a non-loopback address without webhook credentials",
    )
    a(
        "--max-body-bytes",
        type=int,
        help=f"webhook body limit (env {ENV_PREFIX}MAX_BODY_BYTES, default 8 MiB)",
    )
    a(
        "--reopen-window",
        type=float,
        help=f"seconds a mitigated incident reopens (env {ENV_PREFIX}REOPEN_WINDOW, default 3600)",
    )
    a(
        "--log-format",
        choices=["text", "json"],
        help=f"log line format (env {ENV_PREFIX}LOG_FORMAT)",
    )
    a(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help=f"env {ENV_PREFIX}LOG_LEVEL",
    )
    a(
        "--body-retention",
        type=float,
        help=f"seconds raw webhook bodies are kept (env {ENV_PREFIX}BODY_RETENTION, default 7 days)",
    )
    a(
        "--rules",
        action="append",
        help=f"rule file or directory, repeatable (env {ENV_PREFIX}RULES, colon-separated; "
        "default ./rules if it exists, else the bundled example rules)",
    )
    a(
        "--templates",
        help=f"folder of templates overriding the bundled ones (env {ENV_PREFIX}TEMPLATES)",
    )
    a(
        "--external-url",
        help=f"URL people use to reach this service, for links in messages (env {ENV_PREFIX}EXTERNAL_URL)",
    )
    a(
        "--watch-rules",
        action="store_true",
        default=None,
        help=f"reload the rules when their files change (env {ENV_PREFIX}WATCH_RULES)",
    )
    a(
        "--sqlite-synchronous",
        choices=["NORMAL", "FULL", "EXTRA"],
        help=f"SQLite synchronous mode (env {ENV_PREFIX}SQLITE_SYNCHRONOUS, default FULL)",
    )


def _number(
    value: str | float | int | None, name: str, kind: type[float] | type[int]
) -> float | int | None:
    if value is None or isinstance(value, int | float):
        return value
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"{name}: {value!r} is not a number") from None


def settings_from(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """Build settings; flags win over ``INCIDENT_BRIDGE_*`` variables, which win over defaults."""
    env = os.environ if env is None else env

    def pick(flag: object, name: str) -> str | None:
        if flag is not None:
            return str(flag)
        return env.get(ENV_PREFIX + name) or None

    host, port = parse_listen(pick(args.listen, "LISTEN") or DEFAULT_LISTEN)
    token: Secret | None = None
    if args.webhook_token_file:
        token = _read_secret_file(args.webhook_token_file, "--webhook-token-file")
    elif env.get(ENV_PREFIX + "WEBHOOK_TOKEN"):
        token = Secret(env[ENV_PREFIX + "WEBHOOK_TOKEN"])
    user = pick(args.webhook_basic_user, "WEBHOOK_BASIC_USER")
    password: Secret | None = None
    if args.webhook_basic_password_file:
        password = _read_secret_file(
            args.webhook_basic_password_file, "--webhook-basic-password-file"
        )
    elif env.get(ENV_PREFIX + "WEBHOOK_BASIC_PASSWORD"):
        password = Secret(env[ENV_PREFIX + "WEBHOOK_BASIC_PASSWORD"])
    if (user is None) != (password is None):
        raise ConfigError("basic auth needs both --webhook-basic-user and a password")
    api_token: Secret | None = None
    if args.api_token_file:
        api_token = _read_secret_file(args.api_token_file, "--api-token-file")
    elif env.get(ENV_PREFIX + "API_TOKEN"):
        api_token = Secret(env[ENV_PREFIX + "API_TOKEN"])
    insecure = bool(args.insecure_no_auth) or env.get(ENV_PREFIX + "INSECURE_NO_AUTH", "") in (
        "1",
        "true",
        "yes",
    )
    max_body = _number(pick(args.max_body_bytes, "MAX_BODY_BYTES"), "--max-body-bytes", int)
    reopen = _number(pick(args.reopen_window, "REOPEN_WINDOW"), "--reopen-window", float)
    retention = _number(pick(args.body_retention, "BODY_RETENTION"), "--body-retention", float)
    rules_raw: list[str] = list(args.rules or [])
    if not rules_raw and env.get(ENV_PREFIX + "RULES"):
        rules_raw = [p for p in env[ENV_PREFIX + "RULES"].split(":") if p]
    watch = bool(args.watch_rules) or env.get(ENV_PREFIX + "WATCH_RULES", "") in (
        "1",
        "true",
        "yes",
    )
    templates = pick(args.templates, "TEMPLATES")
    settings = Settings(
        rules=tuple(Path(p) for p in rules_raw) or default_rules(),
        templates=Path(templates) if templates else None,
        external_url=pick(args.external_url, "EXTERNAL_URL") or "",
        watch_rules=watch,
        host=host,
        port=port,
        db=Path(pick(args.db, "DB") or DEFAULT_DB),
        webhook_token=token,
        basic_user=user,
        basic_password=password,
        api_token=api_token,
        insecure_no_auth=insecure,
        max_body_bytes=int(max_body) if max_body is not None else DEFAULT_MAX_BODY,
        reopen_window_s=float(reopen) if reopen is not None else 3600.0,
        log_format=pick(args.log_format, "LOG_FORMAT") or "text",
        log_level=pick(args.log_level, "LOG_LEVEL") or "info",
        body_retention_s=float(retention) if retention is not None else 7 * 86400.0,
        sqlite_synchronous=(pick(args.sqlite_synchronous, "SQLITE_SYNCHRONOUS") or "FULL").upper(),
    )
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    if settings.log_format not in ("text", "json"):
        raise ConfigError(f"{ENV_PREFIX}LOG_FORMAT: {settings.log_format!r} is not text or json")
    if settings.sqlite_synchronous not in ("NORMAL", "FULL", "EXTRA"):
        raise ConfigError(
            f"{ENV_PREFIX}SQLITE_SYNCHRONOUS: {settings.sqlite_synchronous!r} is not NORMAL, FULL or EXTRA"
        )
    if settings.max_body_bytes < 1024:
        raise ConfigError("--max-body-bytes: must be at least 1024")
    if settings.reopen_window_s < 0:
        raise ConfigError("--reopen-window: must not be negative")
    if (
        not settings.has_webhook_auth
        and not is_loopback(settings.host)
        and not settings.insecure_no_auth
    ):
        raise ConfigError(
            f"refusing to listen on {settings.listen} without webhook credentials: anyone who can "
            f"reach it could open incidents. Set {ENV_PREFIX}WEBHOOK_TOKEN (or "
            "--webhook-token-file, or basic auth), listen on a loopback address, or pass "
            "--insecure-no-auth"
        )
