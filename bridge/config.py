"""Service settings from flags and environment (flags win). The names are a public contract.

Each setting is one record in ``OPTIONS``: its flag, its variable, how it is read and checked, its
--help text and its row in docs/configuration.md all come from that record.
``python -m bridge.config`` prints that table.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bridge.core.dburl import DatabaseUrl, UrlError, is_postgres
from bridge.core.secrets import Secret
from bridge.private_files import UnsafeFile, check_beside

ENV_PREFIX = "INCIDENT_BRIDGE_"
DEFAULT_LISTEN = "127.0.0.1:9096"
DEFAULT_DB = "./data/incident-bridge.db"
DEFAULT_MAX_BODY = 8 * 1024 * 1024


class ConfigError(Exception):
    """A setting is invalid; the message names the flag or variable."""


@dataclass(frozen=True)
class ApiToken:
    """A named API token: its name is the actor of the changes made with it, its scope ``read``
    or ``write``. ``act_as`` (scope ``act-as`` in the file: a write token for an integration,
    such as a chat bot, that acts for people) lets a request name another actor."""

    name: str
    scope: Literal["read", "write"]
    secret: Secret
    act_as: bool = False


# The scopes of --api-tokens-file: act-as is write, and may name the actor of a change.
TOKEN_SCOPES = ("read", "write", "act-as")


_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}")


def read_api_tokens(path: str) -> tuple[ApiToken, ...]:
    """``--api-tokens-file``: one token a line, ``NAME SCOPE TOKEN`` (``#`` starts a comment)."""
    flag = "--api-tokens-file"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{flag}: {path} is not UTF-8 text") from None
    tokens: list[ApiToken] = []
    names: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split() if not line.lstrip().startswith("#") else []
        if not words:
            continue
        where = f"{flag}: {path}:{number}"
        if len(words) != 3:
            # The line is not echoed: it may hold a token.
            raise ConfigError(f"{where}: expected NAME SCOPE TOKEN ({len(words)} fields)")
        name, scope, secret = words
        if not _TOKEN_NAME.fullmatch(name):
            raise ConfigError(f"{where}: name {name!r}: letters, digits and _.@:- (at most 64)")
        if scope not in TOKEN_SCOPES:
            raise ConfigError(f"{where}: scope {scope!r} is not read, write or act-as")
        if name in names:
            raise ConfigError(f"{where}: the name {name!r} is used twice")
        if len(secret) < 16:
            raise ConfigError(f"{where}: the token of {name!r} is shorter than 16 characters")
        names.add(name)
        writes = scope in ("write", "act-as")
        tokens.append(
            ApiToken(name, "write" if writes else "read", Secret(secret), scope == "act-as")
        )
    return tuple(tokens)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 9096
    # SQLite's file; with PostgreSQL, the base name of the files kept beside a database
    # (``<data-dir>/incident-bridge``: its .api-token and .session-key, and kb/ beside them)
    db: Path = Path(DEFAULT_DB)
    database_url: DatabaseUrl | None = None  # PostgreSQL (docs/postgresql.md); None: SQLite
    db_password: Secret | None = None
    db_pool_size: int = 10
    db_statement_timeout_s: float = 30.0
    data_dir: Path = Path("./data")
    webhook_token: Secret | None = None
    basic_user: str | None = None
    basic_password: Secret | None = None
    api_token: Secret | None = None
    api_read_token: Secret | None = None
    api_tokens: tuple[ApiToken, ...] = ()
    insecure_no_auth: bool = False
    insecure_open_read_api: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY
    reopen_window_s: float = 3600.0
    log_format: str = "text"
    log_level: str = "info"
    body_retention_s: float = 7 * 86400.0
    sqlite_synchronous: str = "FULL"
    shutdown_timeout_s: float = 10.0
    shutdown_delay_s: float = 0.0
    max_bodies_bytes: int = 64 * 1024 * 1024
    max_connections: int = 1000
    idle_timeout_s: float = 30.0
    # what one address, a silent new connection and the live streams may hold (Limits)
    max_connections_per_source: int = 100
    header_timeout_s: float = 5.0
    max_live_streams: int = 200
    max_live_streams_per_viewer: int = 10
    webhook_listen: tuple[str, int] | None = None
    # the public status page (docs/status-page.md): its own listener, and its title
    status_listen: tuple[str, int] | None = None
    status_title: str = "Service status"
    rules: tuple[Path, ...] = ()
    templates: Path | None = None
    external_url: str = ""
    watch_rules: bool = False
    # after the incident: the PromQL checks' Prometheus, the knowledge base's folder and remote
    prometheus_url: str = ""
    prometheus_token: Secret | None = None
    kb_dir: Path | None = None  # None: `kb` beside the database (kb_folder)
    kb_remote: str = ""
    kb_author: str = "incident-bridge <incident-bridge@localhost>"
    kb_database_only: bool = False
    kb_allow_raw_html: bool = False
    weekly_review: bool = False  # the insights of each week into the knowledge base
    # reconciliation with Alertmanager's API: its peers (one cluster), their credentials
    alertmanager_urls: tuple[str, ...] = ()
    alertmanager_token: Secret | None = None
    alertmanager_basic_user: str | None = None
    alertmanager_basic_password: Secret | None = None
    alertmanager_ca_file: Path | None = None
    reconcile_interval_s: float = 60.0
    scheduler_interval_s: float = 15.0
    alertmanager_grace_s: float = 300.0
    reconcile_min_age_s: float = 300.0
    # the web pages: a header a trusted reverse proxy sets to the signed-in user (opt-in)
    web_user_header: str = ""
    web_user_header_scope: str = "read"
    # the proxies (networks) that may set that header; none given: loopback only
    web_user_header_trusted_proxies: tuple[str, ...] = ()
    # the files the API tokens came from, (field, path): a reload reads them again
    token_files: tuple[tuple[str, str], ...] = ()
    # chat commands (docs/chat.md): Slack's signing secret, Mattermost's command token, and the
    # people who can only look
    slack_signing_secret: Secret | None = None
    mattermost_command_token: Secret | None = None
    chat_read_only_users: tuple[str, ...] = ()
    # replicas on one PostgreSQL database (docs/postgresql.md#replicas): this process's name
    # in the leases and the replicas' table, and the web sessions' signing key they share
    replica_id: str = dataclasses.field(default_factory=lambda: default_replica_id())
    session_key: Secret | None = None

    @property
    def kb_folder(self) -> Path | None:
        """The knowledge base's folder: ``--kb-dir``, else ``kb`` beside the database, so that
        the defaults publish postmortems into files too; None with ``--kb-database-only``."""
        if self.kb_database_only:
            return None
        return self.kb_dir if self.kb_dir is not None else self.db.parent / "kb"

    @property
    def base_url(self) -> str | None:
        """Where people reach this service, for the links in messages: ``--external-url``, else
        the listen address; None for a wildcard address (0.0.0.0, ::), which nobody can open."""
        if self.external_url:
            return self.external_url.rstrip("/")
        if self.host in ("0.0.0.0", "::", ""):
            return None
        return f"http://{self.listen}"

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


def parse_db(value: str) -> Path | DatabaseUrl:
    """``--db``: a ``postgresql://`` URL, or SQLite's file as a path or ``sqlite:///path``."""
    if is_postgres(value):
        try:
            return DatabaseUrl.parse(value)
        except UrlError as exc:
            raise ConfigError(f"--db: {exc}") from None
    if value.startswith("sqlite://"):
        path = value.removeprefix("sqlite://")
        if not path.startswith("/") or path == "/":
            raise ConfigError("--db: sqlite:///PATH names the file by an absolute path")
        return Path(path)
    if "://" in value:
        raise ConfigError(
            "--db: a path, sqlite:///PATH or postgresql://USER@HOST:PORT/DBNAME "
            f"(not {value.split('://', 1)[0]}://)"
        )
    return Path(value)


def api_token_path(db: Path) -> Path:
    """Where the service on ``db`` keeps the API token it generated (no token configured)."""
    return db.with_name(db.name + ".api-token")


def default_replica_id() -> str:
    """The host name (a pod's name in Kubernetes) and the pid: unique among the processes on
    one database, and telling which pod holds what."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _replica_id(value: str) -> str:
    value = value.strip()
    if not re.fullmatch(r"[A-Za-z0-9._:@-]{1,128}", value):
        raise ConfigError(
            f"--replica-id: {value!r}: 1 to 128 letters, digits and . _ : @ - (no spaces)"
        )
    return value


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen: {value!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _webhook_listen(value: str) -> tuple[str, int]:
    try:
        return parse_listen(value)
    except ConfigError:
        raise ConfigError(f"--webhook-listen: {value!r} is not HOST:PORT") from None


def _status_listen(value: str) -> tuple[str, int]:
    try:
        return parse_listen(value)
    except ConfigError:
        raise ConfigError(f"--status-listen: {value!r} is not HOST:PORT") from None


def _status_title(value: str) -> str:
    if not value.strip() or len(value) > 200 or not value.isprintable():
        raise ConfigError("--status-title: 1 to 200 printable characters")
    return value


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


def _alertmanager_url(value: str) -> str:
    """An http(s) URL with a host; shown without its password in every error."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value.strip())
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        shown = value.split("@")[-1] if "@" in value else value
        raise ConfigError(f"--alertmanager-url: {shown!r} is not an http:// or https:// URL")
    return value.strip().rstrip("/")


def _names_list(value: str) -> tuple[str, ...]:
    """``alice, slack:U123`` -> ("alice", "slack:U123")."""
    return tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))


