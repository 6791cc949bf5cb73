"""Rule evaluation throughput: alerts/s through ``RulesPolicy`` for 10, 100 and 1,000 routes.

    .venv/bin/python bench/rules.py [--seconds 2] [--ingest-rps 9000] [--no-receiver]

Prints one JSON line per case. Routes mix equality and regex matchers; ``flat`` puts every
route under the root (an alert is compared with half of them on average, the worst shape),
``tree`` groups them by team (ten routes per team route). With ``--ingest-rps`` (the
webhooks/s that bench/ingest.py measured for 1-alert webhooks), each line also gives the
share of ingest time per webhook spent in rule evaluation (target: at most 0.10 at 1,000
routes). ``evaluation_cost()`` is the reusable part for bench/ingest.py.

Without ``--ingest-rps`` (and unless ``--no-receiver``), the same run also sends the same kind of
alerts through the receiver: ``incident-bridge serve`` as a real process with the 1,000-route
rules (and no targets, so that only ingest runs), pinned to one CPU, driven by a client process
on the other CPU; the server's CPU time per webhook is the ingest time, and the ``receiver``
lines print the share of it spent in rule evaluation (the target is at most 0.10).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import SMOKE_HELP
from bridge.core.alertmanager import WebhookPayload
from bridge.rules import RuleSet, RulesPolicy, load_rules

NOW_NS = 1_795_000_000 * 10**9


def _route(i: int) -> dict[str, Any]:
    if i % 2:
        matchers = [f'team="t{i % 50}"', f'service="s{i}"']
    else:
        matchers = [f'service=~"s{i}|s{i}-.*"', 'env!~"dev.*"']
    return {
        "name": f"r{i}",
        "matchers": matchers,
        "severity_from": {"label": "severity", "map": {"critical": "sev1"}},
    }


def rules_document(n_routes: int, shape: str = "flat", notify: bool = True) -> dict[str, Any]:
    routes = [_route(i) for i in range(n_routes)]
    if shape == "tree":
        teams = []
        for start in range(0, n_routes, 10):
            kids = routes[start : start + 10]
            teams.append(
                {
                    "name": f"team-{start // 10}",
                    "matchers": [f'group="g{start // 10}"'],
                    "routes": kids,
                }
            )
        routes = teams
    root: dict[str, Any] = {"name": "root", "group_by": ["alertname", "service"], "routes": routes}
    if not notify:  # ingest alone: no deliveries sharing the server's CPU
        return {"route": root}
    return {
        "targets": {"out": {"type": "console"}},
        "route": {**root, "tiers": {"general": ["out"]}},
    }


def build_ruleset(n_routes: int, shape: str = "flat") -> RuleSet:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(json.dumps(rules_document(n_routes, shape)))  # JSON is YAML
        result = load_rules([path], env={})
    assert result.ruleset is not None, result.errors[:5]
    return result.ruleset


def make_payloads(
    n_routes: int, alerts_per_webhook: int, count: int, seed: int = 1
) -> list[WebhookPayload]:
    return [
        WebhookPayload.model_validate(body)
        for body in make_bodies(n_routes, alerts_per_webhook, count, seed)
    ]


def make_bodies(
    n_routes: int, alerts_per_webhook: int, count: int, seed: int = 1
) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for w in range(count):
        alerts = []
        for a in range(alerts_per_webhook):
            i = rnd.randrange(n_routes)
            labels = {
                "alertname": f"A{rnd.randrange(20)}",
                "service": f"s{i}" if rnd.random() < 0.9 else f"unknown-{i}",
                "team": f"t{i % 50}",
                "group": f"g{i // 10}",
                "env": rnd.choice(["prod", "staging", "dev-1"]),
                "severity": rnd.choice(["critical", "warning"]),
                "instance": f"host-{rnd.randrange(100)}:9100",
            }
            alerts.append(
                {
                    "status": "firing",
                    "labels": labels,
                    "startsAt": "2026-11-27T10:00:00Z",
                    "fingerprint": f"{w:08x}{a:08x}",
                }
            )
        out.append({"groupKey": f'{{}}:{{w="{w}"}}', "status": "firing", "alerts": alerts})
    return out


def evaluation_cost(
    ruleset: RuleSet, payloads: list[WebhookPayload], seconds: float = 2.0
) -> dict[str, float]:
    """Seconds per webhook and alerts/s of ``RulesPolicy.evaluate`` over ``payloads``."""
    policy = RulesPolicy(ruleset)
    # The first pass meets every label value for the first time (the route index computes its
    # masks then); later passes are the steady state of alerts that keep arriving.
    cold = time.perf_counter()
    for p in payloads:
        policy.evaluate(p, NOW_NS)
    cold = (time.perf_counter() - cold) / len(payloads)
    webhooks = alerts = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for p in payloads:
            policy.evaluate(p, NOW_NS)
            webhooks += 1
            alerts += len(p.alerts)
    elapsed = time.perf_counter() - start
    return {
        "s_per_webhook": elapsed / webhooks,
        "alerts_per_s": alerts / elapsed,
        "webhooks_per_s": webhooks / elapsed,
        "cold_s_per_webhook": cold,
    }


def _client(url: str, bodies_file: str, seconds: float, concurrency: int) -> None:
    """Post the bodies, each made unique, from ``concurrency`` connections; print the rate."""
    import asyncio

    import aiohttp

    templates = [b.encode() for b in json.loads(Path(bodies_file).read_text())]

    async def run() -> None:
        sent = failed = 0
        deadline = time.perf_counter() + seconds
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

            async def worker(k: int) -> None:
                nonlocal sent, failed
                n = k
                while time.perf_counter() < deadline:
                    body = templates[n % len(templates)].replace(b"@N@", str(n).encode())
                    async with http.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        sent += 1
                        failed += resp.status != 200
                    n += concurrency

            start = time.perf_counter()
            await asyncio.gather(*(worker(k) for k in range(concurrency)))
            elapsed = time.perf_counter() - start
        print(json.dumps({"sent": sent, "failed": failed, "seconds": elapsed}), flush=True)

    asyncio.run(run())


TOKEN = "bench-rules-token"


def receiver_rps(n_routes: int, per: int, seconds: float) -> dict[str, Any]:
    """Webhooks/s the real receiver sustains with ``n_routes`` routes, pinned to one CPU."""
    import os
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    cpus = sorted(os.sched_getaffinity(0))
    pin = shutil.which("taskset") is not None and len(cpus) >= 2

    def pinned(cpu: int) -> list[str]:
        return ["taskset", "-c", str(cpu)] if pin else []

    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.yaml"
        rules.write_text(json.dumps(rules_document(n_routes, "flat", notify=False)))
        bodies = []
        for body in make_bodies(n_routes, per, 500):
            body["groupKey"] = body["groupKey"] + "@N@"  # every request a new group
            for alert in body["alerts"]:
                alert["fingerprint"] = alert["fingerprint"][:8] + "@N@"
            bodies.append(json.dumps(body))
        (Path(tmp) / "bodies.json").write_text(json.dumps(bodies))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_BRIDGE_")}
        env["INCIDENT_BRIDGE_WEBHOOK_TOKEN"] = TOKEN
        server = subprocess.Popen(
            [*pinned(cpus[0]), sys.executable, "-m", "bridge", "serve", "--listen",
             f"127.0.0.1:{port}", "--db", f"{tmp}/bench.db", "--rules", str(rules),
             "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1):
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the bridge did not start") from None
                    time.sleep(0.1)
            cpu_before = _cpu_seconds(server.pid)
            out = subprocess.run(
                [*pinned(cpus[-1]), sys.executable, __file__, "--client",
                 f"http://127.0.0.1:{port}/api/v1/alerts", str(Path(tmp) / "bodies.json"),
                 str(seconds)],
                capture_output=True, text=True, timeout=seconds + 60, check=True,
            )  # fmt: skip
            cpu = _cpu_seconds(server.pid) - cpu_before
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    data: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    data["rps"] = data["sent"] / data["seconds"]
    data["server_cpu_s_per_webhook"] = cpu / max(1, data["sent"])
    data["pinned"] = pin
    return data


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        _client(sys.argv[2], sys.argv[3], float(sys.argv[4]), 32)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per case")
    parser.add_argument(
        "--ingest-rps", type=float, default=None, help="ingest webhooks/s to compare with"
    )
    parser.add_argument(
        "--no-receiver", action="store_true", help="skip the run through the real receiver"
    )
    parser.add_argument("--receiver-seconds", type=float, default=5.0)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    sizes, receiver_routes, receiver_pers = (10, 100, 1000), 1000, (1, 10)
    if args.smoke:
        args.seconds, args.receiver_seconds = 0.1, 0.5
        sizes, receiver_routes, receiver_pers = (10, 100), 100, (1,)
    for shape in ("flat", "tree"):
        for n in sizes:
            t0 = time.perf_counter()
            rs = build_ruleset(n, shape)
            load_s = time.perf_counter() - t0
            for per in (1, 10):
                cost = evaluation_cost(rs, make_payloads(n, per, 500), args.seconds)
                line: dict[str, Any] = {
                    "bench": "rules", "shape": shape, "routes": n, "alerts_per_webhook": per,
                    "alerts_per_s": round(cost["alerts_per_s"]), "webhooks_per_s": round(cost["webhooks_per_s"]),
                    "us_per_webhook": round(cost["s_per_webhook"] * 1e6, 1),
                    "cold_us_per_webhook": round(cost["cold_s_per_webhook"] * 1e6, 1), "load_s": round(load_s, 3),
                }  # fmt: skip
                if args.ingest_rps:
                    line["share_of_ingest"] = round(cost["s_per_webhook"] * args.ingest_rps, 3)
                print(json.dumps(line), flush=True)
    if args.ingest_rps or args.no_receiver:
        return
    for per in receiver_pers:
        ingest = receiver_rps(receiver_routes, per, args.receiver_seconds)
        cost = evaluation_cost(
            build_ruleset(receiver_routes, "flat"),
            make_payloads(receiver_routes, per, 500),
            args.seconds,
        )
        # The server's own CPU time per webhook, whatever the client managed to send.
        share = cost["s_per_webhook"] / ingest["server_cpu_s_per_webhook"]
        print(json.dumps({
            "bench": "rules", "case": "receiver", "routes": receiver_routes, "shape": "flat",
            "alerts_per_webhook": per, "ingest_webhooks_per_s": round(ingest["rps"], 1),
            "failed": ingest["failed"],
            "ingest_cpu_us_per_webhook": round(ingest["server_cpu_s_per_webhook"] * 1e6, 1),
            "rules_us_per_webhook": round(cost["s_per_webhook"] * 1e6, 1),
            "share_of_ingest": round(share, 3), "target_share_max": 0.10, "met": share <= 0.10,
            "pinned": ingest["pinned"],
        }), flush=True)  # fmt: skip
        if args.smoke and (ingest["failed"] or not ingest["rps"]):
            raise SystemExit(f"the receiver run failed: {ingest}")


if __name__ == "__main__":
    main()
