"""The pages' rendering: the Jinja2 environment over ``templates/pages/`` (every value
escaped), its filters and globals (Markdown with raw HTML off, links only for http and https,
times, milestones, timeline rows), and the HTML answer with the pages' security headers. It
imports nothing else of the pages: the other modules use it."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import Markup, escape

from bridge.core.events import TIMELINE_KINDS
from bridge.core.incidents import MILESTONES, STATUSES
from bridge.core.policy import ROLES, SEVERITIES
from bridge.core.postmortem import SECTION_INFO
from bridge.core.timeutil import NS, parse_rfc3339
from bridge.http.session import Viewer

# No inline script or style, no plugin, no framing; forms post only here.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def templates_dir() -> Path:
    from bridge.delivery.templates import default_templates_dir

    return default_templates_dir() / "pages"


def _safe_url(url: Any) -> bool:
    """Only http(s) links: a label or annotation could say ``javascript:``."""
    return isinstance(url, str) and url.lower().startswith(("http://", "https://"))


def _short_time(text: str | None) -> str:
    return (text or "")[11:19]


def _span(seconds: int) -> str:
    """``45s``, ``3m 12s``, ``2h 5m``, ``3d 4h``: an incident's age, a milestone's delay."""
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def age(text: str | None, now_ns: int) -> str:
    at = parse_rfc3339(text) if text else None
    return "" if at is None else _span(max(0, (now_ns - at) // NS))


def milestone_rows(incident: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(name, when, how long after the first alert started) per milestone: the header's
    durations are the MTTx of this one incident (time to acknowledge, mitigate, resolve)."""
    started = parse_rfc3339(incident["started_at"]) if incident.get("started_at") else None
    rows = []
    for name in MILESTONES:
        text = str(incident.get(name) or "")
        at = parse_rfc3339(text) if text else None
        label = name.removesuffix("_at").replace("_", " ")
        if at is None:
            rows.append((label, "—", ""))
            continue
        when = f"{text[:10]} {text[11:19]} UTC"
        after = (
            ""
            if started is None or name == "started_at"
            else "+" + _span(max(0, (at - started) // NS))
        )
        rows.append((label, when, after))
    return rows


# Markdown's headings below the page's own: the postmortem's ``#`` title sits under the
# section's <h2>, so it is an <h3> (screen readers' heading outline stays in order).
_HEADING_SHIFT = 2


def _table_open(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    """A table in a region that scrolls sideways (on a phone), reachable with Tab and named
    by the heading above it, like the page's other tables; ``(2)`` for a second table under
    the same heading (a region's name must be its own)."""
    heading = "Table"
    for at in range(idx - 1, -1, -1):
        if tokens[at].type == "heading_open":
            words = (c.content for c in tokens[at + 1].children or () if c.type != "softbreak")
            heading = "".join(words).strip() or heading
            break
    seen = env.setdefault("tables", {})
    seen[heading] = seen.get(heading, 0) + 1
    name = heading if seen[heading] == 1 else f"{heading} ({seen[heading]})"
    env["in_table"] = True
    label = escape(f"{name}, scrollable")
    return f'<div class="scroll" tabindex="0" role="region" aria-label="{label}">\n<table>\n'


def _table_close(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    env["in_table"] = False
    return "</table>\n</div>\n"


def _text(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    """Text, escaped; in a table's cell the ``<br>`` the postmortem template puts for a line
    break of a value (a cell is one line) is a line break again, and nothing else is HTML."""
    shown = str(escape(tokens[idx].content))
    return shown.replace("&lt;br&gt;", "<br>") if env.get("in_table") else shown


def _heading(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    level = min(6, int(token.tag[1:]) + _HEADING_SHIFT)
    token.tag = f"h{level}"
    return str(self.renderToken(tokens, idx, options, env))


@functools.cache
def _parser() -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    for rule, fn in (
        ("table_open", _table_open),
        ("table_close", _table_close),
        ("text", _text),
        ("heading_open", _heading),
        ("heading_close", _heading),
    ):
        md.add_render_rule(rule, fn)
    return md


def _markdown(text: str) -> str:
    """Markdown to HTML: CommonMark and tables (GitHub's, as the postmortem's are), with raw
    HTML off and only safe links (markdown-it's validation drops ``javascript:``,
    ``vbscript:``, ``file:`` and ``data:`` links)."""
    return str(_parser().render(text, {}))


_KIND_LABELS = {k: k.replace("_", " ") for k in TIMELINE_KINDS}
_URL = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:)\]]")


def linked(text: str) -> str | Markup:
    """The text with its http(s) URLs as links (the similar incidents' pages, a runbook in a
    note), everything escaped; a text without a URL stays a plain string (escaped by the
    template), so that thousands of entries pay only for the ``in`` test."""
    if "http" not in text:
        return text
    out: list[str] = []
    last = 0
    for m in _URL.finditer(text):
        url = m.group(0)
        out.append(str(escape(text[last : m.start()])))
        out.append(f'<a href="{escape(url)}" rel="noopener noreferrer">{escape(url)}</a>')
        last = m.end()
    out.append(str(escape(text[last:])))
    return Markup("".join(out))  # noqa: S704  (every part escaped above)


def timeline_rows(entries: list[dict[str, Any]], previous_day: str = "") -> list[tuple[Any, ...]]:
    """The entries as the template's loop unpacks them: a day's heading on its first entry."""
    rows = []
    day = previous_day
    for e in entries:
        time_text = str(e["time"] or "")
        today = time_text[:10]
        rows.append(
            (
                e["id"],
                e["kind"],
                _KIND_LABELS.get(e["kind"]) or e["kind"],
                today if today != day else "",
                time_text[11:19],
                e["actor"],
                linked(str(e["text"])),
                e.get("corrected_by"),
                e.get("corrected_text"),
                (e.get("data") or {}).get("corrects"),
            )
        )
        day = today
    return rows


@functools.cache
def environment(path: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(path),
        autoescape=True,
        # optional keys (a correction's, a ticket's) read as empty
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["short_time"] = _short_time
    # markdown-it escapes what it does not render (raw HTML is off): its output is safe HTML
    env.filters["markdown"] = lambda text: Markup(_markdown(text))  # noqa: S704
    env.globals.update(
        timeline_rows=timeline_rows,
        milestone_rows=milestone_rows,
        safe_url=_safe_url,
        milestones=MILESTONES,
        roles=ROLES,
        severities=SEVERITIES,
        statuses=STATUSES,
        sections=SECTION_INFO,
    )
    return env


def render(name: str, **context: Any) -> str:
    return environment(str(templates_dir())).get_template(name).render(**context)


def html_response(
    text: str, status: int = 200, extra: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=text, status=status, content_type="text/html", headers={**HEADERS, **(extra or {})}
    )


def error_page(status: int, message: str, who: Viewer | None) -> web.Response:
    return html_response(
        render("error.html.j2", status=status, message=message, viewer=who), status
    )
