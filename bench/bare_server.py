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
    web.run_app(app, host=host, port=int(port), access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()
