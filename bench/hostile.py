"""Hostile input: what the worst rule files and the worst title templates cost, and what they do
to the webhooks of everybody else.

    .venv/bin/python bench/hostile.py [--smoke] [--webhooks 2000] [--concurrency 8]

1. Rule files (``load_rules``, in process): an alias bomb (1 KB, 10^8 routes expanded), YAML
   nested 5,000 deep, against the bundled ``rules/`` as the baseline: time and peak memory
   (tracemalloc) of the load, and the ratios.
2. Titles (``RulesPolicy.evaluate``): ``'x' * (labels.n|int)`` with n = 400,000,000, a loop
   nest of 10^10 steps, and a webhook of 2,000 groups each looping 19,000 times, against
   ``{{ labels.alertname }}`` as the baseline: time and peak memory per evaluation.
3. Webhooks meanwhile: the real app (aiohttp, SQLite) on a loopback port with title rules; the
   same stream of ordinary webhooks is sent three times, ``--concurrency`` at a time: alone
   (the baseline); with a large webhook every 100 ordinary ones (2,000 groups, or one alert:
   "benign", the same webhooks with harmless labels); and with the hostile ones (the same
   webhooks whose labels make every title loop 19,000 times, or ask for 400,000,000
   characters) and a reload of the alias bomb every 500. Prints p50/p99 of the ordinary
   webhooks in each run and the p99 ratios (hostile / baseline, hostile / benign). Every
   webhook must be answered 200 (a valid webhook is never refused because of the rules).

Prints one JSON line per figure; exits 1 when a bound does not hold (a bomb not refused, a render
not cut short, a webhook not answered 200). ``--smoke`` runs small sizes in a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.core.alertmanager import WebhookPayload  # noqa: E402
from bridge.rules import RulesPolicy, load_rules  # noqa: E402
from tests.rules.hostile import alias_bomb, deep  # noqa: E402

NOW_NS = 1_795_000_000 * 10**9
FAILURES: list[str] = []


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def check(ok: bool, what: str) -> None:
    if not ok:
        FAILURES.append(what)
        emit(failed=what)


def measure(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """(result, seconds, peak bytes allocated while it ran)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = fn()
    finally:
        took = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return result, took, peak


def against(took: float, peak: int, base_s: float, base_peak: int) -> dict[str, float]:
    """A case's seconds and peak memory, and both as ratios to the baseline's in this run."""
    return {
        "seconds": round(took, 4),
        "peak_mb": _mb(peak),
        "time_ratio": round(took / base_s, 2) if base_s else 1.0,
        "memory_ratio": round(peak / base_peak, 2),
    }


def bench_rule_files(work: Path) -> None:
    base, base_s, base_peak = measure(lambda: load_rules([ROOT / "rules"], env={}))
    check(base.ruleset is not None, "the bundled rules load")
    emit(case="rules", file="bundled rules/", seconds=round(base_s, 4), peak_mb=_mb(base_peak))
    for name, text in (("alias-bomb", alias_bomb()), ("deep-5000", deep())):
        path = work / f"{name}.yaml"
        path.write_text(text)
        result, took, peak = measure(lambda p=path: load_rules([p], env={}))  # type: ignore[misc]
        check(result.ruleset is None and len(result.errors) == 1, f"{name} refused with one error")
        emit(
            case="rules",
            file=name,
            bytes=len(text),
            **against(took, peak, base_s, base_peak),
            error=result.errors[0] if result.errors else None,
        )
        check(took < 5.0, f"{name} refused within 5 s")


def _payload(alerts: list[dict[str, str]]) -> WebhookPayload:
    return WebhookPayload.model_validate(
        {
            "groupKey": "{}:{}",
            "status": "firing",
            "alerts": [
                {"status": "firing", "labels": a, "startsAt": "2026-11-27T10:00:00Z"}
                for a in alerts
            ],
        }
    )


TITLE_RULES = "route:\n  name: root\n  group_by: [instance]\n  title: {title}\n"
TITLES = {
    "baseline": "'{{ labels.alertname }} on {{ labels.instance }}'",
    "repetition-4e8": "\"{{ 'x' * (labels.n|int) }}\"",
    "printf-width-4e8": "\"{{ '%*s' % (labels.n|int, '') }}\"",
    "loops-1e10": "'{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
    "{% endfor %}'",
    "2000-groups-slow": "'{% for i in range(19000) %}{% endfor %}{{ labels.instance }}'",
}


def bench_titles(work: Path, smoke: bool) -> None:
    base_s = 0.0
    base_peak = 1
    groups = 200 if smoke else 2000
    for name, title in TITLES.items():
        path = work / f"title-{name}.yaml"
        path.write_text(TITLE_RULES.format(title=title))
        loaded = load_rules([path], env={})
        assert loaded.ruleset is not None, loaded.errors
        policy = RulesPolicy(loaded.ruleset)
        many = name in ("baseline", "2000-groups-slow")
        alerts = [
            {"alertname": "Hostile", "instance": f"h-{i}", "n": "400000000"}
            for i in range(groups if many else 1)
        ]
        payload = _payload(alerts)
        decisions, took, peak = measure(lambda p=policy, w=payload: p.evaluate(w, NOW_NS))  # type: ignore[misc]
        longest = max(len(d.title) for d in decisions)
        errors = sum(1 for d in decisions if d.render_errors)
        if name == "baseline":
            base_s, base_peak = took, peak
        emit(
            case="title",
            template=name,
            incidents=len(decisions),
            **against(took, peak, base_s, base_peak),
            longest_title=longest,
            render_errors=errors,
        )
        check(longest <= 500, f"{name}: titles at most 500 characters")
        check(took < 2.0, f"{name}: evaluated within 2 s")


