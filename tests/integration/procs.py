"""Real processes for black-box tests: the bridge and Alertmanager on free loopback ports.

Every process started here is reaped by the context manager that started it, also when the
test fails: SIGTERM, then SIGKILL after a grace period. Nothing binds outside 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from ruamel.yaml import YAML

T = TypeVar("T")
LOOPBACK = "127.0.0.1"
TOKEN = "integration-webhook-token"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
AMTOOL = "/usr/bin/amtool"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(path_or_name: str) -> str:
    """The binary's path; skip when it is missing, but fail under CI=true (CI must run it)."""
    found = shutil.which(path_or_name) or shutil.which(Path(path_or_name).name)
    if found:
        return found
    message = f"{path_or_name} is not installed (Debian: prometheus-alertmanager / prometheus)"
    if in_ci():
        pytest.fail(f"{message}; CI=true, so this test must run", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the caller retries if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except (OSError, ValueError) as exc:  # connection refused, bad JSON while starting
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} ({last!r})")
        time.sleep(interval)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Response:
    """One HTTP request; 4xx/5xx are returned, not raised. Redirects are NOT followed."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with opener.open(request, timeout=timeout) as resp:
            return Response(resp.status, dict(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return Response(err.code, dict(err.headers.items()), err.read())


def terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> int:
    """A process asked to end (SIGTERM), killed if it has not within ``grace`` seconds; its
    exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
    return int(proc.returncode)


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # The developer's own INCIDENT_BRIDGE_* settings must not leak into a test's process.
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_BRIDGE_")}
    env.update(extra or {})
    return env


