"""The insights page (docs/insights.md, docs/web.md): ``/insights`` with its charts drawn here
as inline SVG (no script: a bar per row, a <title> and an aria label on each chart, a viewBox
that scales to a phone's width) and every table as CSV (``/insights/<table>.csv``) for whoever
may read the pages (a session, the trusted header, or a read token). Parameters as the API's
(``http/insights.py``): a bad one is a 400 naming it, on an error page here.
"""

from __future__ import annotations

from html import escape
from typing import Any

from aiohttp import web

from bridge.core.insights import (
    DEFAULT_SINCE,
    POSTMORTEM_DUE_DAYS,
    TABLES,
    Insights,
    Table,
    csv_text,
)
from bridge.core.timeutil import format_ns
from bridge.http.errors import HTTPError
from bridge.http.insights import read
from bridge.http.pages.render import HEADERS, error_page, render
from bridge.http.pages.signin import signed_in


async def get_csv(request: web.Request) -> web.Response:
    """``/insights/<table>.csv``: for a signed-in person (the page's links) or a read token."""
    name = request.match_info["table"]
    if name not in TABLES:
        state, who, _nonce = signed_in(request)
        return error_page(404, f"no such table; known: {', '.join(TABLES)}", who)
    state, who, _nonce = signed_in(request)
    try:
        found = await read(request, state)
    except HTTPError as exc:
        return error_page(exc.status, f"{exc.field or 'request'}: {exc.message}", who)
    return web.Response(
        text=csv_text(found.tables[name]),
        content_type="text/csv",
        charset="utf-8",
        headers={
            **HEADERS,
            "Content-Disposition": f'attachment; filename="insights-{name}.csv"',
        },
    )


BAR_H, GAP, LABEL_W, WIDTH = 22, 6, 120, 340


def _hours(v: Any) -> float | None:
    return None if v is None else round(float(v) / 3600, 2)


def bar_chart(chart_id: str, title: str, unit: str, rows: list[tuple[str, float | None]]) -> str:
    """Horizontal bars (one per row, longest = the widest), the label on the left and the value
    at the bar's end; readable at 320 px because the viewBox scales down, never out."""
    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    shown = [(k, v) for k, v in rows if v is not None]
    top = max((v for _, v in shown), default=0.0) or 1.0
    height = max(1, len(shown)) * (BAR_H + GAP) + GAP
    summary = "; ".join(f"{k or '(none)'}: {v:g} {unit}" for k, v in shown) or "no data"
    parts = [
        f'<svg id="{chart_id}" class="chart" role="img" aria-labelledby="{title_id} {desc_id}" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{title_id}">{escape(title)}</title>',
        f'<desc id="{desc_id}">{escape(summary)}</desc>',
    ]
    if not shown:
        parts.append(f'<text x="4" y="{BAR_H}" font-size="13" fill="#222">no data</text>')
    room = WIDTH - LABEL_W - 64
    for n, (key, value) in enumerate(shown):
        y = GAP + n * (BAR_H + GAP)
        w = max(1.0, room * value / top)
        label = key or "(none)"
        short = label if len(label) <= 16 else label[:15] + "…"
        parts.append(
            f'<g><text x="{LABEL_W - 4}" y="{y + 15}" font-size="12" text-anchor="end" '
            f'fill="#222">{escape(short)}</text>'
            f'<rect x="{LABEL_W}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="#1f5fa8">'
            f"<title>{escape(label)}: {value:g} {unit}</title></rect>"
            f'<text x="{LABEL_W + w + 4:.1f}" y="{y + 15}" font-size="12" fill="#222">'
            f"{value:g}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def charts(found: Insights) -> list[dict[str, str]]:
    t = found.tables

    def col(
        table: Table, key: str, value: str, conv: Any = _hours
    ) -> list[tuple[str, float | None]]:
        k, v = table.columns.index(key), table.columns.index(value)
        return [(str(r[k]), conv(r[v])) for r in table.rows]

    noisy = col(t["noisiest"], "alertname", "incidents", lambda v: float(v))
    return [
        {
            "svg": bar_chart(
                "chart-week", "MTTR by week (hours)", "h", col(t["by_week"], "week", "mttr_s")
            )
        },
        {
            "svg": bar_chart(
                "chart-team", "MTTR by team (hours)", "h", col(t["by_team"], "team", "mttr_s")
            )
        },
        {
            "svg": bar_chart(
                "chart-service",
                "MTTR by service (hours)",
                "h",
                col(t["by_service"], "service", "mttr_s"),
            )
        },
        {"svg": bar_chart("chart-noisy", "Noisiest alerts (incidents)", "incidents", noisy[:10])},
        {
            "svg": bar_chart(
                "chart-offhours",
                "Hours out of working hours per person",
                "h",
                col(t["interruptions"], "person", "hours_out_of_hours", lambda v: float(v)),
            )
        },
    ]


TITLES = {
    "trend": "This period against the previous one",
    "by_week": "By week",
    "by_team": "By team",
    "by_service": "By service",
    "by_route": "By route",
    "noisiest": "Noisiest alerts",
    "interruptions": "Interruptions per person",
    "action_items": "Open action items",
    "postmortems_overdue": f"Postmortems overdue (required, {POSTMORTEM_DUE_DAYS} days after resolution)",
    "no_runbook": "Alerts without a runbook",
}


async def insights_page(request: web.Request) -> web.Response:
    state, who, _nonce = signed_in(request)
    try:
        found = await read(request, state)
    except HTTPError as exc:
        # A person typed the period: the page says what is wrong with it, as a page.
        return error_page(exc.status, f"{exc.field or 'request'}: {exc.message}", who)
    query = request.query_string
    tables = [
        {
            "name": name,
            "title": TITLES[name],
            "columns": found.tables[name].columns,
            "rows": found.tables[name].rows,
            "csv": f"/insights/{name}.csv" + (f"?{query}" if query else ""),
        }
        for name in TABLES
    ]
    text = render(
        "insights.html.j2",
        viewer=who,
        since=format_ns(found.since),
        until=format_ns(found.until),
        working_hours=found.working_hours,
        given=request.query.get("since", DEFAULT_SINCE),
        charts=charts(found),
        tables=tables,
    )
    return web.Response(text=text, content_type="text/html", headers=HEADERS)
