"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 document of every route the app serves.

The request and response schemas are generated from the pydantic models the handlers use: the
webhook payload (``core.alertmanager.WebhookPayload``), the actions' bodies (``actions.ACTIONS``)
and the answers (``http.models``); the incident list's query parameters are those of
``api.INCIDENT_PARAMS``. What is written here is what a model cannot say: the paths, their
parameters, who may call them and which status codes they answer. The tests compare the
document with the app's router (every route and method, nothing more), validate it with
openapi-spec-validator, and run schemathesis against a live service.

The document depends on nothing but the code: it is built once, on the first request.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from pydantic_core import core_schema, to_json

from bridge import __version__
from bridge.core import alertmanager
from bridge.core.alertmanager import WebhookPayload
from bridge.core.incidents import STATUSES
from bridge.core.policy import SEVERITIES
from bridge.http import (
    actions,
    api,
    auth,
    callbacks,
    declare,
    drills,
    heartbeats,
    insights,
    models,
    oncall,
    postmortem,
    search,
)
from bridge.http.actions import MAX_BODY, MAX_IDEMPOTENCY_KEY
from bridge.service import AppState
from bridge.store.interface import STATES

PATH = "/api/v1/openapi.json"
JSON = "application/json"
REF = "#/components/schemas/{model}"

# Who may call an operation: the read API (a token unless reads are open: a loopback listener
# with no token configured, or --insecure-open-read-api), changes (a write token, always),
# the receiver (its credentials when configured), and the probes and metrics (open).
READ: list[dict[str, list[str]]] = [{"apiToken": []}, {}]
WRITE: list[dict[str, list[str]]] = [{"apiToken": []}]
WEBHOOK: list[dict[str, list[str]]] = [{"webhookBearer": []}, {"webhookBasic": []}, {}]
OPEN: list[dict[str, list[str]]] = []
_READ_NOTE = (
    "Needs an API token (write, read or named) unless reads are open: on a loopback listener "
    "with no token configured, or with `--insecure-open-read-api`."
)
_WRITE_NOTE = "Needs a token with the write scope, always: a read-only token gets 403."

_ERRORS = {
    400: "bad input; `field` names the field, query parameter or header to blame",
    401: "no or a wrong token",
    403: "a read-only token for a change, or an `actor` the token may not name (only the API "
    "token and tokens of scope act-as name someone else)",
    404: "not found",
    409: "not possible in the current state",
    413: "the body is too large",
    422: "unprocessable",
    500: "a bug (logged with its traceback)",
    503: "the store cannot answer now: retry after `Retry-After` seconds",
}
_HEADERS = {
    401: ("WWW-Authenticate", "the scheme and realm to authenticate with"),
    503: ("Retry-After", "seconds to wait before retrying"),
}


class _Schemas(GenerateJsonSchema):
    """pydantic's JSON Schema, with the input a before-validator takes where the model's field
    only says what it makes of it: the webhook's RFC 3339 times are parsed into integers."""

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> dict[str, Any]:
        if _rfc3339(schema):
            return {"type": "string", "format": "date-time"}
        return super().function_before_schema(schema)

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> dict[str, Any]:
        # The model's default (None: no end) is what it makes of no value, not a value to send.
        if _rfc3339(schema["schema"]):
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


def _rfc3339(schema: core_schema.CoreSchema) -> bool:
    return (
        schema["type"] == "function-before"
        and schema["function"]["function"] is alertmanager.parse_timestamp
    )


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _text(description: str, media_type: str = "text/plain") -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


def _errors(statuses: Iterable[int], **descriptions: str) -> dict[str, Any]:
    """JSON error answers; ``descriptions`` (``e404=...``) say more than the default."""
    out: dict[str, Any] = {}
    for status in statuses:
        answer = _json(_ref(models.Error), descriptions.get(f"e{status}", _ERRORS[status]))
        if status in _HEADERS:
            name, what = _HEADERS[status]
            answer["headers"] = {
                name: {"description": what, "required": True, "schema": {"type": "string"}}
            }
        out[str(status)] = answer
    return out


def _id(what: str) -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "description": f"the {what}'s id; anything but a decimal id is a 404",
        "schema": {"type": "integer", "minimum": 1},
        "example": 1,
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    param: dict[str, Any] = {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }
    if schema.get("type") == "array":
        param |= {"style": "form", "explode": True}
    return param


def _values(items: dict[str, Any], description: str) -> tuple[dict[str, Any], str]:
    """A parameter that takes several values: repeated, or separated by commas."""
    return (
        {"type": "array", "items": items},
        f"{description}; repeat the parameter or separate values with commas",
    )


