"""A drill's report as a page (docs/drills.md, docs/web.md): ``/drills/{id}``, for whoever may
read the pages, the same report as ``incident-bridge drill report`` (kb/drills.build): each
target's deliveries with the last error, each stage's time against the severity's target, what
was skipped. Not a drill, or no such incident: a 404 page."""

from __future__ import annotations

from aiohttp import web

from bridge.core.values import parse_id
from bridge.http.pages.render import HEADERS, error_page, render
from bridge.http.pages.signin import signed_in
from bridge.kb import drills as reports
from bridge.store.interface import StoreUnavailable


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s} s" if s else f"{m} min"
    h, m = divmod(m, 60)
    return f"{h} h {m} min" if m else f"{h} h"


async def drill_page(request: web.Request) -> web.Response:
    state, who, _nonce = signed_in(request)
    incident_id = parse_id(request.match_info["id"])
    if incident_id is None:
        return error_page(404, "no such drill", who)
    try:
        report = await reports.build(state, incident_id)
    except reports.NotADrill as exc:
        return error_page(404, str(exc), who)
    except StoreUnavailable:
        return error_page(503, "the database is not answering; try again", who)
    stages = [
        {
            **s,
            "time": _duration(s["seconds"]),
            "target": _duration(s["target_s"]),
            "met": {True: "yes", False: "no", None: "-"}[s["met"]],
        }
        for s in report["stages"]
    ]
    text = render("drill.html.j2", viewer=who, report=report, stages=stages)
    return web.Response(text=text, content_type="text/html", headers=HEADERS)