def _networks(value: str) -> tuple[str, ...]:
    """``10.0.0.5, 10.1.0.0/16`` -> ("10.0.0.5/32", "10.1.0.0/16"); a wrong one is named."""
    found: list[str] = []
    for item in (i.strip() for i in value.split(",")):
        if not item:
            continue
        try:
            found.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(
                f"--web-user-header-trusted-proxy: {item!r} is not an address or a network"
            ) from None
    return tuple(dict.fromkeys(found))


def _header_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", value):
        raise ConfigError(f"--web-user-header: {value!r} is not an HTTP header name")
    if value.lower() in ("authorization", "cookie", "host"):
        raise ConfigError(f"--web-user-header: {value!r} cannot name the user")
    return value


# How a setting is given:
#   text    one value; ``parse`` turns the text of the flag or the variable into the field's value
#   number  one value; ``parse`` is int or float, and argparse already checks the flag with it
#   switch  a flag without value; the variable turns it on with 1, true or yes
#   secret  the flag names a file holding the secret, the variable holds the secret itself
#   paths   a repeatable flag; the variable separates the paths with ":"
#   urls    a repeatable flag; the variable separates the URLs with "," (a URL holds ":")
Kind = Literal["text", "number", "switch", "secret", "paths", "urls"]


@dataclass(frozen=True)
class Option:
    """One service setting. Unless its flag or variable gives a value, the ``Settings`` field keeps
    its default (or takes ``fallback()``, for a default that depends on where the service runs)."""

    name: str  # the Settings field
    flag: str
    env: str  # after ENV_PREFIX
    meaning: str  # Markdown for the docs table; --help shows it as plain text
    kind: Kind = "text"
    parse: Callable[[str], Any] = str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    default: str = ""  # the docs' default cell, when the field's default value does not say it
    fallback: Callable[[], Any] | None = None

    @property
    def var(self) -> str:
        return ENV_PREFIX + self.env


