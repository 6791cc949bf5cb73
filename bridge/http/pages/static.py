"""The stylesheet and the script (``templates/pages/static/``): a plain name of a known type
only, read once and kept, the same for everyone (no session checked for them)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from aiohttp import web

from bridge.http.pages.render import templates_dir

STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


@functools.cache
def _static(path: str) -> bytes:
    return Path(path).read_bytes()


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    suffix = Path(name).suffix
    if not re.fullmatch(r"[a-z0-9-]+\.(css|js|svg)", name) or suffix not in STATIC_TYPES:
        raise web.HTTPNotFound(text="no such file")
    path = templates_dir() / "static" / name
    if not path.is_file():
        raise web.HTTPNotFound(text="no such file")
    return web.Response(
        body=_static(str(path)),
        content_type=STATIC_TYPES[suffix],
        headers={
            "Cache-Control": "public, max-age=300",
            "X-Content-Type-Options": "nosniff",
        },
    )