_TEXTS = {"type": "string", "minLength": 1, "maxLength": 200}
_LIMIT = (
    {"type": "integer", "minimum": 1, "maximum": api.MAX_LIMIT, "default": 50},
    "how many at most",
)
_BEFORE = (
    {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
    "an id: continue below it (the `next` link does this)",
)
# Every query parameter of GET /api/v1/incidents (api.INCIDENT_PARAMS), with its type.
_INCIDENT_QUERY: dict[str, tuple[dict[str, Any], str]] = {
    "status": _values({"type": "string", "enum": list(STATUSES)}, "one of these statuses"),
    "severity": _values({"type": "string", "enum": list(SEVERITIES)}, "one of these severities"),
    "team": _values(_TEXTS, f"one of these teams (at most {api.MAX_VALUES})"),
    "route": _values(_TEXTS, f"one of these routes (at most {api.MAX_VALUES})"),
    "service": _values(_TEXTS, f"one of these services (at most {api.MAX_VALUES})"),
    "since": ({"type": "string", "format": "date-time"}, "opened at or after (RFC 3339)"),
    "until": ({"type": "string", "format": "date-time"}, "opened before (RFC 3339)"),
    "limit": _LIMIT,
    "before": _BEFORE,
}
_SEARCH_QUERY: dict[str, tuple[dict[str, Any], str]] = {
    "q": (
        {"type": "string", "minLength": 1, "maxLength": search.MAX_QUERY},
        'words to find (all of them, in one document), `"a phrase"`, `-word` or `NOT word` '
        "to exclude, `OR` between two words for either, `word*` for a prefix; anything else is "
        "a word as typed",
    ),
    "limit": (
        {"type": "integer", "minimum": 1, "maximum": search.MAX_LIMIT, "default": 20},
        "how many incidents at most",
    ),
}
_INSIGHTS_QUERY: dict[str, tuple[dict[str, Any], str]] = {
    "since": (
        {"type": "string", "pattern": "^[1-9][0-9]{0,4}[hdw]$", "default": "30d"},
        "the period: hours, days or weeks back from now (at most ten years)",
    ),
    "label": (
        {"type": "array", "items": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*=.*$"}},
        "`name=value`, repeatable: only incidents with an alert carrying every one",
    ),
}
_NOTIFICATION_QUERY: dict[str, tuple[dict[str, Any], str]] = {
    "state": ({"type": "string", "enum": list(STATES)}, "only rows in this state"),
    "limit": _LIMIT,
    "before": _BEFORE,
}


def _params(known: tuple[str, ...], specs: dict[str, tuple[dict[str, Any], str]]) -> list[Any]:
    """The handler's known query parameters, each as documented here (a KeyError when a new
    one is not: the test building the document fails)."""
    return [_query(name, *specs[name]) for name in known]


def _receiver(operation_id: str, summary: str) -> dict[str, Any]:
    return {
        "tags": ["alerts"],
        "operationId": operation_id,
        "summary": summary,
        "description": "Takes Alertmanager's webhook (payload version 4; unknown fields are "
        "ignored). The 200 goes out once the webhook and its effect are committed. Needs the "
        "webhook credentials (bearer token or basic auth) when they are configured.",
        "security": WEBHOOK,
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref(WebhookPayload)}}},
        "responses": {
            "200": _json(_ref(models.WebhookAnswer), "committed"),
            **_errors(
                (400, 401, 413, 500, 503),
                e400="malformed JSON or a field that does not fit; nothing is written",
                e413="the body is larger than --max-body-bytes",
                e500="a bug (logged); Alertmanager retries",
                e503="the store cannot take the write, or the body did not arrive in time: "
                "retry (Alertmanager does)",
            ),
        },
    }


def _action(suffix: str, summary: str, model: type[BaseModel]) -> dict[str, Any]:
    return {
        "tags": ["actions"],
        "operationId": f"incident_{suffix.replace('/', '_')}",
        "summary": summary,
        "description": f"{_WRITE_NOTE} An empty body is `{{}}`; `actor` defaults to the "
        "token's name.",
        "security": WRITE,
        "parameters": [
            _id("incident"),
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "the first answer is kept: the same key with the same request "
                "gets it again (`Idempotent-Replayed: true`), with another request a 422",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_IDEMPOTENCY_KEY,
                    "pattern": "^[\\x21-\\x7e]([\\x20-\\x7e]*[\\x21-\\x7e])?$",
                },
            },
        ],
        "requestBody": {"required": False, "content": {JSON: {"schema": _ref(model)}}},
        "responses": {
            "200": {
                **_json(_ref(models.ActionResult), "done, or already so (`changed: false`)"),
                "headers": {
                    "Idempotent-Replayed": {
                        "description": "`true` on an answer kept for its Idempotency-Key",
                        "schema": {"type": "string", "enum": ["true"]},
                    }
                },
            },
            **_errors(
                (400, 401, 403, 404, 409, 413, 422, 503),
                e404="no such incident, or no such entry to correct",
                e409="an illegal move: the message names the status and the moves allowed now",
                e413=f"the body is larger than {MAX_BODY} bytes",
                e422="this Idempotency-Key was used for another request",
            ),
        },
    }


_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "the first answer is kept: the same key with the same request gets it again "
    "(`Idempotent-Replayed: true`), with another request a 422",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_IDEMPOTENCY_KEY,
        "pattern": "^[\\x21-\\x7e]([\\x20-\\x7e]*[\\x21-\\x7e])?$",
    },
}
_VERSION = {"type": "integer", "minimum": 1, "maximum": postmortem.MAX_VERSION}


