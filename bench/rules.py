"""Rule evaluation throughput: alerts/s through ``RulesPolicy`` for 10, 100 and 1,000 routes.

    .venv/bin/python bench/rules.py [--seconds 2] [--ingest-rps 9000]

Prints one JSON line per case. Routes mix equality and regex matchers; ``flat`` puts every
route under the root (an alert is compared with half of them on average, the worst shape),
``tree`` groups them by team (ten routes per team route). With ``--ingest-rps`` (the
webhooks/s that bench/ingest.py measured for 1-alert webhooks), each line also gives the
share of ingest time per webhook spent in rule evaluation (target: at most 0.10 at 1,000
routes). ``evaluation_cost()`` is the reusable part for bench/ingest.py.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bridge.alertmanager import WebhookPayload
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


def rules_document(n_routes: int, shape: str = "flat") -> dict[str, Any]:
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
    return {
        "targets": {"out": {"type": "console"}},
        "route": {
            "name": "root",
            "tiers": {"general": ["out"]},
            "group_by": ["alertname", "service"],
            "routes": routes,
        },
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
        out.append(
            WebhookPayload.model_validate(
                {"groupKey": f'{{}}:{{w="{w}"}}', "status": "firing", "alerts": alerts}
            )
        )
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per case")
    parser.add_argument(
        "--ingest-rps", type=float, default=None, help="ingest webhooks/s to compare with"
    )
    args = parser.parse_args()
    for shape in ("flat", "tree"):
        for n in (10, 100, 1000):
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


if __name__ == "__main__":
    main()
