"""``/incidents/{id}``: the incident as a page a person can read, where messages link to.

Read-only and server-rendered, every value HTML-escaped (Jinja2 autoescape), no script. It is
authorized like the read API. The web-page work will grow it into the full page; until then it
shows what a responder opening a chat link needs: status, severity, milestones, roles, alerts
with their links, and the timeline.
"""

from __future__ import annotations

from typing import Any

import jinja2
from aiohttp import web

from bridge.core.incidents import MILESTONES
from bridge.core.policy import ROLES
from bridge.http import auth
from bridge.http.api import path_id
from bridge.http.errors import HTTPError, store_unavailable
from bridge.service import AppState
from bridge.store import StoreUnavailable
from bridge.store.queries import get_incident

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>#{{ i.id }} {{ i.title }}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
table{border-collapse:collapse}td,th{padding:.2rem .6rem;text-align:left;vertical-align:top}
th{color:#555;font-weight:600}.sev{font-weight:700}code{font-size:90%}
ol li{margin:.2rem 0}.kind{color:#555}
</style></head><body>
<h1>#{{ i.id }} {{ i.title }}</h1>
<p><span class="sev">{{ i.severity }}</span> · {{ i.status }}
{%- if i.team %} · team {{ i.team }}{% endif %}{% if i.service %} · {{ i.service }}{% endif %}
 · route {{ i.route }}</p>
<h2>Milestones</h2>
<table>{% for name in milestones %}<tr><th>{{ name|replace("_at", "")|replace("_", " ") }}</th>
<td>{{ i[name] or "—" }}</td></tr>{% endfor %}</table>
<h2>Roles</h2>
<table>{% for role in roles %}<tr><th>{{ role }}</th>
<td>{{ (i.roles.get(role) or [])|join(", ") or "unassigned" }}</td></tr>{% endfor %}</table>
<h2>Alerts ({{ i.alerts|length }})</h2>
<ul>{% for a in i.alerts %}<li><b>{{ a.status }}</b>
{%- if a.suppressed and a.status == "firing" %} <b>{{ "silenced" if a.suppressed.get("silenced_by") else "inhibited" }}</b>{% endif %}
 {{ a.labels.get("alertname", a.fingerprint) }}
{%- for k, v in a.labels|dictsort if k != "alertname" %} <code>{{ k }}={{ v }}</code>{% endfor %}
{%- if a.annotations.get("summary") %}: {{ a.annotations["summary"] }}{% endif %}
{%- if safe_url(a.generator_url) %} · <a href="{{ a.generator_url }}">source</a>{% endif %}
{%- if safe_url(a.annotations.get("runbook_url", "")) %} ·
<a href="{{ a.annotations["runbook_url"] }}">runbook</a>{% endif %}
 · since {{ a.starts_at }}</li>{% endfor %}</ul>
<h2>Timeline</h2>
<ol>{% for e in i.timeline %}<li>{{ e.time }} <span class="kind">{{ e.kind }}</span>
{{ e.text }}{% if e.actor %} ({{ e.actor }}){% endif %}</li>{% endfor %}</ol>
</body></html>
"""
_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_TEMPLATE = _ENV.from_string(_PAGE)


def _safe_url(url: Any) -> bool:
    """Only http(s) links: a label could say ``javascript:``."""
    return isinstance(url, str) and url.lower().startswith(("http://", "https://"))


def render(incident: dict[str, Any]) -> str:
    return _TEMPLATE.render(i=incident, milestones=MILESTONES, roles=ROLES, safe_url=_safe_url)


async def incident_page(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api)
    incident_id = path_id(request, "incident")
    try:
        found = await state.store.read(lambda conn: get_incident(conn, incident_id))
    except StoreUnavailable:
        raise store_unavailable() from None
    if found is None:
        raise HTTPError(404, "no such incident")
    return web.Response(
        text=render(found),
        content_type="text/html",
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )
