"""The web pages (docs/web.md): the incident list at ``/`` and the incident at
``/incidents/{id}``, server-rendered from ``templates/pages/`` (Jinja2, every value escaped),
with forms for people's actions.

The pages are one more client of the service: a form is read into the same pydantic body as
the API's action and built into the same command (``http/actions.ACTIONS``), then
``service.act`` runs it with the signed-in person as the actor and the form's one-time key as
its Idempotency-Key (a double submit does it once). The answer is a redirect back to the page
(POST, redirect, GET), or the page again with the refusal and its 4xx status.

One module a job, imported one way: ``render`` (the Jinja2 environment, its filters, the HTML
answer) knows no other; ``signin`` (sessions, the trusted header, CSRF, sign-in and out) uses
``render``; ``views`` (the list, the incident, the fragments) uses both; ``forms`` (the actions
posted, the postmortem's save and publish) uses those three; ``static`` serves the stylesheet
and the script. The live stream is ``http/live.py``. This module gives the routes and installs
them with the middleware that checks the sessions.

Progressive enhancement: everything works without JavaScript. ``static/app.js`` (the only
script, no inline script anywhere: the Content-Security-Policy forbids it) listens to the
incident's Server-Sent Events (``/incidents/{id}/live``) and, when the timeline changes, fetches
the new entries and the status block as HTML fragments rendered by the same templates.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bridge.http.pages.drills import drill_page
from bridge.http.pages.forms import do_action, do_add_override, do_declare, do_end_override
from bridge.http.pages.insights import get_csv as insights_csv
from bridge.http.pages.insights import insights_page
from bridge.http.pages.render import HEADERS, linked, render
from bridge.http.pages.signin import (
    SESSION_KEY,
    Handler,
    check_sessions,
    login,
    login_form,
    logout,
    viewer,
)
from bridge.http.pages.static import static
from bridge.http.pages.views import (
    declare_page,
    fragment,
    incident_context,
    incident_id_of,
    incident_page,
    index,
    oncall_page,
    read_or_503,
)
from bridge.http.session import Viewer
from bridge.service import AppState

__all__ = [
    "HEADERS",
    "ROUTES",
    "Viewer",
    "incident_context",
    "incident_id_of",
    "install",
    "linked",
    "read_or_503",
    "render",
    "viewer",
]

log = logging.getLogger("bridge.pages")  # one logger for the pages, whichever module

# The pages are for people, not an API: the OpenAPI document leaves them out (docs/web.md).
# Their paths are the ROUTES below, and /incidents/{id}/live (http/live.py).
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/", index),
    ("GET", "/login", login_form),
    ("POST", "/login", login),
    ("POST", "/logout", logout),
    ("GET", "/declare", declare_page),
    ("POST", "/declare", do_declare),
    ("GET", "/oncall", oncall_page),
    ("POST", "/oncall/overrides", do_add_override),
    ("POST", "/oncall/overrides/{id}/end", do_end_override),
    ("GET", "/incidents/{id}", incident_page),
    ("POST", "/incidents/{id}/do/{action:[a-z/]+}", do_action),
    ("GET", "/incidents/{id}/fragments/{part}", fragment),
    ("GET", "/static/{name}", static),
    ("GET", "/insights", insights_page),
    ("GET", "/insights/{table}.csv", insights_csv),
    ("GET", "/drills/{id}", drill_page),
]


def install(app: web.Application, session_key: bytes) -> None:
    """The pages' routes (app.py calls this; the live stream's is http/live.py's), and the
    middleware that checks their sessions."""
    app[SESSION_KEY] = session_key
    app.middlewares.append(check_sessions)
    settings = app[AppState.KEY].settings
    if settings.web_user_header:
        trusted = settings.web_user_header_trusted_proxies
        log.info(
            "web pages: people are named by the header %s (scope %s), taken only from %s",
            settings.web_user_header,
            settings.web_user_header_scope,
            ", ".join(trusted) if trusted else "loopback (no --web-user-header-trusted-proxy)",
        )
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
