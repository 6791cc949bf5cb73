"""What several benchmark scripts share: the ``--smoke`` flag's help, a free loopback port,
and the wait for a started service's ``/-/ready`` (a process is ended by
``tests.integration.procs.terminate``). Not a benchmark itself: run with ``--smoke`` (as
tools/bench-smoke runs every bench/*.py) it checks its own helpers against a tiny server."""

from __future__ import annotations

import argparse
import contextlib
import http.server
import socket
import subprocess
import sys
import threading
import time
import urllib.request

SMOKE_HELP = (
    "a few seconds with tiny sizes (CI): checks that the benchmark runs, figures mean little"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(
    url: str,
    proc: subprocess.Popen[bytes],
    timeout: float = 20.0,
    *,
    what: str | None = None,
    every: float = 0.05,
) -> None:
    """Until ``url``/-/ready answers 200; an error if ``proc`` (named ``what``, by default its
    command) exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what or proc.args} exited with {proc.returncode}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url + "/-/ready", timeout=2) as resp,
        ):
            if resp.status == 200:
                return
        time.sleep(every)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def _self_check() -> int:
    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/-/ready" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        wait_ready(f"http://127.0.0.1:{port}", sleeper, 5.0)
        print(f"bench/_common: ready seen on port {port}")
    finally:
        sleeper.kill()
        sleeper.wait()
        server.shutdown()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    parser.parse_args()
    sys.exit(_self_check())