def _postmortem_paths() -> dict[str, Any]:
    """The postmortem's routes (``http/postmortem.ROUTES``); docs/postmortems.md."""
    summaries = {(m.lower(), path): summary for m, path, _h, summary in postmortem.ROUTES}
    base, page = postmortem.BASE, postmortem.PAGE
    template_error = "the postmortem template does not render: the message names its file and line"
    unchanged = "Idempotent-Replayed"
    return {
        base: {
            "get": {
                "tags": ["postmortems"],
                "operationId": "get_postmortem",
                "summary": summaries[("get", base)],
                "description": "The newest version of the narrative (or `version`) over the "
                f"facts regenerated now, and the Markdown rendered from the template. {_READ_NOTE}",
                "security": READ,
                "parameters": [
                    _id("incident"),
                    _query("version", _VERSION, "a saved version (default: the newest)"),
                ],
                "responses": {
                    "200": _json(_ref(postmortem.PostmortemView), "the postmortem"),
                    **_errors(
                        (400, 401, 404, 422, 503),
                        e404="no such incident, or no such version",
                        e422=template_error,
                    ),
                },
            },
            "post": {
                "tags": ["postmortems"],
                "operationId": "save_postmortem",
                "summary": summaries[("post", base)],
                "description": "The sections given replace theirs in the newest version, the "
                "others are kept; a new version when anything differs (`changed: false` and "
                f"nothing written otherwise). {_WRITE_NOTE}",
                "security": WRITE,
                "parameters": [_id("incident"), _IDEMPOTENCY_KEY],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref(postmortem.SaveBody)}},
                },
                "responses": {
                    "200": {
                        **_json(_ref(postmortem.SaveResult), "saved, or already so"),
                        "headers": {
                            unchanged: {
                                "description": "`true` on an answer kept for its Idempotency-Key",
                                "schema": {"type": "string", "enum": ["true"]},
                            }
                        },
                    },
                    **_errors(
                        (400, 401, 403, 404, 413, 422, 503),
                        e400="a bad field, or an unknown section (`field`: `sections.<name>`)",
                        e404="no such incident",
                        e413=f"the body is larger than {postmortem.MAX_BODY} bytes",
                        e422="this Idempotency-Key was used for another request",
                    ),
                },
            },
        },
        f"{base}/versions": {
            "get": {
                "tags": ["postmortems"],
                "operationId": "list_postmortem_versions",
                "summary": summaries[("get", f"{base}/versions")],
                "description": f"Any query parameter is a 400 naming it. {_READ_NOTE}",
                "security": READ,
                "parameters": [_id("incident")],
                "responses": {
                    "200": _json(_ref(postmortem.VersionList), "the versions, oldest first"),
                    **_errors((400, 401, 404, 503), e404="no such incident"),
                },
            }
        },
        f"{base}/diff": {
            "get": {
                "tags": ["postmortems"],
                "operationId": "diff_postmortem",
                "summary": summaries[("get", f"{base}/diff")],
                "description": "`to` defaults to the newest version, `from` to the one before "
                f"it; version 0 is the empty narrative. {_READ_NOTE}",
                "security": READ,
                "parameters": [
                    _id("incident"),
                    _query("from", {**_VERSION, "minimum": 0}, "the older version"),
                    _query("to", {**_VERSION, "minimum": 0}, "the newer version"),
                ],
                "responses": {
                    "200": _json(_ref(postmortem.DiffAnswer), "the diff"),
                    **_errors((400, 401, 404, 503), e404="no such incident, or no such version"),
                },
            }
        },
        f"{base}/publish": {
            "post": {
                "tags": ["postmortems"],
                "operationId": "publish_postmortem",
                "summary": summaries[("post", f"{base}/publish")],
                "description": "Publishes the newest version: into the knowledge base "
                "(`--kb-dir`, committed when it is a Git repository, pushed to `--kb-remote` "
                "through the outbox), or recorded only without one; then the incident is "
                f"closed by the publisher. Safe to repeat. {_WRITE_NOTE}",
                "security": WRITE,
                "parameters": [_id("incident")],
                "requestBody": {
                    "required": False,
                    "content": {JSON: {"schema": _ref(postmortem.PublishBody)}},
                },
                "responses": {
                    "200": _json(_ref(postmortem.PublishResult), "published, or already so"),
                    **_errors(
                        (400, 401, 403, 404, 409, 413, 422, 503),
                        e404="no such incident",
                        e409="not resolved yet, nothing written yet, or a path in the "
                        "knowledge base that would leave its folder (nothing written)",
                        e413=f"the body is larger than {postmortem.MAX_BODY} bytes",
                        e422=template_error,
                    ),
                },
            }
        },
        page: {
            "get": {
                "tags": ["postmortems"],
                "operationId": "published_postmortem_page",
                "summary": summaries[("get", page)],
                "description": 'The Markdown last published, as plain text; where "seen this '
                f"before\" links to. Errors are the API's JSON errors. {_READ_NOTE}",
                "security": READ,
                "parameters": [_id("incident")],
                "responses": {
                    "200": _text("the Markdown"),
                    **_errors((401, 404, 503), e404="no such incident, or nothing published"),
                },
            }
        },
    }