async def bench_webhooks(work: Path, webhooks: int, concurrency: int) -> None:
    from aiohttp import ClientSession
    from aiohttp.test_utils import TestServer

    from bridge.app import create_app
    from bridge.config import Settings
    from bridge.core.secrets import Secret
    from bridge.metrics import Metrics
    from bridge.service import AppState, activate, api_access, load_runtime
    from bridge.store import Store
    from bridge.targets.base import TargetDeps

    async def run(mode: str) -> tuple[list[float], list[int]]:
        hostile = mode != "baseline"
        folder = work / mode
        folder.mkdir()
        rules = folder / "rules.yaml"
        good = (
            "route:\n  name: root\n  group_by: [instance]\n"
            '  title: \'{% if labels.n is defined %}{{ "x" * (labels.n|int) }}'
            "{% elif labels.slow is defined %}{% for i in range(19000) %}{% endfor %}"
            "{{ labels.instance }}{% else %}{{ labels.alertname }}{% endif %}'\n"
        )
        rules.write_text(good)
        settings = Settings(db=folder / "b.db", rules=(rules,))
        store = Store(settings.db)
        store.open()
        deps = TargetDeps()
        state = AppState(
            settings=settings,
            store=store,
            metrics=Metrics.create(),
            runtime=load_runtime(settings, deps),
            api=api_access(settings, Secret("bench-token")),
        )
        activate(state, state.runtime)
        server = TestServer(create_app(state, deps), host="127.0.0.1")
        await server.start_server()
        url = f"http://127.0.0.1:{server.port}"
        latencies: list[float] = []
        hostile_status: list[int] = []
        sem = asyncio.Semaphore(concurrency)
        auth = {"Authorization": "Bearer bench-token"}
        async with ClientSession() as http:

            async def send(i: int) -> None:
                labels = {"alertname": "Ordinary", "instance": f"i-{i}"}
                body = _body([labels], f"ordinary-{i}")
                async with sem:
                    started = time.perf_counter()
                    async with http.post(url + "/api/v1/alerts", data=body) as resp:
                        await resp.read()
                        latencies.append(time.perf_counter() - started)
                        check(resp.status == 200, f"ordinary webhook {i}: {resp.status}")

            async def attack(i: int) -> None:
                # "benign": the same webhooks without the labels that make titles hostile
                evil = mode == "hostile"
                if i % 2:
                    alerts = [{"alertname": "Big", "instance": "b"}]
                    if evil:
                        alerts[0]["n"] = "400000000"
                else:
                    n = 2000 if webhooks >= 1000 else 200
                    alerts = [{"alertname": "Slow", "instance": f"s-{j}"} for j in range(n)]
                    if evil:
                        alerts = [{**a, "slow": "1"} for a in alerts]
                async with http.post(url + "/api/v1/alerts", data=_body(alerts, f"h-{i}")) as r:
                    await r.read()
                    hostile_status.append(r.status)

            async def bomb() -> None:
                if mode != "hostile":
                    return
                rules.write_text(alias_bomb())
                async with http.post(url + "/-/reload", headers=auth) as r:
                    await r.read()
                    check(r.status == 422, f"alias bomb reload: {r.status}")
                rules.write_text(good)

            tasks = []
            for i in range(webhooks):
                tasks.append(asyncio.create_task(send(i)))
                if hostile and i % 100 == 50:
                    tasks.append(asyncio.create_task(attack(i // 100)))
                if hostile and i % 500 == 250:
                    tasks.append(asyncio.create_task(bomb()))
                if i % concurrency == 0:
                    await asyncio.sleep(0)
            await asyncio.gather(*tasks)
        await server.close()
        await asyncio.to_thread(store.close)
        return latencies, hostile_status

    base, _ = await run("baseline")
    benign, _ = await run("benign")
    worst, statuses = await run("hostile")
    check(bool(statuses) and set(statuses) == {200}, f"hostile webhooks answered {statuses}")
    for name, lat in (("baseline", base), ("benign", benign), ("hostile", worst)):
        emit(
            case="webhooks",
            run=name,
            webhooks=len(lat),
            p50_ms=round(statistics.median(lat) * 1000, 2),
            p99_ms=round(_p99(lat) * 1000, 2),
            max_ms=round(max(lat) * 1000, 2),
        )
    emit(
        case="webhooks",
        p99_ratio=round(_p99(worst) / _p99(base), 2),
        p99_ratio_to_benign=round(_p99(worst) / _p99(benign), 2),
        hostile=len(statuses),
    )


def _body(alerts: list[dict[str, str]], group: str) -> bytes:
    return json.dumps(
        {
            "version": "4",
            "groupKey": group,
            "status": "firing",
            "receiver": "bench",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://am",
            "alerts": [
                {
                    "status": "firing",
                    "labels": a,
                    "annotations": {},
                    "startsAt": "2026-11-27T10:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": f"{abs(hash((group, i))):016x}"[:16],
                }
                for i, a in enumerate(alerts)
            ],
        }
    ).encode()


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _mb(n: int) -> float:
    return round(n / 2**20, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--webhooks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    webhooks = 300 if args.smoke else args.webhooks
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bench_rule_files(work)
        bench_titles(work, args.smoke)
        asyncio.run(bench_webhooks(work, webhooks, args.concurrency))
    if FAILURES:
        print(f"FAILED: {len(FAILURES)} bound(s) did not hold", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