@dataclass
class Bridge:
    """``incident-bridge serve`` as a subprocess on a free loopback port with its own database."""

    workdir: Path
    token: str | None = TOKEN
    args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    db: Path = field(init=False)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    # For reads when the API needs a token (e.g. with --api-tokens-file); None: reads are open.
    api_token: str | None = None
    # The PostgreSQL database (``--db postgresql://...``, its files in ``--data-dir workdir``);
    # None: SQLite's file in ``workdir``. ``db`` is the base name of the files either keeps
    # there (``api_token_path(bridge.db)``).
    database_url: str | None = None
    # A port kept across restarts (a replica that Alertmanager or a test's client knows by its
    # address); None: a free one at each start.
    fixed_port: int | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        name = "incident-bridge" if self.database_url else "incident-bridge.db"
        self.db = self.workdir / name

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"bridge-{self.starts}.log"

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "bridge", "serve", "--listen", f"{LOOPBACK}:{self.port}"]
        if self.database_url:
            cmd += ["--db", self.database_url, "--data-dir", str(self.workdir)]
            given = ("--api-token-file", "--api-tokens-file")
            if (
                not any(a in given for a in self.args)
                and "INCIDENT_BRIDGE_API_TOKEN" not in self.env
            ):
                # PostgreSQL generates no token (replicas would each make their own): one is
                # configured, kept where the CLI looks for the generated one (<db>.api-token).
                # A configured token closes the reads too (as on SQLite with one): the test's
                # reads carry it.
                token = f"pg-api-token-{self.workdir.name}-0123456789"
                token_file = self.db.with_name(self.db.name + ".api-token")
                token_file.write_text(token + "\n")
                token_file.chmod(0o600)
                cmd += ["--api-token-file", str(token_file)]
                self.api_token = self.api_token or token
        else:
            cmd += ["--db", str(self.db)]
        cmd += ["--log-format", "json"]
        if self.token:
            token_file = self.workdir / "webhook-token"
            token_file.write_text(self.token + "\n")
            token_file.chmod(0o600)
            cmd += ["--webhook-token-file", str(token_file)]
        return cmd + list(self.args)

    def start(self, timeout: float = 20.0) -> Bridge:
        """Start (or restart, same database) and wait for /-/ready. Retries a taken port."""
        for _attempt in range(3):
            self.port = free_port() if self.fixed_port is None else self.fixed_port
            self.starts += 1
            # Logs go to stderr; stdout is the console notification target's.
            out_path = self.workdir / f"bridge-{self.starts}.out"
            with self.log_path.open("wb") as log, out_path.open("wb") as out:
                self.proc = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=log,
                    env=_clean_env(self.env),
                    cwd=self.workdir,
                )
            if self._wait_ready(timeout):
                return self
            if "address already in use" not in self.logs().lower():
                break
        raise AssertionError(f"bridge did not become ready; its log:\n{self.logs()[-4000:]}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                if http("GET", self.url + "/-/ready", timeout=2).status == 200:
                    return True
            time.sleep(0.05)
        self.kill()
        return False

    def logs(self) -> str:
        parts = []
        for n in range(1, self.starts + 1):
            path = self.workdir / f"bridge-{n}.log"
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def stop(self, grace: float = 10.0) -> int:
        """SIGTERM (graceful), SIGKILL after ``grace`` seconds; the exit code."""
        if self.proc is None:
            return 0
        return terminate(self.proc, grace)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    # --- the HTTP API --------------------------------------------------------------------

    def post_webhook(self, payload: dict[str, Any] | bytes) -> Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **self.auth()}
        return http("POST", self.url + "/api/v1/alerts", body, headers)

    def get_json(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.api_token}"} if self.api_token else None
        resp = http("GET", self.url + path, headers=headers)
        assert resp.status == 200, (path, resp.status, resp.body[:500])
        return resp.json()

    def incidents(self, query: str = "") -> list[dict[str, Any]]:
        """Every incident (follows pagination), newest first."""
        out: list[dict[str, Any]] = []
        path: str | None = "/api/v1/incidents?limit=500" + (f"&{query}" if query else "")
        while path:
            page = self.get_json(path)
            out += page["incidents"]
            path = page["next"]
        return out

    def incident(self, incident_id: int) -> dict[str, Any]:
        found: dict[str, Any] = self.get_json(f"/api/v1/incidents/{incident_id}")
        return found

    def metrics(self) -> str:
        resp = http("GET", self.url + "/metrics")
        assert resp.status == 200
        return resp.body.decode()

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` (the store's shared SQLite spelling) read from the bridge's
        database through a connection of the test's own, on either backend."""
        if self.database_url is None:
            conn = sqlite3.connect(self.db)
            try:
                return list(conn.execute(sql, args).fetchall())
            finally:
                conn.close()
        import psycopg

        from bridge.store.postgres.connection import PgConnection

        with psycopg.connect(self.database_url, autocommit=True) as raw:
            return [tuple(r) for r in PgConnection(raw).execute(sql, args).fetchall()]


@contextlib.contextmanager
def running_bridge(workdir: Path, **kwargs: Any) -> Iterator[Bridge]:
    bridge = Bridge(workdir, **kwargs)
    try:
        yield bridge.start()
    finally:
        bridge.stop()


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        rest = series[len(name) :]
        if rest and not rest.startswith("{"):
            continue  # another metric with this name as prefix
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += float(value)
    return total


# --- Alertmanager --------------------------------------------------------------------------


EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "alertmanager.yml"


def alertmanager_config(
    bridge_url: str,
    token: str | None,
    *,
    basic_auth: tuple[str, str] | None = None,
    max_alerts: int = 0,
    group_by: Sequence[str] = ("alertname", "service"),
    group_wait: str = "1s",
    group_interval: str = "2s",
    repeat_interval: str | None = None,
    send_resolved: bool = True,
    inhibit_rules: list[dict[str, Any]] | None = None,
) -> str:
    """The example users copy (``examples/alertmanager.yml``) with the bridge's URL, the
    credentials as Alertmanager sends them (the bearer ``token`` inline instead of the example's
    ``credentials_file``, or ``basic_auth`` (user, password), or none) and a test's timings.

    ``repeat_interval`` (None: the example's), ``send_resolved: False`` (the resolves the
    webhook never carries) and ``inhibit_rules`` (Alertmanager's own format) are for the
    reconciliation tests; the defaults give the example's values."""
    config: dict[str, Any] = YAML(typ="safe").load(EXAMPLE_CONFIG.read_text())
    route = config["route"]
    route.update(group_by=list(group_by), group_wait=group_wait, group_interval=group_interval)
    if repeat_interval is not None:
        route["repeat_interval"] = repeat_interval
    if inhibit_rules:
        config["inhibit_rules"] = inhibit_rules
    (receiver,) = config["receivers"]
    assert route["receiver"] == receiver["name"]
    (webhook,) = receiver["webhook_configs"]
    webhook.update(
        url=bridge_url + "/api/v1/alerts", max_alerts=max_alerts, send_resolved=send_resolved
    )
    if token:
        webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": token}}
    elif basic_auth:
        user, password = basic_auth
        webhook["http_config"] = {"basic_auth": {"username": user, "password": password}}
    else:
        del webhook["http_config"]
    out = io.StringIO()
    YAML(typ="safe").dump(config, out)
    return out.getvalue()


@dataclass
class Alertmanager:
    """One ``prometheus-alertmanager`` process; ``cluster_port``/``peers`` make it an HA peer."""

    binary: str
    workdir: Path
    config: str
    cluster_port: int | None = None
    peers: Sequence[int] = ()
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    # A web port chosen up front (e.g. the port of a peer that was stopped, to start another
    # process in its place): start() binds exactly this one and never picks another.
    web_port: int | None = None
    # How long a peer waits for the peers before it in the cluster to notify before it notifies
    # too; "0s": every peer sends each group at once (both copies reach the receivers).
    peer_timeout: str = "1s"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "alertmanager.log"

    def reload(self, config: str) -> None:
        """Write ``config`` and apply it (``POST /-/reload``): how a test gives an Alertmanager
        started first the URL of a bridge started after it (the bridge needs Alertmanager's)."""
        self.config = config
        (self.workdir / "alertmanager.yml").write_text(config)
        resp = http("POST", self.url + "/-/reload")
        assert resp.status == 200, (resp.status, resp.body[:500], self.logs()[-2000:])

    def command(self) -> list[str]:
        config_file = self.workdir / "alertmanager.yml"
        config_file.write_text(self.config)
        storage = self.workdir / "data"
        storage.mkdir(exist_ok=True)
        cmd = [
            self.binary,
            f"--config.file={config_file}",
            f"--storage.path={storage}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--log.level=debug",
        ]
        if self.cluster_port is None:
            return [*cmd, "--cluster.listen-address="]
        cmd += [
            f"--cluster.listen-address={LOOPBACK}:{self.cluster_port}",
            f"--cluster.advertise-address={LOOPBACK}:{self.cluster_port}",
            # Short timeouts so the pair settles and dedups within a test's few seconds.
            "--cluster.gossip-interval=50ms",
            "--cluster.pushpull-interval=1s",
            "--cluster.settle-timeout=3s",
            f"--cluster.peer-timeout={self.peer_timeout}",
            "--cluster.probe-interval=200ms",
            "--cluster.probe-timeout=200ms",
            "--cluster.reconnect-interval=1s",
        ]
        return cmd + [f"--cluster.peer={LOOPBACK}:{p}" for p in self.peers]

    def start(self, timeout: float = 20.0) -> Alertmanager:
        """Start and wait for /-/ready; a web port taken in the meantime is picked again."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            self.port = free_port() if self.web_port is None else self.web_port
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    env=_clean_env(),
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(OSError):
                    if http("GET", self.url + "/-/ready", timeout=2).status == 200:
                        return self
                time.sleep(0.1)
            self.stop()
            if self.web_port is not None:
                break  # pinned: another port would not do
            if f"{LOOPBACK}:{self.port}: bind: address already in use" not in self.logs():
                break
        raise AssertionError(f"alertmanager did not become ready; its log:\n{self.logs()[-4000:]}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int:
        return 0 if self.proc is None else terminate(self.proc)

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Alertmanager's v2 API, as Prometheus sends alerts."""
        resp = http(
            "POST",
            self.url + "/api/v2/alerts",
            json.dumps(alerts).encode(),
            {"Content-Type": "application/json"},
        )
        assert resp.status == 200, (resp.status, resp.body[:500])

    def cluster_size(self) -> int:
        status = json.loads(http("GET", self.url + "/api/v2/status").body)
        return len(status.get("cluster", {}).get("peers") or [])


@contextlib.contextmanager
def running_alertmanagers(
    workdir: Path, config: str, peers: int = 1, binary: str = ALERTMANAGER
) -> Iterator[list[Alertmanager]]:
    """One Alertmanager, or ``peers`` of them clustered with each other; all stopped at exit."""
    started: list[Alertmanager] = []
    try:
        if peers == 1:
            started.append(Alertmanager(binary, workdir / "am-0", config).start())
        else:
            cluster_ports = [free_port() for _ in range(peers)]
            for n, port in enumerate(cluster_ports):
                others = [p for p in cluster_ports if p != port]
                am = Alertmanager(binary, workdir / f"am-{n}", config, port, others)
                started.append(am.start())
            wait_for(
                "the Alertmanager peers to see each other",
                lambda: all(am.cluster_size() == peers for am in started),
                timeout=20,
            )
        yield started
    finally:
        for am in started:
            am.stop()


# --- Prometheus ----------------------------------------------------------------------------

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


def start_prometheus(binary: str, workdir: Path, port: int, *flags: str) -> subprocess.Popen[bytes]:
    """Prometheus on ``LOOPBACK:port`` over ``workdir/prometheus.yml``, its data in
    ``workdir/data``, its log appended to ``workdir/prometheus.log``; ``flags`` besides."""
    with (workdir / "prometheus.log").open("ab") as log:
        return subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{port}",
                *flags,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=_clean_env(),
        )


@contextlib.contextmanager
def running_prometheus(
    workdir: Path, alertmanager_url: str, rules: str, binary: str = PROMETHEUS
) -> Iterator[str]:
    """Prometheus evaluating ``rules`` every second and sending to one Alertmanager; its URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "rules.yml").write_text(rules)
    am_host = alertmanager_url.removeprefix("http://")
    (workdir / "prometheus.yml").write_text(
        f"""\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: [{json.dumps(am_host)}]
"""
    )
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    log_path = workdir / "prometheus.log"
    proc = start_prometheus(
        binary,
        workdir,
        port,
        f"--web.external-url={url}",
        # Alerts go out at most this often: the default (1m) would miss the Alertmanager
        # that service discovery only hands the notifier about 5 s after the start.
        "--rules.alert.resend-delay=1s",
    )
    try:
        try:
            wait_for(
                "Prometheus to be ready",
                lambda: (
                    proc.poll() is None and http("GET", url + "/-/ready", timeout=2).status == 200
                ),
                timeout=30,
            )
        except AssertionError:
            raise AssertionError(log_path.read_text(errors="replace")[-4000:]) from None
        yield url
    finally:
        terminate(proc)