def _declare_paths(paths: dict[str, Any]) -> None:
    """Declare, link and merge (http/declare.py): actions like the others, the declaration's
    answer a 201 with the new incident and its Location."""
    for path, (summary, model, _handler) in declare.ROUTES.items():
        if "{id}" in path:
            suffix = path.rsplit("/", 1)[1]
            paths[path] = {"post": _action(suffix, summary, model)}
            if suffix == "merge":
                ok = paths[path]["post"]["responses"]["200"]
                ok["content"][JSON]["schema"] = _ref(models.MergeResult)
            continue
        operation = _action("declare", summary, model)
        operation["operationId"] = "declare_incident"
        operation["parameters"] = [_IDEMPOTENCY_KEY]
        operation["requestBody"]["required"] = True
        operation["description"] = f"{_WRITE_NOTE} `actor` defaults to the token's name."
        responses = operation["responses"]
        del responses["200"], responses["404"], responses["409"]
        responses["201"] = {
            **_json(
                _ref(models.DeclareResult),
                "declared: the incident as `GET /api/v1/incidents/{id}` shows it",
            ),
            "headers": {
                "Location": {"description": "the new incident's URL", "schema": {"type": "string"}},
                "Idempotent-Replayed": {
                    "description": "`true` on an answer kept for its Idempotency-Key",
                    "schema": {"type": "string", "enum": ["true"]},
                },
            },
        }
        responses["400"]["description"] = (
            "a bad field, an unknown route, a severity the rules do not know, an unknown person "
            "as commander; `field` names it"
        )
        paths[path]["post"] = operation


