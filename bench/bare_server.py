"""A bare aiohttp endpoint for bench/ingest.py: parses the JSON body and answers 200.

It is the ceiling the bridge is compared with: same framework, same request, no validation, no
store. ``python bench/bare_server.py --listen 127.0.0.1:PORT``; ``--smoke`` serves it on a free
port for a moment, asks each route once and exits non-zero unless each answers as the benches
expect.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp
from aiohttp import web


async def alerts(request: web.Request) -> web.Response:
    payload = json.loads(await request.read())
    return web.json_response({"status": "ok", "alerts": len(payload.get("alerts", []))})


async def note(request: web.Request) -> web.Response:
    """bench/api.py's write ceiling: parse the JSON body, answer a small JSON object."""
    payload = json.loads(await request.read() or b"{}")
    return web.json_response({"changed": True, "id": request.match_info["id"], "n": len(payload)})


# bench/api.py's read ceiling: a page of 50 incidents, serialized for every request.
_PAGE = [
    {"id": n, "key": f"k{n}", "title": f"incident {n}", "severity": "sev2", "status": "triggered",
     "team": "team-3", "opened_at": "2026-11-28T06:00:00Z", "roles": {}, "alert_count": 1}
    for n in range(50)
]  # fmt: skip


async def incidents(request: web.Request) -> web.Response:
    return web.json_response({"incidents": _PAGE, "next": None})


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="OK\n")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/api/v1/alerts", alerts)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/api/v1/incidents/{id}/{action}", note)
    app.router.add_get("/api/v1/incidents", incidents)
    return app


async def smoke() -> int:
    """Each route once on a free loopback port, then 200 webhooks one after another: their rate
    printed (a figure for the record, not compared: this script is the others' baseline)."""
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}"
    body = json.dumps({"alerts": [{"labels": {"alertname": "Smoke"}}]})
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/-/ready") as resp:
                assert resp.status == 200, resp.status
            async with session.post(url + "/api/v1/incidents/7/note", data="{}") as resp:
                assert resp.status == 200 and (await resp.json())["id"] == "7"
            async with session.get(url + "/api/v1/incidents") as resp:
                assert len((await resp.json())["incidents"]) == 50
            t0 = time.perf_counter()
            for _ in range(200):
                async with session.post(url + "/api/v1/alerts", data=body) as resp:
                    assert resp.status == 200 and (await resp.json())["alerts"] == 1
            rate = 200 / (time.perf_counter() - t0)
    finally:
        await runner.cleanup()
    print(json.dumps({"case": "bare_smoke", "sequential_webhooks_per_s": round(rate)}))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:9097")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="serve on a free port, ask each route once, exit non-zero unless each answers",
    )
    args = parser.parse_args()
    if args.smoke:
        raise SystemExit(asyncio.run(smoke()))
    host, _, port = args.listen.rpartition(":")
    web.run_app(make_app(), host=host, port=int(port), access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()
