"""Page benchmark: the incident page with 2,000 timeline entries, its time and its weight.

One incident (the captured webhook's) gets 2,000 timeline entries (notes, decisions, action
items, status updates, in one write), in a real SQLite file. The real app (``create_app``) is
served on a loopback port in this process and asked, from one client, for:

- ``page``: ``GET /incidents/{id}``, the HTML page (reads, the template, the response);
- ``api``: ``GET /api/v1/incidents/{id}``, the same incident as JSON: the baseline, measured in
  alternating rounds, the ratio being the median of the rounds' ratios.

It prints the page's p50 and p95 in ms against the 100 ms target, its size against 500 KB (and
gzip'd, as a proxy would send it), the ratio to the API, and the template's own render time.

    .venv/bin/python bench/page.py                 # 5 rounds of 40 requests each
    .venv/bin/python bench/page.py --entries 5000  # a longer timeline
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bench._common import SMOKE_HELP  # noqa: E402
from bridge.app import create_app  # noqa: E402
from bridge.config import Settings  # noqa: E402
from bridge.core.actions import AddEntry, PostUpdate  # noqa: E402
from bridge.core.alertmanager import parse_webhook  # noqa: E402
from bridge.core.policy import BuiltinPolicy  # noqa: E402
from bridge.http import pages  # noqa: E402
from bridge.metrics import Metrics  # noqa: E402
from bridge.runtime import builtin_runtime  # noqa: E402
from bridge.service import AppState  # noqa: E402
from bridge.store import Store  # noqa: E402
from bridge.store.actions import ActionRequest, apply_action  # noqa: E402
from bridge.store.ingest import apply_webhook  # noqa: E402
from bridge.targets.base import TargetDeps  # noqa: E402

FIXTURE = HERE.parent / "tests" / "fixtures" / "alertmanager-0.25" / "firing-group-bearer.json"
TARGET_MS = 100.0
TARGET_KB = 500.0
TEXTS = (
    "Checked the load balancer: 5xx only from the checkout pods in eu-west-1b",
    "Rolling back checkout to v2.41.3; canary first",
    "Error rate back under 1 % on the canary, continuing the rollback",
    "Customers see failed payments on the web checkout; mobile is fine",
)


def fill(db: Path, entries: int) -> int:
    store = Store(db)
    store.open()
    try:
        body = json.loads(FIXTURE.read_text())["body"]
        raw = json.dumps(body).encode()
        payload = parse_webhook(raw)
        now = time.time_ns()
        decisions = BuiltinPolicy(reopen_window_s=3600).evaluate(payload, now)

        def write(conn: Any) -> int:
            result = apply_webhook(
                conn, payload=payload, decisions=decisions, sha256="bench", body=None, now=now
            )
            incident = result.incidents[0].id
            for n in range(entries):
                text = f"{TEXTS[n % len(TEXTS)]} ({n})"
                command: Any
                if n % 10 == 9:
                    command = PostUpdate("liaison", text)
                else:
                    kind = ("note", "note", "decision", "action")[n % 4]
                    command = AddEntry(f"person-{n % 7}", kind, text)  # type: ignore[arg-type]
                request = ActionRequest(incident, command, now + n * 1_000_000)
                answer = apply_action(conn, request)
                assert answer.status == 200, answer.body
            return incident

        return int(asyncio.run(_write(store, write)))
    finally:
        store.close()


async def _write(store: Store, job: Any) -> Any:
    return await store.write(job)


async def serve(db: Path) -> tuple[web.AppRunner, str, AppState]:
    settings = Settings(db=db)
    store = Store(db)
    store.open()
    state = AppState(
        settings=settings,
        store=store,
        metrics=Metrics.create(),
        runtime=builtin_runtime(3600, TargetDeps()),
    )
    app = create_app(state)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}", state


async def timed(session: aiohttp.ClientSession, url: str, n: int) -> tuple[list[float], bytes]:
    times = []
    body = b""
    for _ in range(n):
        started = time.perf_counter()
        async with session.get(url) as resp:
            body = await resp.read()
            assert resp.status == 200, (url, resp.status, body[:300])
        times.append((time.perf_counter() - started) * 1000)
    return times, body


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        incident = await asyncio.to_thread(fill, db, args.entries)
        runner, base, state = await serve(db)
        try:
            async with aiohttp.ClientSession() as session:
                await timed(session, f"{base}/incidents/{incident}", 3)  # warm up
                await timed(session, f"{base}/api/v1/incidents/{incident}", 3)
                page_ms: list[float] = []
                ratios: list[float] = []
                page = b""
                for _ in range(args.rounds):
                    p, page = await timed(session, f"{base}/incidents/{incident}", args.requests)
                    a, _ = await timed(
                        session, f"{base}/api/v1/incidents/{incident}", args.requests
                    )
                    page_ms += p
                    ratios.append(statistics.median(p) / statistics.median(a))
            context = await pages.incident_context(
                state, incident, pages.Viewer("bench", "write", "x" * 32)
            )
            assert context is not None
            render_ms = []
            for _ in range(20):
                started = time.perf_counter()
                pages.render("incident.html.j2", **context)
                render_ms.append((time.perf_counter() - started) * 1000)
        finally:
            await runner.cleanup()
            state.store.close()
    entries = page.count(b"<li data-id=")
    page_ms.sort()
    p50 = statistics.median(page_ms)
    p95 = page_ms[int(len(page_ms) * 0.95) - 1]
    kb = len(page) / 1024
    print(
        f"incident page with {entries} timeline entries ({args.rounds} rounds of {args.requests})"
    )
    print(f"  page    p50 {p50:.1f} ms, p95 {p95:.1f} ms (target < {TARGET_MS:.0f} ms)")
    print(
        f"  weight  {kb:.0f} KB, gzip {len(gzip.compress(page)) / 1024:.0f} KB (target < {TARGET_KB:.0f} KB)"
    )
    print(
        f"  ratio   page / JSON API of the same incident: {statistics.median(ratios):.2f} (rounds {', '.join(f'{r:.2f}' for r in ratios)})"
    )
    print(f"  template render alone: p50 {statistics.median(render_ms):.1f} ms")
    ok = p50 < TARGET_MS and kb < TARGET_KB and entries >= args.entries
    print("  OK" if ok else "  OVER TARGET")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    if args.smoke:
        args.entries, args.rounds, args.requests = 200, 1, 5
    asyncio.run(main(args))