def _paths() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/api/v1/alerts": {"post": _receiver("receive_alerts", "The Alertmanager receiver")},
        "/api/v1/alerts/": {
            "post": _receiver("receive_alerts_slash", "The receiver, with a trailing slash")
        },
        "/api/v1/incidents": {
            "get": {
                "tags": ["incidents"],
                "operationId": "list_incidents",
                "summary": "Incidents, newest first",
                "description": f"Any other query parameter is a 400 naming it. {_READ_NOTE}",
                "security": READ,
                "parameters": _params(api.INCIDENT_PARAMS, _INCIDENT_QUERY),
                "responses": {
                    "200": _json(_ref(models.IncidentPage), "a page of incidents"),
                    **_errors((400, 401, 503)),
                },
            }
        },
        "/api/v1/incidents/{id}": {
            "get": {
                "tags": ["incidents"],
                "operationId": "get_incident",
                "summary": "An incident with its alerts and timeline",
                "description": _READ_NOTE,
                "security": READ,
                "parameters": [_id("incident")],
                "responses": {
                    "200": _json(_ref(models.IncidentDetail), "the incident"),
                    **_errors((401, 404, 503), e404="no such incident"),
                },
            }
        },
    }
    paths["/api/v1/search"] = {
        "get": {
            "tags": ["incidents"],
            "operationId": "search",
            "summary": "Full-text search over incidents, their timelines and postmortems",
            "description": "Ranked by bm25, one hit per incident (its best-matching document) "
            f"with a snippet. Any other query parameter is a 400 naming it. {_READ_NOTE}",
            "security": READ,
            "parameters": [
                {**p, "required": True} if p["name"] == "q" else p
                for p in _params(search.SEARCH_PARAMS, _SEARCH_QUERY)
            ],
            "responses": {
                "200": _json(_ref(search.SearchAnswer), "the incidents found, best first"),
                **_errors(
                    (400, 401, 503),
                    e400="no `q`, nothing to look for in it, or a search too broad to rank in "
                    "time; `field` names the parameter",
                ),
            },
        }
    }
    paths["/api/v1/insights"] = {
        "get": {
            "tags": ["insights"],
            "operationId": "insights",
            "summary": "MTTA/MTTM/MTTR by week, team, service and route with the trend; noisiest "
            "alerts, interruptions per person, follow-up health, alerts without runbooks",
            "description": "Every table as columns and rows (docs/insights.md); the page "
            "`/insights` and `/insights/<table>.csv` show the same. Drills are left out. Any "
            f"other query parameter is a 400 naming it. {_READ_NOTE}",
            "security": READ,
            "parameters": _params(insights.PARAMS, _INSIGHTS_QUERY),
            "responses": {
                "200": _json(_ref(insights.InsightsAnswer), "the period's tables"),
                **_errors((400, 401, 503), e400="a bad `since` or `label`; `field` names it"),
            },
        }
    }
    paths.update(_heartbeat_paths())
    paths.update(_oncall_paths())
    paths.update(_callback_paths())
    for suffix, (summary, model, _command) in actions.ACTIONS.items():
        paths[f"/api/v1/incidents/{{id}}/{suffix}"] = {"post": _action(suffix, summary, model)}
    _declare_paths(paths)
    paths["/api/v1/incidents/{id}/followup"] = {
        "get": {
            "tags": ["incidents"],
            "operationId": "get_followup",
            "summary": "The incident's follow-up: checklist, findings, validation, tickets",
            "description": _READ_NOTE,
            "security": READ,
            "parameters": [_id("incident")],
            "responses": {
                "200": _json(_ref(models.FollowUpView), "the follow-up"),
                **_errors(
                    (401, 404, 503),
                    e404="no such incident, or it has no follow-up (not mitigated yet)",
                ),
            },
        }
    }
    paths |= _postmortem_paths()
    paths |= _drill_paths()
    paths |= {
        "/api/v1/notifications": {
            "get": {
                "tags": ["notifications"],
                "operationId": "list_notifications",
                "summary": "The outbox, newest first",
                "description": f"Any other query parameter is a 400 naming it. {_READ_NOTE}",
                "security": READ,
                "parameters": _params(api.NOTIFICATION_PARAMS, _NOTIFICATION_QUERY),
                "responses": {
                    "200": _json(_ref(models.NotificationPage), "a page of notifications"),
                    **_errors((400, 401, 503)),
                },
            }
        },
        "/api/v1/notifications/{id}/retry": {
            "post": {
                "tags": ["notifications"],
                "operationId": "retry_notification",
                "summary": "Queue a dead notification again",
                "description": f"With the rows its message carried. {_WRITE_NOTE}",
                "security": WRITE,
                "parameters": [_id("notification")],
                "responses": {
                    "200": _json(_ref(models.Notification), "queued again"),
                    **_errors(
                        (401, 403, 404, 409, 503),
                        e404="no such notification",
                        e409="the notification is not dead",
                    ),
                },
            }
        },
        "/api/v1/messages": {
            "get": {
                "tags": ["notifications"],
                "operationId": "list_messages",
                "summary": "Channel messages (hand-offs, drill announcements), newest first",
                "description": f"Any other query parameter is a 400 naming it. {_READ_NOTE}",
                "security": READ,
                "parameters": _params(api.NOTIFICATION_PARAMS, _NOTIFICATION_QUERY),
                "responses": {
                    "200": _json(_ref(models.ChannelMessagePage), "a page of channel messages"),
                    **_errors((400, 401, 503)),
                },
            }
        },
        "/api/v1/messages/{id}/retry": {
            "post": {
                "tags": ["notifications"],
                "operationId": "retry_message",
                "summary": "Queue a dead channel message again",
                "description": _WRITE_NOTE,
                "security": WRITE,
                "parameters": [_id("message")],
                "responses": {
                    "200": _json(_ref(models.ChannelMessage), "queued again"),
                    **_errors(
                        (401, 403, 404, 409, 503),
                        e404="no such message",
                        e409="the message is not dead",
                    ),
                },
            }
        },
        "/api/v1/rules": {
            "get": {
                "tags": ["operations"],
                "operationId": "get_rules",
                "summary": "The active rules",
                "description": _READ_NOTE,
                "security": READ,
                "responses": {
                    "200": _json(_ref(models.Rules), "the rules, secrets as `<secret>`"),
                    **_errors((401,)),
                },
            }
        },
        PATH: {
            "get": {
                "tags": ["operations"],
                "operationId": "get_openapi",
                "summary": "This document",
                "description": _READ_NOTE,
                "security": READ,
                "responses": {
                    "200": _json(
                        {"type": "object", "required": ["openapi", "info", "paths"]},
                        "the OpenAPI 3.1 document",
                    ),
                    **_errors((401,)),
                },
            }
        },
        "/-/reload": {
            "post": {
                "tags": ["operations"],
                "operationId": "reload_rules",
                "summary": "Reload the rules (as SIGHUP does)",
                "description": _WRITE_NOTE,
                "security": WRITE,
                "responses": {
                    "200": _json(_ref(models.Reloaded), "the new rules are active"),
                    **_errors((401, 403)),
                    "422": _json(
                        _ref(models.ReloadFailed),
                        "the rules do not load; the ones loaded before stay active",
                    ),
                },
            }
        },
        "/-/healthy": {
            "get": {
                "tags": ["operations"],
                "operationId": "healthy",
                "summary": "Liveness",
                "security": OPEN,
                "responses": {"200": _text("`OK`: the process runs")},
            }
        },
        "/-/ready": {
            "get": {
                "tags": ["operations"],
                "operationId": "ready",
                "summary": "Readiness",
                "security": OPEN,
                "responses": {
                    "200": _text("`OK`: the database answers"),
                    "503": _text("the database does not answer, or is damaged: why"),
                },
            }
        },
        "/metrics": {
            "get": {
                "tags": ["operations"],
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "security": OPEN,
                "responses": {"200": _text("the Prometheus text format")},
            }
        },
    }
    return paths


