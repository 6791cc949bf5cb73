"""GET /api/v1/openapi.json: a valid OpenAPI 3.1 document of exactly the routes the app serves,
whose schemas the real answers fit (checked here for the answers the handlers do not build
through their models, and by schemathesis against a live ``serve`` for every operation)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hypothesis
import openapi_spec_validator
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bridge.app import create_app
from bridge.config import Settings, api_token_path
from bridge.core.incidents import MILESTONES
from bridge.core.secrets import Secret
from bridge.http import live, models, openapi, pages, status
from bridge.metrics import Metrics
from bridge.runtime import builtin_runtime
from bridge.service import AppState
from bridge.store import Store
from bridge.targets.base import TargetDeps
from tests.conftest import WRITE, MakeClient, fixture_body, fixture_bytes
from tests.integration.procs import Bridge

# Served, and not an operation: the catch-all that answers JSON 404/405 for any other /api/ path.
# The web pages are for people, not operations of the API (bridge/http/pages.py).
NOT_OPERATIONS = (
    {"/api/{tail}"}
    | {
        re.sub(r"\{(\w+):[^}]+\}", r"{\1}", path)
        for _method, path, _handler in [*pages.ROUTES, *live.ROUTES]
    }
    | {path for path, _handler in status.ROUTES}
)  # the public status page, for people too


def served_operations(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(
        AppState(
            settings=Settings(db=tmp_path / "x.db"),
            store=Store(tmp_path / "x.db"),
            metrics=Metrics.create(),
            runtime=builtin_runtime(3600, TargetDeps()),
        )
    )
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"  # every GET answers HEAD too (the document says so)
        and route.resource.canonical not in NOT_OPERATIONS
    }


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items() for method in item}


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi.build()
    assert document["openapi"].startswith("3.1")
    openapi_spec_validator.validate(document)  # raises when it is not valid
    operation_ids = [
        op["operationId"] for item in document["paths"].values() for op in item.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))


def test_every_served_route_and_method_is_documented_and_nothing_else(tmp_path: Path) -> None:
    served = served_operations(tmp_path)
    documented = documented_operations(openapi.build())
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"
    assert ("get", openapi.PATH) in served


def test_every_incident_query_parameter_is_documented_with_its_type() -> None:
    operation = openapi.build()["paths"]["/api/v1/incidents"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert list(params) == list(openapi.api.INCIDENT_PARAMS)
    assert all(p["in"] == "query" and p["schema"].get("type") for p in params.values())
    assert params["limit"]["schema"]["maximum"] == openapi.api.MAX_LIMIT
    assert params["status"]["schema"]["items"]["enum"][0] == "triggered"


def test_the_models_name_every_milestone() -> None:
    fields = models.IncidentSummary.model_fields
    assert all(name in fields for name in MILESTONES)


async def test_the_document_is_served_and_read_like_the_api(make_client: MakeClient) -> None:
    client: Any = await make_client()
    resp = await client.get(openapi.PATH)
    assert resp.status == 200 and resp.content_type == "application/json"
    assert await resp.json() == json.loads(json.dumps(openapi.build()))
    closed: Any = await make_client(host="0.0.0.0", webhook_token=Secret("hook"))
    denied = await closed.get(openapi.PATH)
    assert denied.status == 401 and (await denied.json())["error"]
    assert (await closed.get(openapi.PATH, headers=WRITE)).status == 200


async def test_answers_not_built_through_their_models_fit_them(make_client: MakeClient) -> None:
    """The receiver's answer, the incident list, an incident and an action's answer are written
    without their models (they have to be fast): each fits its model exactly (no field more)."""
    client: Any = await make_client()
    hook = await client.post("/api/v1/alerts", data=fixture_bytes("firing-group-bearer.json"))
    assert hook.status == 200
    answer = models.WebhookAnswer.model_validate(await hook.json())
    incident_id = answer.incidents[0].id
    note = await client.post(
        f"/api/v1/incidents/{incident_id}/notes", json={"text": "first"}, headers=WRITE
    )
    entry = models.ActionResult.model_validate(await note.json()).events[0].id
    fix = await client.post(
        f"/api/v1/incidents/{incident_id}/notes",
        json={"text": "second", "corrects": entry},
        headers=WRITE,
    )
    models.ActionResult.model_validate(await fix.json())
    ack = await client.post(f"/api/v1/incidents/{incident_id}/acknowledge", headers=WRITE)
    models.ActionResult.model_validate(await ack.json())
    page = models.IncidentPage.model_validate(await (await client.get("/api/v1/incidents")).json())
    assert page.incidents[0].acknowledged_at is not None
    body = await (await client.get(f"/api/v1/incidents/{incident_id}")).json()
    detail = models.IncidentDetail.model_validate(body)
    corrected = [e for e in detail.timeline if e.id == entry]
    assert corrected[0].corrected_by is not None and detail.alerts
    for resp in (
        await client.get("/api/v1/incidents/999"),
        await client.get("/api/v1/incidents?nope=1"),
        await client.post("/api/v1/alerts", data=b"{"),
    ):
        assert resp.status in (400, 404)
        models.Error.model_validate(await resp.json())


async def test_a_correction_of_an_id_beyond_sqlite_integers_is_a_400(
    make_client: MakeClient,
) -> None:
    client: Any = await make_client()
    hook = await client.post("/api/v1/alerts", data=fixture_bytes("firing-group-bearer.json"))
    incident_id = (await hook.json())["incidents"][0]["id"]
    resp = await client.post(
        f"/api/v1/incidents/{incident_id}/notes",
        json={"text": "x", "corrects": 2**63},
        headers=WRITE,
    )
    assert resp.status == 400


# --- schemathesis against a live `serve` --------------------------------------------------

# Short, and the same examples on every run: CI stays fast and a failure is one to reproduce
# (run with SCHEMATHESIS_RANDOM=1 to look further).
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))
MAX_LINE = 8190  # aiohttp's limit of a request line (method, path and query)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    """``incident-bridge serve`` with a webhook token, its generated API token, and incidents
    (ids 1 and up) for the ``{id}`` paths to find."""
    bridge = Bridge(tmp_path_factory.mktemp("openapi")).start()
    try:
        for name in (
            "firing-group-bearer.json",
            "firing-truncated-basic-auth.json",
            "partially-resolved.json",
        ):
            assert bridge.post_webhook(fixture_body(name)).status == 200
        yield bridge
    finally:
        bridge.stop()


@pytest.fixture(scope="module")
def write_token(live: Bridge) -> dict[str, str]:
    token = api_token_path(live.db).read_text().strip()
    return {"Authorization": f"Bearer {token}"}


# The document the app serves (test_the_document_is_served_and_read_like_the_api).
schema = schemathesis.openapi.from_dict(openapi.build())


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("SCHEMATHESIS_RANDOM"),
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_the_live_service_answers_as_documented(
    case: Any, live: Bridge, write_token: dict[str, str]
) -> None:
    # The receiver takes its webhook token; everything else the API's write token.
    headers = live.auth() if case.path.startswith("/api/v1/alerts") else write_token
    response = case.call(base_url=live.url, headers=headers, timeout=10)
    if len(request_line(response.request)) > MAX_LINE:
        # Refused by the HTTP layer before any handler, in plain text (the document says so).
        assert response.status_code == 400
        return
    case.validate_response(response, checks=CHECKS, headers=headers)


def request_line(request: Any) -> str:
    target = urlsplit(request.url)
    query = f"?{target.query}" if target.query else ""
    return f"{request.method} {target.path}{query} HTTP/1.1"