def _log_level(value: str) -> str:
    """The variable may say WARNING or WARN, as Python's logging does."""
    value = value.lower()
    return "warning" if value == "warn" else value


OPTIONS: tuple[Option, ...] = (
    Option(
        name="listen",  # one flag for two fields, host and port
        flag="--listen",
        env="LISTEN",
        parse=parse_listen,
        meaning="`HOST:PORT` to listen on (`[::1]:9096` for IPv6)",
    ),
    Option(
        name="db",
        flag="--db",
        env="DB",
        parse=parse_db,
        default=f"`{DEFAULT_DB}`",
        meaning=(
            "the database: SQLite's file (a path or `sqlite:///PATH`; a new one is created 0600, "
            "its directory 0700, with a `.lock` file beside it that keeps a second service off "
            "it), or PostgreSQL's `postgresql://USER@HOST:PORT/DBNAME?sslmode=...` "
            "([docs/postgresql.md](postgresql.md)); a password in the URL is refused on the "
            "command line (`ps` shows it), accepted in the variable, and masked everywhere"
        ),
    ),
    Option(
        name="db_password",
        flag="--db-password-file",
        env="DB_PASSWORD",
        kind="secret",
        meaning="PostgreSQL's password; the flag names a file holding it, the variable holds "
        "it. Without it libpq's own ways work: `PGPASSFILE`/`~/.pgpass`, a service file",
    ),
    Option(
        name="db_pool_size",
        flag="--db-pool-size",
        env="DB_POOL_SIZE",
        kind="number",
        parse=int,
        minimum=1,
        meaning="PostgreSQL: connections for reads (writes have one of their own); reads "
        "waiting beyond four times this many are refused with 503 at once",
    ),
    Option(
        name="db_statement_timeout_s",
        flag="--db-statement-timeout",
        env="DB_STATEMENT_TIMEOUT",
        kind="number",
        parse=float,
        minimum=0.1,
        meaning="PostgreSQL: seconds any one statement may run (`statement_timeout`); past "
        "it the request gets 503",
    ),
    Option(
        name="replica_id",
        flag="--replica-id",
        env="REPLICA_ID",
        parse=_replica_id,
        default="host name and pid (`<hostname>-<pid>`)",
        meaning="this process's name among the replicas on one PostgreSQL database: who holds "
        "a background loop's lease, the replicas `/-/ready` and the metrics list; unique per "
        "process (in Kubernetes the host name is the pod's name) "
        "([postgresql.md](postgresql.md#replicas))",
    ),
    Option(
        name="session_key",
        flag="--session-key-file",
        env="SESSION_KEY",
        kind="secret",
        meaning="the key that signs the web pages' session cookies (at least 32 characters; "
        "file, or the value in the variable), the same on every replica (a Kubernetes Secret). "
        "Without it: `<db>.session-key` on SQLite, one key kept in the database on PostgreSQL "
        "([web.md](web.md#who-may-see-and-do-what))",
    ),
    Option(
        name="data_dir",
        flag="--data-dir",
        env="DATA_DIR",
        parse=Path,
        default="`./data`",
        meaning="PostgreSQL: the folder of the files SQLite keeps beside its database "
        "(`kb/`; the API token and the session key are not files there: see "
        "`--api-token-file`, `--session-key-file`)",
    ),
    Option(
        name="webhook_token",
        flag="--webhook-token-file",
        env="WEBHOOK_TOKEN",
        kind="secret",
        meaning="bearer token Alertmanager must send (`http_config.authorization`); the flag "
        "names a file holding it, the variable holds the token itself",
    ),
    Option(
        name="basic_user",
        flag="--webhook-basic-user",
        env="WEBHOOK_BASIC_USER",
        meaning="basic-auth user (`http_config.basic_auth`)",
    ),
    Option(
        name="basic_password",
        flag="--webhook-basic-password-file",
        env="WEBHOOK_BASIC_PASSWORD",
        kind="secret",
        meaning="basic-auth password (file, or the value in the variable)",
    ),
    Option(
        name="api_token",
        flag="--api-token-file",
        env="API_TOKEN",
        kind="secret",
        meaning=(
            "the API token: reads and writes (`Authorization: Bearer <token>`). Without one, a "
            "token is generated at first start into `<db>.api-token` (0600), which the CLI uses "
            "on this machine; see [Authentication](#authentication)"
        ),
    ),
    Option(
        name="api_read_token",
        flag="--api-read-token-file",
        env="API_READ_TOKEN",
        kind="secret",
        meaning="a token that can only read the API (incidents, notifications, rules), for "
        "dashboards and people who look but do not act",
    ),
    Option(
        name="api_tokens",
        flag="--api-tokens-file",
        env="API_TOKENS_FILE",
        parse=read_api_tokens,
        default="none",
        meaning="named API tokens, one a line: `NAME SCOPE TOKEN` (scope `read`, `write`, or "
        "`act-as`: a write token that may name the actor; `#` comments). The name is the actor "
        "of what is done with the token; see [Authentication](#authentication)",
    ),
    Option(
        name="insecure_no_auth",
        flag="--insecure-no-auth",
        env="INSECURE_NO_AUTH",
        kind="switch",
        meaning="allow a non-loopback `--listen` without any webhook credential",
    ),
    Option(
        name="insecure_open_read_api",
        flag="--insecure-open-read-api",
        env="INSECURE_OPEN_READ_API",
        kind="switch",
        meaning="let anyone who can reach a non-loopback `--listen` read the API without a "
        "token (incidents, people's names and handles, the rules); writes still need the token",
    ),
    Option(
        name="max_body_bytes",
        flag="--max-body-bytes",
        env="MAX_BODY_BYTES",
        kind="number",
        parse=int,
        minimum=1024,
        default=f"`{DEFAULT_MAX_BODY}` (8 MiB)",
        meaning="webhook bodies above this get 413, without reading them whole",
    ),
    Option(
        name="max_bodies_bytes",
        flag="--max-bodies-bytes",
        env="MAX_BODIES_BYTES",
        kind="number",
        parse=int,
        minimum=1024,
        default="`67108864` (64 MiB)",
        meaning="webhook bodies held in memory at once, all requests together; a webhook that "
        "would go past it gets 503 with `Retry-After` (Alertmanager sends it again) without "
        "its body being read. Must be at least `--max-body-bytes`",
    ),
    Option(
        name="max_connections",
        flag="--max-connections",
        env="MAX_CONNECTIONS",
        kind="number",
        parse=int,
        minimum=1,
        meaning="open connections at most; at the limit a new one closes an idle connection "
        "of the address holding the most, or is closed at once when none is idle (summed up "
        "in one warning a minute). Each takes a file descriptor: see [Limits](#limits)",
    ),
    Option(
        name="idle_timeout_s",
        flag="--idle-timeout",
        env="IDLE_TIMEOUT",
        kind="number",
        parse=float,
        minimum=1,
        default="`30`",
        meaning="seconds a connection may stay open without a request in progress: a new one "
        "that has not sent its headers, or a kept-alive one between requests",
    ),
    Option(
        name="max_connections_per_source",
        flag="--max-connections-per-source",
        env="MAX_CONNECTIONS_PER_SOURCE",
        kind="number",
        parse=int,
        minimum=0,
        meaning="open connections at most from one client address (an IPv6 /64); one more "
        "is closed at once. `0`: no cap. "
        "Behind a reverse proxy every client has the proxy's address: see "
        "[Limits](#limits)",
    ),
    Option(
        name="header_timeout_s",
        flag="--header-timeout",
        env="HEADER_TIMEOUT",
        kind="number",
        parse=float,
        minimum=0.1,
        default="`5`",
        meaning="seconds a new connection has to send its first request line and headers; "
        "then it is closed (a kept-alive one waits `--idle-timeout` between requests)",
    ),
    Option(
        name="shutdown_delay_s",
        flag="--shutdown-delay",
        env="SHUTDOWN_DELAY",
        kind="number",
        parse=float,
        minimum=0,
        default="`0`",
        meaning="seconds between SIGTERM and closing the listeners: `/-/ready` answers 503 "
        "`stopping` while everything is still served, so that a load balancer (Kubernetes "
        "removes the pod from the Service's endpoints asynchronously) stops sending before "
        "connections are refused. The Helm chart sets 5; a second SIGTERM or SIGINT ends the "
        "wait ([docs/ha.md](ha.md#stopping))",
    ),
    Option(
        name="shutdown_timeout_s",
        flag="--shutdown-timeout",
        env="SHUTDOWN_TIMEOUT",
        kind="number",
        parse=float,
        minimum=0,
        default="`10`",
        meaning="seconds the requests in flight get to finish once the listeners are closed "
        "at a stop (a webhook whose body is still arriving is read, answered and committed); "
        "those still running then are closed. The outbox worker then gives its sends in "
        "flight up to 10 s more: a supervisor's kill timeout (Kubernetes' "
        "`terminationGracePeriodSeconds`) should exceed `--shutdown-delay` plus this plus 15",
    ),
    Option(
        name="webhook_listen",
        flag="--webhook-listen",
        env="WEBHOOK_LISTEN",
        parse=lambda value: _webhook_listen(value),
        meaning="`HOST:PORT` of a second listener for webhooks only (`POST /api/v1/alerts` "
        "and `/-/healthy`), with its own connections, caps and accept queue: point "
        "Alertmanager at it and no client of the pages or the API can crowd it out. The "
        "webhook path stays on `--listen` too",
    ),
    Option(
        name="status_listen",
        flag="--status-listen",
        env="STATUS_LISTEN",
        parse=lambda value: _status_listen(value),
        meaning="`HOST:PORT` of a second listener for the public status page only "
        "(`/status`, `/status/feed.atom`, `/status/status.css`; every other path 404), to "
        "expose it where the rest is not (docs/status-page.md). The page stays on `--listen` "
        "too",
    ),
    Option(
        name="status_title",
        flag="--status-title",
        env="STATUS_TITLE",
        parse=_status_title,
        meaning="the public status page's heading, and its Atom feed's title and author",
    ),
    Option(
        name="max_live_streams",
        flag="--max-live-streams",
        env="MAX_LIVE_STREAMS",
        kind="number",
        parse=int,
        minimum=1,
        meaning="the web pages' live streams open at once, and never more than half "
        "`--max-connections`; one more gets 503 and its page stays a plain page",
    ),
    Option(
        name="max_live_streams_per_viewer",
        flag="--max-live-streams-per-viewer",
        env="MAX_LIVE_STREAMS_PER_VIEWER",
        kind="number",
        parse=int,
        minimum=1,
        meaning="live streams at once of one signed-in person, or of one client address for "
        "those not signed in; one more gets 429",
    ),
    Option(
        name="reopen_window_s",
        flag="--reopen-window",
        env="REOPEN_WINDOW",
        kind="number",
        parse=float,
        minimum=0,
        meaning="seconds after mitigation during which a firing alert reopens the incident "
        "instead of opening a new one, for the built-in policy (no rule files); with rules, "
        "each route sets `reopen_window`",
    ),
    Option(
        name="log_format",
        flag="--log-format",
        env="LOG_FORMAT",
        choices=("text", "json"),
        meaning="`text` or `json`, one event per line on stderr",
    ),
    Option(
        name="log_level",
        flag="--log-level",
        env="LOG_LEVEL",
        choices=("debug", "info", "warning", "error"),
        parse=_log_level,
        meaning="`debug`, `info`, `warning`, `error`",
    ),
    Option(
        name="body_retention_s",
        flag="--body-retention",
        env="BODY_RETENTION",
        kind="number",
        parse=float,
        default="`604800` (7 days)",
        meaning="seconds the raw body of each accepted webhook is kept in the journal; "
        "`0` keeps none",
    ),
    Option(
        name="rules",
        flag="--rules",
        env="RULES",
        kind="paths",
        fallback=default_rules,
        default="`./rules` if it exists, else the bundled example rules",
        meaning="rule files or directories ([rules.md](rules.md)); with none, one incident per "
        "Alertmanager group and every message to the console",
    ),
    Option(
        name="watch_rules",
        flag="--watch-rules",
        env="WATCH_RULES",
        kind="switch",
        meaning="reload the rules when a rule file changes (checked every 2 s); SIGHUP and "
        "`POST /-/reload` always work",
    ),
    Option(
        name="templates",
        flag="--templates",
        env="TEMPLATES",
        parse=Path,
        meaning="a folder of `<target>/<event>.j2` templates that override the bundled ones "
        "([targets.md](targets.md))",
    ),
    Option(
        name="external_url",
        flag="--external-url",
        env="EXTERNAL_URL",
        default="`http://<listen>`",
        meaning=(
            "the URL people reach the service at: messages link to `<url>/incidents/<id>`. "
            "Without it the listen address is used, and a wildcard one (`0.0.0.0`) gives no "
            "link at all (with a warning at start)"
        ),
    ),
    Option(
        name="prometheus_url",
        flag="--prometheus-url",
        env="PROMETHEUS_URL",
        default="none",
        meaning="the Prometheus the follow-up's PromQL checks ask (`<url>/api/v1/query`); without "
        "it a route's `follow_up.checks` are recorded as not run ([followup.md](followup.md))",
    ),
    Option(
        name="prometheus_token",
        flag="--prometheus-token-file",
        env="PROMETHEUS_TOKEN",
        kind="secret",
        meaning="a bearer token for that Prometheus",
    ),
    Option(
        name="kb_dir",
        flag="--kb-dir",
        env="KB_DIR",
        parse=Path,
        default="`kb` beside `--db` (`./data/kb`)",
        meaning="the knowledge base: the folder postmortems are published into, committed when it "
        "is a Git repository; a folder that does not exist yet is created as a Git repository "
        "of its own at the first publication ([knowledge-base.md](knowledge-base.md))",
    ),
    Option(
        name="kb_remote",
        flag="--kb-remote",
        env="KB_REMOTE",
        default="none",
        meaning="a Git remote (name or URL) the knowledge base is pushed to after each publication, "
        "through the outbox (retried, never blocking)",
    ),
    Option(
        name="kb_author",
        flag="--kb-author",
        env="KB_AUTHOR",
        default="`incident-bridge <incident-bridge@localhost>`",
        meaning="the author of the knowledge base's commits, `Name <address>`; the person who "
        "published is named in the message",
    ),
    Option(
        name="kb_database_only",
        flag="--kb-database-only",
        env="KB_DATABASE_ONLY",
        kind="switch",
        meaning="publish postmortems into the database only: no folder, no commit; each is "
        "served at `/incidents/{id}/postmortem` (cannot be used with `--kb-dir`)",
    ),
    Option(
        name="kb_allow_raw_html",
        flag="--kb-allow-raw-html",
        env="KB_ALLOW_RAW_HTML",
        kind="switch",
        meaning="publish the narrative's Markdown verbatim, raw HTML and every link scheme "
        "included. Off, raw HTML (`<script>`) is written as text and links other than "
        "http, https and mailto (`javascript:`) are not links: a knowledge-base site that "
        "renders raw HTML would run them ([postmortems.md](postmortems.md#the-narratives-sections))",
    ),
    Option(
        name="weekly_review",
        flag="--weekly-review",
        env="WEEKLY_REVIEW",
        kind="switch",
        meaning="write the insights of each week into the knowledge base's folder, once, as "
        "`reviews/<Monday>.md` with `reviews/index.md` newest first, committed when it is a Git "
        "repository ([insights.md](insights.md#the-weekly-review)); nothing with "
        "`--kb-database-only`",
    ),
    Option(
        name="alertmanager_urls",
        flag="--alertmanager-url",
        env="ALERTMANAGER_URL",
        kind="urls",
        parse=_alertmanager_url,
        default="none",
        meaning="the Alertmanager whose API the reconciler polls (`<url>/api/v2/alerts`, "
        "`/api/v2/silences`) and where a route's `silence_on_ack` makes silences; give every "
        "peer of one HA cluster (any that answers is asked). Without it nothing is reconciled "
        "([reconcile.md](reconcile.md))",
    ),
    Option(
        name="alertmanager_token",
        flag="--alertmanager-token-file",
        env="ALERTMANAGER_TOKEN",
        kind="secret",
        meaning="a bearer token for that Alertmanager (or a proxy in front of it)",
    ),
    Option(
        name="alertmanager_basic_user",
        flag="--alertmanager-basic-user",
        env="ALERTMANAGER_BASIC_USER",
        meaning="basic auth user for that Alertmanager (with the password below)",
    ),
    Option(
        name="alertmanager_basic_password",
        flag="--alertmanager-basic-password-file",
        env="ALERTMANAGER_BASIC_PASSWORD",
        kind="secret",
        meaning="basic auth password for that Alertmanager",
    ),
    Option(
        name="alertmanager_ca_file",
        flag="--alertmanager-ca-file",
        env="ALERTMANAGER_CA_FILE",
        parse=Path,
        meaning="PEM file of the certificate authorities an `https://` Alertmanager's certificate "
        "is checked against (default: the system's)",
    ),
    Option(
        name="reconcile_interval_s",
        flag="--reconcile-interval",
        env="RECONCILE_INTERVAL",
        kind="number",
        parse=float,
        minimum=1,
        meaning="seconds between two polls of Alertmanager's API, at least 1 (each jittered by "
        "±10 %; longer, doubling up to 10 times this, while it is unreachable)",
    ),
    Option(
        name="scheduler_interval_s",
        flag="--scheduler-interval",
        env="SCHEDULER_INTERVAL",
        kind="number",
        parse=float,
        minimum=1,
        meaning="seconds between two looks of the scheduler at what is due (status-update "
        "reminders, escalations, the follow-up's openings and checks), at least 1; with "
        "replicas, another replica takes the scheduler over within 1.5 of these after its "
        "holder dies ([ha.md](ha.md))",
    ),
    Option(
        name="reconcile_min_age_s",
        flag="--reconcile-min-age",
        env="RECONCILE_MIN_AGE",
        kind="number",
        parse=float,
        minimum=0,
        meaning="seconds since an alert's last webhook before Alertmanager's API may resolve it "
        "(and only when two polls in a row and every peer that answers agree it is gone): a "
        "peer that Prometheus does not send to lists nothing",
    ),
    Option(
        name="alertmanager_grace_s",
        flag="--alertmanager-grace",
        env="ALERTMANAGER_GRACE",
        kind="number",
        parse=float,
        minimum=0,
        meaning="seconds an Alertmanager peer must have been up before its answer may resolve "
        "alerts: a peer that restarted lists nothing until Prometheus sends its alerts again "
        "(`resend_delay`, 1 minute by default)",
    ),
    Option(
        name="slack_signing_secret",
        flag="--slack-signing-secret-file",
        env="SLACK_SIGNING_SECRET",
        kind="secret",
        meaning="the Slack app's signing secret: every request to `/api/v1/chat/slack/*` is "
        "checked against it (HMAC-SHA256, 5 minutes). Without it the Slack routes answer 404 "
        "([chat.md](chat.md))",
    ),
    Option(
        name="mattermost_command_token",
        flag="--mattermost-command-token-file",
        env="MATTERMOST_COMMAND_TOKEN",
        kind="secret",
        meaning="the token of Mattermost's `/incident` slash command (also put in the buttons' "
        "context). Without it the Mattermost routes answer 404",
    ),
    Option(
        name="chat_read_only_users",
        flag="--chat-read-only-users",
        env="CHAT_READ_ONLY_USERS",
        parse=_names_list,
        default="none",
        meaning="people (names of the rotations, or `slack:U123`, `mattermost:<id>`) who can "
        "only look from chat: `status` and `help`, no changes; separated by `,`",
    ),
    Option(
        name="web_user_header",
        flag="--web-user-header",
        env="WEB_USER_HEADER",
        default="none",
        parse=_header_name,
        meaning="the web pages trust this request header (e.g. `X-Forwarded-User`) to name the "
        "person, as set by a reverse proxy that authenticates them; only when every request "
        "comes through that proxy, which must drop the header from clients "
        "([web.md](web.md#behind-a-reverse-proxy)). Without it people sign in with an API token",
    ),
    Option(
        name="web_user_header_scope",
        flag="--web-user-header-scope",
        env="WEB_USER_HEADER_SCOPE",
        choices=("read", "write"),
        meaning="what people named by `--web-user-header` may do: `read` the pages, or also "
        "`write` (act)",
    ),
    Option(
        name="web_user_header_trusted_proxies",
        flag="--web-user-header-trusted-proxy",
        env="WEB_USER_HEADER_TRUSTED_PROXY",
        parse=_networks,
        default="loopback (`127.0.0.0/8`, `::1`)",
        meaning="the addresses or networks (`10.0.0.5`, `10.1.0.0/16`, `::1`; separated by `,`) "
        "of the proxy that sets `--web-user-header`: the header from any other peer is refused "
        "(403, logged). Without it, only a proxy on this machine (loopback) is trusted "
        "([web.md](web.md#behind-a-reverse-proxy))",
    ),
    Option(
        name="sqlite_synchronous",
        flag="--sqlite-synchronous",
        env="SQLITE_SYNCHRONOUS",
        parse=str.upper,
        choices=("NORMAL", "FULL", "EXTRA"),
        meaning="SQLite `synchronous` mode; `FULL` survives power loss, `NORMAL` survives a "
        "crashed process but may lose the last commits on power loss",
    ),
)