def _callback_paths() -> dict[str, Any]:
    """The paging targets' callbacks (``http/callbacks.py``); docs/oncall.md."""
    error = _ref(models.Error)
    return {
        callbacks.PATH: {
            "post": {
                "tags": ["paging"],
                "operationId": "pagingCallback",
                "summary": "A person acknowledging a page from the phone (Twilio, ntfy, Pushover)",
                "description": "Called by the vendor, not by people: Twilio posts a call's "
                "digits (form, signed with `X-Twilio-Signature`), Pushover an emergency "
                "notification's receipt (form; confirmed with Pushover's receipts API), ntfy's "
                "app the notification's Acknowledge button (no body). The token in the path, "
                "signed with the paging target's key, names the target, the incident and the "
                "person; an acknowledgement is that person's action (Idempotency-Key: the "
                "CallSid, the receipt, the page). No API token.",
                "security": OPEN,
                "parameters": [
                    {
                        "name": "type",
                        "in": "path",
                        "required": True,
                        "description": "the paging target's type",
                        "schema": {"type": "string", "enum": list(callbacks.TYPES)},
                    },
                    {
                        "name": "token",
                        "in": "path",
                        "required": True,
                        "description": "the page's signed token, as the target gave it",
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {"type": "object", "additionalProperties": {"type": "string"}}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "twilio: TwiML (what the call says next); ntfy and "
                        "pushover: `{incident, acknowledged, by}` JSON",
                        "content": {
                            "text/xml": {"schema": {"type": "string"}},
                            JSON: {"schema": {"type": "object"}},
                        },
                    },
                    "400": _json(error, "a missing or malformed field (`field`: CallSid, receipt)"),
                    "401": _json(
                        error,
                        "an unknown, forged or expired token, or a vendor's proof that does not "
                        "hold (`field`: token, X-Twilio-Signature, AccountSid)",
                    ),
                    "404": _json(error, "not a paging type (`field`: type)"),
                    "409": _json(
                        error,
                        "pushover: the receipt is not acknowledged according to Pushover; "
                        "ntfy: the incident cannot be acknowledged now",
                    ),
                    "413": _json(error, _ERRORS[413]),
                    "415": _json(error, "a body that is not a form"),
                    "502": _json(error, "pushover: its receipts API did not answer"),
                    "503": _errors((503,))["503"],
                },
            }
        }
    }


def _heartbeat_paths() -> dict[str, Any]:
    """The dead man's switch (``http/heartbeats.py``); docs/heartbeats.md."""
    return {
        heartbeats.LIST_PATH: {
            "get": {
                "tags": ["heartbeats"],
                "operationId": "listHeartbeats",
                "summary": "The rules' heartbeats: last beat and state (ok or late)",
                "description": _READ_NOTE,
                "security": READ,
                "responses": {
                    "200": _json(_ref(heartbeats.HeartbeatList), "every heartbeat, by name"),
                    **_errors((401, 503)),
                },
            }
        },
        heartbeats.BEAT_PATH: {
            "post": {
                "tags": ["heartbeats"],
                "operationId": "beatHeartbeat",
                "summary": "A beat of a heartbeat (a cron job's dead man's switch)",
                "description": "The heartbeat's last beat is now; a late one's incident is "
                f"mitigated at the scheduler's next tick. No body is read. {_WRITE_NOTE}",
                "security": WRITE,
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "description": "the heartbeat's name in the rules",
                        "schema": {"type": "string"},
                        "example": "nightly-backup",
                    }
                ],
                "responses": {
                    "200": _json(_ref(heartbeats.HeartbeatView), "the heartbeat after the beat"),
                    **_errors(
                        (401, 403, 404, 503),
                        e404="no heartbeat of that name in the rules (`field`: name)",
                    ),
                },
            }
        },
    }


