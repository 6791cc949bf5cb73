"""A bare aiohttp endpoint for bench/ingest.py: parses the JSON body and answers 200.

It is the ceiling the bridge is compared with: same framework, same request, no validation, no
store. ``python bench/bare_server.py --listen 127.0.0.1:PORT``
"""

from __future__ import annotations

import argparse
import json

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:9097")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    app = web.Application()
    app.router.add_post("/api/v1/alerts", alerts)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/api/v1/incidents/{id}/{action}", note)
    app.router.add_get("/api/v1/incidents", incidents)
    web.run_app(app, host=host, port=int(port), access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()
