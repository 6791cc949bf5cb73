"""A real Prometheus scraping a tiny exporter whose values the test sets: for the PromQL checks.

    from tests.integration.prometheus import prometheus  # noqa: F401  (the fixture)

    def test_x(prometheus: PrometheusWithExporter) -> None:
        prometheus.exporter.set("error_ratio", 0.001, service="checkout")
        prometheus.wait_for_value('error_ratio{service="checkout"}', 0.001)
        url, exporter = prometheus          # it is also a (url, exporter) pair

``prometheus`` is a fresh pair per test, ``shared_prometheus`` one per test module (use
metric names of the test's own then). Prometheus scrapes the exporter every second (job
``exporter``); the fixture yields once the target is up and a sample was scraped, and stops
both (Prometheus SIGTERM then SIGKILL, the exporter's thread joined) after the test, also when
it fails. Everything listens on free 127.0.0.1 ports; the TSDB lives in the test's tmp dir.
A missing /usr/bin/prometheus skips the test on a laptop and fails it under CI=true
(``procs.require_binary``).
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.procs import (
    LOOPBACK,
    PROMETHEUS,
    free_port,
    http,
    require_binary,
    start_prometheus,
    terminate,
    wait_for,
)

Series = tuple[str, tuple[tuple[str, str], ...]]


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Exporter:
    """``GET /metrics`` in the text exposition format: one gauge sample per ``set`` call's
    name and labels. Thread-safe; ``set`` again changes the value, ``remove`` drops the series
    (Prometheus marks it stale at the next scrape)."""

    def __init__(self) -> None:
        self._values: dict[Series, float] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.scrapes = 0

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[name, tuple(sorted(labels.items()))] = value

    def remove(self, name: str, **labels: str) -> None:
        with self._lock:
            self._values.pop((name, tuple(sorted(labels.items()))), None)

    def render(self) -> str:
        with self._lock:
            items = sorted(self._values.items())
        lines: list[str] = []
        typed: set[str] = set()
        for (name, labels), value in items:
            if name not in typed:
                lines.append(f"# TYPE {name} gauge")
                typed.add(name)
            shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(
                f"{name}{{{shown}}} {_number(value)}" if shown else f"{name} {_number(value)}"
            )
        return "\n".join(lines) + "\n"

    @property
    def address(self) -> str:
        assert self._server is not None, "the exporter is not started"
        return f"{LOOPBACK}:{self._server.server_address[1]}"

    def start(self) -> Exporter:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                exporter.scrapes += 1
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # no noise in the test output

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None


@dataclass(frozen=True)
class PrometheusWithExporter:
    """What the fixtures yield: Prometheus's URL and the exporter it scrapes; unpacks as the
    pair ``url, exporter = prometheus``."""

    url: str
    exporter: Exporter
    workdir: Path = Path()

    def __iter__(self) -> Iterator[Any]:
        return iter((self.url, self.exporter))

    def query(self, expr: str) -> dict[str, Any]:
        """An instant query now, its whole JSON answer (``status``, ``data``...)."""
        resp = http("GET", self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        answer: dict[str, Any] = json.loads(resp.body)
        return answer

    def values(self, expr: str) -> list[float]:
        """The values of the vector ``expr`` returns now (empty when it returns none)."""
        answer = self.query(expr)
        assert answer.get("status") == "success", answer
        return [float(s["value"][1]) for s in answer["data"]["result"]]

    def wait_until(self, what: str, probe: Callable[[], bool], timeout: float = 20.0) -> None:
        wait_for(what, lambda: probe() or None, timeout)

    def wait_for_value(self, expr: str, value: float, timeout: float = 20.0) -> None:
        """Until every series of ``expr`` has ``value`` (and there is one): the exporter's new
        value was scraped."""

        def seen() -> bool:
            got = self.values(expr)
            same = all(v == value or (math.isnan(v) and math.isnan(value)) for v in got)
            return bool(got) and same

        self.wait_until(f"{expr} == {value} in Prometheus", seen, timeout)

    def wait_for_absent(self, expr: str, timeout: float = 20.0) -> None:
        """Until ``expr`` returns no series (a removed series went stale)."""
        self.wait_until(f"{expr} to return no series", lambda: not self.values(expr), timeout)

    def logs(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _config(target: str) -> str:
    return f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: exporter
    static_configs:
      - targets: [{json.dumps(target)}]
"""


@contextlib.contextmanager
def running_prometheus_with_exporter(
    workdir: Path, binary: str = PROMETHEUS, timeout: float = 30.0
) -> Iterator[PrometheusWithExporter]:
    """An exporter and a Prometheus scraping it every second; yields once the target is up and
    a sample was scraped; both stopped at exit. A port taken meanwhile is picked again."""
    workdir.mkdir(parents=True, exist_ok=True)
    exporter = Exporter().start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        (workdir / "prometheus.yml").write_text(_config(exporter.address))
        log_path = workdir / "prometheus.log"
        for _attempt in range(3):
            port = free_port()
            url = f"http://{LOOPBACK}:{port}"
            proc = start_prometheus(binary, workdir, port, "--log.level=warn")
            running = PrometheusWithExporter(url, exporter, workdir)

            def ready(proc: subprocess.Popen[bytes] = proc, url: str = url) -> bool:
                if proc.poll() is not None:
                    raise AssertionError("prometheus exited")
                return http("GET", url + "/-/ready", timeout=2).status == 200

            try:
                wait_for("Prometheus to be ready", ready, timeout)
            except AssertionError:
                terminate(proc)
                if "address already in use" in running.logs():
                    continue
                raise AssertionError(running.logs()[-4000:]) from None
            try:
                running.wait_for_value('up{job="exporter"}', 1.0, timeout)
            except AssertionError:
                raise AssertionError(running.logs()[-4000:]) from None
            yield running
            return
        raise AssertionError(
            f"Prometheus found no free port; its log:\n{log_path.read_text()[-4000:]}"
        )
    finally:
        if proc is not None:
            terminate(proc)
        exporter.stop()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PrometheusWithExporter]:
    """A fresh Prometheus and exporter for this test."""
    binary = require_binary(PROMETHEUS)
    with running_prometheus_with_exporter(tmp_path / "prometheus", binary) as running:
        yield running


@pytest.fixture(scope="module")
def shared_prometheus(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrometheusWithExporter]:
    """One Prometheus and exporter for the whole test module (tests use their own metrics)."""
    binary = require_binary(PROMETHEUS)
    with running_prometheus_with_exporter(tmp_path_factory.mktemp("prometheus"), binary) as running:
        yield running