def _drill_paths() -> dict[str, Any]:
    """Drills (``http/drills.py``); docs/drills.md."""
    s = {(m.lower(), path): summary for m, path, _h, summary in drills.ROUTES}
    report = "/api/v1/drills/{id}/report"
    answer = {"type": "object", "additionalProperties": True}
    report_answer = _json(
        answer,
        "the report: `incident`, `targets` (delivered, failed, pending, the last error), "
        "`stages` (seconds against the severity's target), `skipped`, `markdown`",
    )
    return {
        "/api/v1/drills": {
            "post": {
                "tags": ["drills"],
                "operationId": "fire_drill",
                "summary": s[("post", "/api/v1/drills")],
                "description": f'{_WRITE_NOTE} A synthetic alert labelled `drill="true"` '
                "goes through the rules, the store and the targets as a webhook would; its "
                "incident is a drill (DRILL: first in every message, no stakeholders unless "
                "asked for). With `auto`, its four stages are walked at once.",
                "security": WRITE,
                "requestBody": {
                    "required": False,
                    "content": {JSON: {"schema": _ref(drills.DrillBody)}},
                },
                "responses": {
                    "201": _json(
                        answer,
                        "fired: `drill` (its name), `incidents`, `labels`; with `auto`, each "
                        "stage's answer in `auto`",
                    ),
                    **_errors((400, 401, 403, 503), e400="a bad field or an unknown route"),
                },
            },
            "get": {
                "tags": ["drills"],
                "operationId": "find_drill",
                "summary": s[("get", "/api/v1/drills")],
                "description": _READ_NOTE,
                "security": READ,
                "parameters": [
                    {**_query("name", {"type": "string"}, "the drill's name"), "required": True}
                ],
                "responses": {
                    "200": _json(answer, "`drill` and its `incident`"),
                    **_errors((400, 401, 404, 503), e404="no drill incident of that name yet"),
                },
            },
        },
        "/api/v1/drills/{id}/auto": {
            "post": {
                "tags": ["drills"],
                "operationId": "auto_drill",
                "summary": s[("post", "/api/v1/drills/{id}/auto")],
                "description": f"{_WRITE_NOTE} As `auto` when firing: acknowledge, commander, "
                "note, status update, mitigate, the follow-up's items, a postmortem draft.",
                "security": WRITE,
                "parameters": [_id("incident")],
                "responses": {
                    "200": _json(answer, "`incident` and each stage's answer in `auto`"),
                    **_errors((401, 403, 404, 503), e404="no such incident, or not a drill"),
                },
            }
        },
        report: {
            "get": {
                "tags": ["drills"],
                "operationId": "get_drill_report",
                "summary": s[("get", report)],
                "description": _READ_NOTE,
                "security": READ,
                "parameters": [_id("incident")],
                "responses": {
                    "200": report_answer,
                    **_errors((401, 404, 503), e404="no such incident, or not a drill"),
                },
            },
            "post": {
                "tags": ["drills"],
                "operationId": "write_drill_report",
                "summary": s[("post", report)],
                "description": f"{_WRITE_NOTE} Written as `drills/<id>.md` under the "
                "knowledge base's folder (committed when it is a Git repository).",
                "security": WRITE,
                "parameters": [_id("incident")],
                "responses": {
                    "200": report_answer,
                    **_errors(
                        (401, 403, 404, 409, 503),
                        e404="no such incident, or not a drill",
                        e409="the knowledge base's folder cannot be written",
                    ),
                },
            },
        },
    }


def _oncall_paths() -> dict[str, Any]:
    """Who is on call, overrides, calendars (``http/oncall.py``); docs/oncall.md."""
    rotation = {
        "name": "rotation",
        "in": "path",
        "required": True,
        "description": "a rotation's name in the rules",
        "schema": {"type": "string"},
        "example": "ops",
    }
    token = {
        "name": "token",
        "in": "query",
        "required": False,
        "description": "a read-only token (calendar apps cannot send headers); a token that "
        "can write is refused here (403). Never logged",
        "schema": {"type": "string"},
    }
    ics = _text("the shifts of 8 weeks back and 26 ahead, one VEVENT each", "text/calendar")
    feed_errors = _errors((400, 401, 403, 404, 503), e403="a token that can write in the URL")
    key = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "a retry with the same key gets the override it made "
        "(`Idempotent-Replayed: true`); the key with another override is a 422",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
    }
    return {
        oncall.PATH: {
            "get": {
                "tags": ["oncall"],
                "operationId": "whoIsOnCall",
                "summary": "Every rotation's holder now and next, with the hand-off time",
                "description": f"Overrides applied (the rules file's and the stored ones). "
                f"{_READ_NOTE}",
                "security": READ,
                "parameters": [
                    {
                        "name": "at",
                        "in": "query",
                        "required": False,
                        "description": "another instant (RFC 3339); default now",
                        "schema": {"type": "string", "format": "date-time"},
                    }
                ],
                "responses": {
                    "200": _json(_ref(oncall.OnCallAnswer), "every rotation, by name"),
                    **_errors((400, 401, 503)),
                },
            }
        },
        oncall.OVERRIDES_PATH: {
            "get": {
                "tags": ["oncall"],
                "operationId": "listOverrides",
                "summary": "The rotation's stored overrides still holding (`all=true`: every one)",
                "description": _READ_NOTE,
                "security": READ,
                "parameters": [
                    rotation,
                    {
                        "name": "all",
                        "in": "query",
                        "required": False,
                        "description": "`true`: ended and past ones too",
                        "schema": {"type": "string", "enum": ["true", "1"]},
                    },
                ],
                "responses": {
                    "200": _json(_ref(oncall.OverrideList), "by start"),
                    **_errors((400, 401, 404, 503), e404="no such rotation"),
                },
            },
            "post": {
                "tags": ["oncall"],
                "operationId": "addOverride",
                "summary": "Someone holds the rotation from start to end instead of its schedule",
                "description": "Applied at once; stored overrides win over the rules file's for "
                f"their span. {_WRITE_NOTE}",
                "security": WRITE,
                "parameters": [rotation, key],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref(oncall.OverrideBody)}},
                },
                "responses": {
                    "201": _json(_ref(oncall.OverrideView), "made"),
                    "200": _json(_ref(oncall.OverrideView), "made before with this key"),
                    **_errors(
                        (400, 401, 403, 413, 422, 503),
                        e400="an unknown rotation or person, an end not after the start or in "
                        "the past, a bad time; `field` names it",
                    ),
                },
            },
        },
        oncall.OVERRIDE_PATH: {
            "delete": {
                "tags": ["oncall"],
                "operationId": "endOverride",
                "summary": "End an override now (one not begun is cancelled); the row is kept",
                "description": _WRITE_NOTE,
                "security": WRITE,
                "parameters": [rotation, _id("override")],
                "responses": {
                    "200": _json(_ref(oncall.OverrideView), "ended (or already over)"),
                    **_errors((401, 403, 404, 503), e404="no such override of this rotation"),
                },
            }
        },
        oncall.ROTATION_ICS: {
            "get": {
                "tags": ["oncall"],
                "operationId": "rotationCalendar",
                "summary": "The rotation's shifts as an iCalendar feed (RFC 5545)",
                "security": READ,
                "parameters": [rotation, token],
                "responses": {"200": ics, **feed_errors},
            }
        },
        oncall.PERSON_ICS: {
            "get": {
                "tags": ["oncall"],
                "operationId": "personCalendar",
                "summary": "A person's shifts in every rotation as an iCalendar feed (RFC 5545)",
                "security": READ,
                "parameters": [
                    {
                        "name": "person",
                        "in": "path",
                        "required": True,
                        "description": "a member of a rotation",
                        "schema": {"type": "string"},
                        "example": "amara",
                    },
                    token,
                ],
                "responses": {"200": ics, **feed_errors},
            }
        },
    }