_TRUE = ("1", "true", "yes")
_FLAG_NOTE: dict[Kind, str] = {"paths": " (repeatable)", "urls": " (repeatable)"}
_ENV_NOTE: dict[Kind, str] = {
    "switch": " (`1`/`true`/`yes`)",
    "paths": " (paths separated by `:`)",
    "urls": " (URLs separated by `,`)",
}


def _dest(option: Option) -> str:
    return option.flag.removeprefix("--").replace("-", "_")


def _default_cell(option: Option) -> str:
    if option.default:
        return option.default
    value = getattr(Settings(), option.name)
    if value is None:
        return "none"
    if value is False:
        return "off"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _plain(markdown: str) -> str:
    """Markdown cell text as --help shows it: links become their text, code loses its quotes."""
    return re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", markdown).replace("`", "")


def _help(option: Option) -> str:
    repeatable = "repeatable; " if option.kind in ("paths", "urls") else ""
    env = f"env {option.var}{_ENV_NOTE.get(option.kind, '')}"
    text = f"{option.meaning} [{repeatable}{env}; default {_default_cell(option)}]"
    return _plain(text).replace("%", "%%")  # argparse formats help with %


def options_markdown() -> str:
    """The flag table of docs/configuration.md."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for o in OPTIONS:
        flag = f"`{o.flag}`{_FLAG_NOTE.get(o.kind, '')}"
        env = f"`{o.var}`{_ENV_NOTE.get(o.kind, '')}"
        rows.append(f"| {flag} | {env} | {_default_cell(o)} | {o.meaning} |")
    return "\n".join(rows) + "\n"


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    for option in OPTIONS:
        kwargs: dict[str, Any] = {"help": _help(option)}
        if option.kind == "switch":
            kwargs.update(action="store_true", default=None)
        elif option.kind in ("paths", "urls"):
            kwargs["action"] = "append"
        elif option.kind == "number":
            kwargs["type"] = option.parse
        if option.choices:
            kwargs["choices"] = option.choices
        parser.add_argument(option.flag, **kwargs)


def _read(option: Option, given: Any, text: str) -> Any:
    """The value from the flag (``given``, as argparse left it), else from the variable's
    ``text``; None when neither sets it. An empty variable sets nothing, nor does an empty
    single-value flag."""
    if option.kind == "switch":
        return bool(given) or text in _TRUE
    if option.kind == "secret":
        if given:
            return _read_secret_file(given, option.flag)
        # Trimmed like the file: a Kubernetes secret often ends with a newline.
        text = text.strip()
        return Secret(text) if text else None
    if option.kind == "paths":
        paths = list(given or []) or [p for p in text.split(":") if p]
        return tuple(Path(p) for p in paths) or None
    if option.kind == "urls":
        urls = list(given or []) or [u.strip() for u in text.split(",") if u.strip()]
        return tuple(option.parse(u) for u in urls) or None
    if given is None:
        given = text
    if given == "":
        return None
    if not isinstance(given, str):  # a number flag argparse has parsed
        return given
    if option.kind == "text":  # its parser raises its own ConfigError (parse_listen)
        return option.parse(given)
    try:
        return option.parse(given)
    except ValueError:
        raise ConfigError(f"{option.flag}: {given!r} is not a number") from None


def settings_from(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """Build settings; flags win over ``INCIDENT_BRIDGE_*`` variables, which win over defaults."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for option in OPTIONS:
        value = _read(option, getattr(args, _dest(option)), env.get(option.var, ""))
        if value is None and option.fallback is not None:
            value = option.fallback()
        if value is not None:
            values[option.name] = value
    if "listen" in values:  # the one flag that sets two fields
        values["host"], values["port"] = values.pop("listen")
    if isinstance(values.get("db"), DatabaseUrl):
        url: DatabaseUrl = values.pop("db")
        if url.has_password and getattr(args, "db", None):
            raise ConfigError(
                f"--db: {url.masked}: a password in the URL on the command line shows in `ps`; "
                f"use --db-password-file, PGPASSFILE, or the URL in {ENV_PREFIX}DB"
            )
        if url.has_password and "db_password" in values:
            raise ConfigError("--db-password-file: the URL in --db has a password already")
        values["database_url"] = url
        values["db"] = values.get("data_dir", Settings.data_dir) / "incident-bridge"
    values["token_files"] = _token_files(args, env)
    settings = Settings(**values)
    validate(settings)
    return settings


# The API tokens a reload reads again from their files (a variable cannot change in a running
# process): a token removed or changed there stops working at the reload, not the next start.
RELOADED_TOKENS = ("api_token", "api_read_token", "api_tokens")


def _token_files(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    files = []
    for option in OPTIONS:
        if option.name not in RELOADED_TOKENS:
            continue
        given = getattr(args, _dest(option), None)
        if not given and option.kind != "secret":  # --api-tokens-file's variable is a path too
            given = env.get(option.var, "")
        if given:
            files.append((option.name, str(given)))
    return tuple(files)


def reread_tokens(settings: Settings) -> Settings:
    """The settings with the API tokens read again from the files they came from; raises
    ``ConfigError`` (naming the file) and changes nothing when one cannot be read."""
    changed: dict[str, Any] = {}
    for name, path in settings.token_files:
        option = next(o for o in OPTIONS if o.name == name)
        if option.kind == "secret":
            changed[name] = _read_secret_file(path, option.flag)
        else:
            changed[name] = option.parse(path)
    return dataclasses.replace(settings, **changed)


def _one_of(choices: tuple[str, ...]) -> str:
    *rest, last = choices
    return f"{', '.join(rest)} or {last}" if rest else last


def validate(settings: Settings) -> None:
    if (settings.basic_user is None) != (settings.basic_password is None):
        raise ConfigError("basic auth needs both --webhook-basic-user and a password")
    for option in OPTIONS:
        value = getattr(settings, option.name)
        # argparse has checked the flag's choices, so a wrong value came from the variable.
        if option.choices and value not in option.choices:
            raise ConfigError(f"{option.var}: {value!r} is not {_one_of(option.choices)}")
        if option.minimum is not None and value < option.minimum:
            limit = f"be at least {option.minimum}" if option.minimum else "not be negative"
            raise ConfigError(f"{option.flag}: must {limit}")
    if (settings.alertmanager_basic_user is None) != (settings.alertmanager_basic_password is None):
        raise ConfigError(
            "Alertmanager basic auth needs both --alertmanager-basic-user and a password"
        )
    if settings.alertmanager_token is not None and settings.alertmanager_basic_user is not None:
        raise ConfigError("Alertmanager: a bearer token or basic auth, not both")
    if settings.kb_database_only and settings.kb_dir is not None:
        raise ConfigError("--kb-database-only: no folder is written; remove --kb-dir")
    if settings.max_bodies_bytes < settings.max_body_bytes:
        raise ConfigError("--max-bodies-bytes: must be at least --max-body-bytes")
    if settings.session_key is not None and len(settings.session_key.reveal()) < 32:
        raise ConfigError("--session-key-file: the key is shorter than 32 characters")
    try:
        # the folder and the files beside the database: another user must not choose them
        check_beside(settings.db)
    except UnsafeFile as exc:
        flag = "--data-dir" if settings.database_url is not None else "--db"
        raise ConfigError(f"{flag}: {exc}") from None
    hook = settings.webhook_listen
    if (
        not settings.has_webhook_auth
        and not (is_loopback(settings.host) and (hook is None or is_loopback(hook[0])))
        and not settings.insecure_no_auth
    ):
        exposed = settings.listen if not is_loopback(settings.host) or hook is None else hook
        exposed = exposed if isinstance(exposed, str) else f"{exposed[0]}:{exposed[1]}"
        raise ConfigError(
            f"refusing to listen on {exposed} without webhook credentials: anyone who can "
            f"reach it could open incidents. Set {ENV_PREFIX}WEBHOOK_TOKEN (or "
            "--webhook-token-file, or basic auth), listen on a loopback address, or pass "
            "--insecure-no-auth"
        )


if __name__ == "__main__":
    print(options_markdown(), end="")