def _components() -> dict[str, Any]:
    requests: list[type[BaseModel]] = [WebhookPayload]
    for _summary, model, _command in actions.ACTIONS.values():
        if model not in requests:
            requests.append(model)
    for _summary, model, _handler in declare.ROUTES.values():
        requests.append(model)
    requests += [postmortem.SaveBody, postmortem.PublishBody]
    requests.append(oncall.OverrideBody)
    requests.append(drills.DrillBody)
    answers: list[type[BaseModel]] = [
        models.Error,
        models.WebhookAnswer,
        models.IncidentPage,
        models.IncidentDetail,
        models.ActionResult,
        models.DeclareResult,
        models.MergeResult,
        models.NotificationPage,
        models.ChannelMessagePage,
        models.ChannelMessage,
        models.Notification,
        models.Rules,
        search.SearchAnswer,
        insights.InsightsAnswer,
        heartbeats.HeartbeatList,
        heartbeats.HeartbeatView,
        oncall.OnCallAnswer,
        oncall.OverrideList,
        oncall.OverrideView,
        postmortem.PostmortemView,
        postmortem.SaveResult,
        postmortem.VersionList,
        postmortem.DiffAnswer,
        postmortem.PublishResult,
        models.Reloaded,
        models.ReloadFailed,
    ]
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((m, "validation") for m in requests),
        *((m, "serialization") for m in answers),
    ]
    _, schemas = models_json_schema(wanted, ref_template=REF, schema_generator=_Schemas)
    return {
        "schemas": schemas["$defs"],
        "securitySchemes": {
            "apiToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token: the write token (`--api-token-file`, or the one "
                "`serve` generates next to the database), a read token, or a named token with "
                "its scope. Reads take any of them; changes need the write scope.",
            },
            "webhookBearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "The receiver's token (`--webhook-token-file`), when configured",
            },
            "webhookBasic": {
                "type": "http",
                "scheme": "basic",
                "description": "The receiver's basic auth, when configured",
            },
        },
    }


def build() -> dict[str, Any]:
    """The document, built anew."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "incident-bridge",
            "version": __version__,
            "description": "Alertmanager webhooks in; incidents, their timeline and their "
            'notifications out. Errors are `{"error", "field"?}` JSON, except those of '
            "`/-/*` and `/metrics`; an /api/ path that does not exist is a 404, a method a "
            "path does not take a 405 with `Allow`. A request the HTTP layer refuses before "
            "any handler (a request line over 8190 bytes, a header over 8190) is a 400 in plain "
            "text. Every GET also answers HEAD. See docs/api.md.",
        },
        "tags": [
            {"name": "alerts", "description": "the Alertmanager receiver"},
            {"name": "incidents", "description": "the read API"},
            {"name": "actions", "description": "people's actions on an incident"},
            {"name": "postmortems", "description": "the postmortem and the knowledge base"},
            {"name": "notifications", "description": "the outbox"},
            {"name": "heartbeats", "description": "the dead man's switch"},
            {"name": "oncall", "description": "who is on call, overrides, calendars"},
            {"name": "paging", "description": "acknowledgements from the paging targets"},
            {"name": "insights", "description": "where MTTR goes (docs/insights.md)"},
            {"name": "operations", "description": "rules, probes, metrics, this document"},
        ],
        "paths": _paths(),
        "components": _components(),
    }


@functools.cache
def document() -> bytes:
    """The document as JSON, built once."""
    return to_json(build())


async def serve(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    auth.authorize(request, state.api)
    return web.Response(body=document(), content_type=JSON)
