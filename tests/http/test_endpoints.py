from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.app import create_app
from bridge.config import Settings
from bridge.core.secrets import Secret
from bridge.metrics import Metrics
from bridge.runtime import builtin_runtime
from bridge.service import AppState
from bridge.store import Store
from bridge.targets.base import TargetDeps
from tests.conftest import (
    BOTH_BACKENDS,
    FIXTURES,
    WRITE,
    MakeClient,
    fixture_body,
    fixture_bytes,
    open_store,
)

# Each test's service runs on SQLite and on PostgreSQL (tests/conftest.py: service_db).
pytestmark = BOTH_BACKENDS

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
async def client(make_client: MakeClient) -> Any:
    return await make_client(webhook_token=Secret(TOKEN))


async def post(client: Any, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return await client.post(
        "/api/v1/alerts", data=body, headers=headers if headers is not None else AUTH
    )


async def test_webhook_accepted_and_names_incidents(client: Any) -> None:
    resp = await post(client, fixture_bytes("firing-group-bearer.json"))
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok"
    assert body["incidents"] == [
        {
            "id": 1,
            "key": '{}:{alertname="HighErrorRate", service="checkout"}',
            "status": "triggered",
            "changed": True,
        }
    ]


@pytest.mark.parametrize(
    ("name", "headers"),
    [
        ("missing", {}),
        ("wrong token", {"Authorization": "Bearer nope"}),
        ("token prefix", {"Authorization": f"Bearer {TOKEN[:-1]}"}),
        ("wrong scheme", {"Authorization": f"Token {TOKEN}"}),
        ("basic when only a token is set", basic("alertmanager", TOKEN)),
        ("garbage", {"Authorization": "Bearer"}),
    ],
)
async def test_webhook_auth_rejects(client: Any, name: str, headers: dict[str, str]) -> None:
    resp = await post(client, fixture_bytes("firing-group-bearer.json"), headers)
    assert resp.status == 401, name
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in await resp.text()


async def test_basic_auth(make_client: MakeClient) -> None:
    client = await make_client(basic_user="alertmanager", basic_password=Secret("pa55"))
    body = fixture_bytes("firing-truncated-basic-auth.json")
    ok = await post(client, body, basic("alertmanager", "pa55"))
    assert ok.status == 200
    for headers in (
        basic("alertmanager", "nope"),
        basic("other", "pa55"),
        {"Authorization": "Basic !!"},
        {},
    ):
        resp = await post(client, body, headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic")


async def test_captured_basic_auth_header_is_accepted(make_client: MakeClient) -> None:
    capture = json.loads((FIXTURES / "firing-truncated-basic-auth.json").read_text())
    client = await make_client(basic_user="alertmanager", basic_password=Secret("pa55"))
    resp = await post(
        client,
        json.dumps(capture["body"]).encode(),
        {"Authorization": capture["headers"]["Authorization"]},
    )
    assert resp.status == 200


BAD_BODIES = [
    ("malformed JSON", b'{"alerts": [', ""),
    ("non-UTF-8", b'{"groupKey": "\xff\xfe"}', ""),
    ("deep nesting", b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", ""),
    (
        "wrong type",
        json.dumps({**fixture_body("firing-group-bearer.json"), "alerts": "none"}).encode(),
        "alerts",
    ),
    (
        "missing field",
        json.dumps(
            {k: v for k, v in fixture_body("firing-group-bearer.json").items() if k != "groupKey"}
        ).encode(),
        "groupKey",
    ),
    (
        "bad timestamp",
        fixture_bytes("firing-group-bearer.json").replace(
            b"2026-11-27T04:05:13.998173144Z", b"2026-11-27 late"
        ),
        "alerts[0].startsAt",
    ),
    ("empty", b"", ""),
    ("JSON array", b"[]", ""),
]


@pytest.mark.parametrize(("name", "body", "field"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
async def test_bad_input_is_400_naming_the_field_and_writes_nothing(
    client: Any, name: str, body: bytes, field: str
) -> None:
    resp = await post(client, body)
    assert resp.status == 400, name
    err = await resp.json()
    assert err["error"]
    if field:
        assert err["field"] == field
    listed = await (await client.get("/api/v1/incidents")).json()
    assert listed["incidents"] == []


async def test_body_over_limit_is_413_by_content_length(make_client: MakeClient) -> None:
    client = await make_client(webhook_token=Secret(TOKEN), max_body_bytes=2048)
    resp = await post(client, b"{" + b" " * 4096 + b"}")
    assert resp.status == 413


async def test_body_over_limit_is_413_when_chunked(make_client: MakeClient) -> None:
    client = await make_client(webhook_token=Secret(TOKEN), max_body_bytes=2048)

    async def chunks() -> Any:
        for _ in range(100):
            yield b" " * 1024

    resp = await client.post("/api/v1/alerts", data=chunks(), headers=AUTH)
    assert resp.status == 413


async def test_no_redirect_for_trailing_slash(client: Any) -> None:
    resp = await client.post(
        "/api/v1/alerts/",
        data=fixture_bytes("firing-group-bearer.json"),
        headers=AUTH,
        allow_redirects=False,
    )
    assert resp.status == 200


async def test_get_on_the_receiver_is_405_not_5xx(client: Any) -> None:
    resp = await client.get("/api/v1/alerts")
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST"
    assert (await resp.json())["error"] == "Method Not Allowed"


async def test_api_errors_are_json_and_other_paths_are_not(client: Any) -> None:
    resp = await client.get("/api/v2/nothing")
    assert resp.status == 404
    assert await resp.json() == {"error": "Not Found"}
    resp = await client.delete("/api/v1/incidents/1")
    assert resp.status == 405
    assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD"}
    resp = await client.get("/nothing")
    assert resp.status == 404
    assert resp.content_type == "text/plain"
    # A path no route's pattern matches, such as one with a newline, is still a JSON 404.
    resp = await client.get("/api/v1/incidents/%0A%7B")
    assert resp.status == 404
    assert await resp.json() == {"error": "Not Found"}


async def test_read_api_filters_and_paginates(client: Any) -> None:
    for i in range(5):
        body = fixture_body("ha-pair-single-delivery.json")
        body["groupKey"] = f"g{i}"
        body["alerts"][0]["fingerprint"] = f"{i:016x}"
        body["alerts"][0]["labels"]["severity"] = "critical" if i % 2 else "warning"
        assert (await post(client, json.dumps(body).encode())).status == 200
    page = await (await client.get("/api/v1/incidents?limit=2")).json()
    assert [i["id"] for i in page["incidents"]] == [5, 4]
    assert page["next"] is not None
    page2 = await (await client.get(page["next"])).json()
    assert [i["id"] for i in page2["incidents"]] == [3, 2]
    sev1 = await (await client.get("/api/v1/incidents?severity=sev1")).json()
    assert [i["id"] for i in sev1["incidents"]] == [4, 2]
    both = await (await client.get("/api/v1/incidents?severity=sev1,sev3&status=triggered")).json()
    assert len(both["incidents"]) == 5 and both["next"] is None
    one = await (await client.get("/api/v1/incidents/3")).json()
    assert one["id"] == 3 and one["alerts"][0]["fingerprint"] == f"{2:016x}"
    assert [e["kind"] for e in one["timeline"]] == ["opened", "alert_fired"]


@pytest.mark.parametrize(
    ("url", "status", "field"),
    [
        ("/api/v1/incidents?status=burning", 400, "status"),
        ("/api/v1/incidents?severity=p1", 400, "severity"),
        ("/api/v1/incidents?limit=0", 400, "limit"),
        ("/api/v1/incidents?limit=x", 400, "limit"),
        ("/api/v1/incidents?before=-3", 400, "before"),
        ("/api/v1/incidents/999", 404, None),
        ("/api/v1/incidents/abc", 404, None),
        ("/api/v1/incidents/99999999999999999999999", 404, None),
    ],
)
async def test_read_api_bad_queries(client: Any, url: str, status: int, field: str | None) -> None:
    resp = await client.get(url)
    assert resp.status == status
    body = await resp.json()
    assert body.get("field") == field


async def test_read_api_token(make_client: MakeClient) -> None:
    client = await make_client(api_token=Secret("reader"))
    assert (await client.get("/api/v1/incidents")).status == 401
    assert (
        await client.get("/api/v1/incidents/1", headers={"Authorization": "Bearer x"})
    ).status == 401
    ok = await client.get("/api/v1/incidents", headers={"Authorization": "Bearer reader"})
    assert ok.status == 200
    # ops endpoints stay open for probes and scrapers
    assert (await client.get("/-/healthy")).status == 200


async def test_ops_endpoints_and_metrics(client: Any) -> None:
    assert (await client.get("/-/healthy")).status == 200
    assert (await client.get("/-/ready")).status == 200
    await post(client, fixture_bytes("firing-group-bearer.json"))
    await post(client, fixture_bytes("firing-group-bearer.json"))
    await post(client, b"{", AUTH)
    await post(client, b"{}", {})
    text = await (await client.get("/metrics")).text()
    for line in [
        'incident_bridge_webhook_requests_total{code="200"} 2.0',
        'incident_bridge_webhook_requests_total{code="400"} 1.0',
        'incident_bridge_webhook_requests_total{code="401"} 1.0',
        'incident_bridge_alerts_received_total{status="firing"} 4.0',
        'incident_bridge_incidents_opened_total{severity="sev1",team="none"} 1.0',
        'incident_bridge_incidents_open{severity="sev1",status="triggered"} 1.0',
        "incident_bridge_webhooks_unchanged_total 1.0",
    ]:
        assert line in text
    assert TOKEN not in text


async def test_open_incidents_gauge_is_read_from_the_store(make_client: MakeClient) -> None:
    first = await make_client(webhook_token=Secret(TOKEN))
    await post(first, fixture_bytes("firing-group-bearer.json"))
    settings = first.server.app[AppState.KEY].settings
    # the first one stops, a second app opens the same database, as after a restart: counters
    # of the process start at zero, the gauge and the counters computed from the store do not
    first.server.app[AppState.KEY].store.close()
    store = open_store(Settings(db=settings.db, database_url=settings.database_url))
    try:
        state = AppState(
            settings=Settings(db=settings.db, database_url=settings.database_url),
            store=store,
            metrics=Metrics.create(),
            runtime=builtin_runtime(3600, TargetDeps()),
        )
        async with TestClient(TestServer(create_app(state))) as again:
            text = await (await again.get("/metrics")).text()
        assert 'incident_bridge_incidents_open{severity="sev1",status="triggered"} 1.0' in text
        assert 'incident_bridge_incidents_opened_total{severity="sev1",team="none"} 1.0' in text
        # the process's own counters start again, at 0 (created so before their first event)
        assert 'incident_bridge_webhook_requests_total{code="200"} 0.0' in text
    finally:
        store.close()


async def test_store_failure_is_503(make_client: MakeClient) -> None:
    client = await make_client(webhook_token=Secret(TOKEN))
    state = client.server.app[AppState.KEY]
    # the writer's connection made read-only: every write after this one fails
    if isinstance(state.store, Store):
        read_only = "PRAGMA query_only = ON"
    else:
        read_only = "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
    await state.store.write(lambda c: c.execute(read_only))
    resp = await post(client, fixture_bytes("firing-group-bearer.json"))
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"


def close_to_connections(url: str) -> None:
    """PostgreSQL's database at ``url`` refuses new connections and its open ones are ended,
    from a connection to the server's ``postgres`` database."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')  # type: ignore[arg-type]
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


async def test_api_store_failure_is_503_with_its_message(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """The database vanished under the running service (SQLite's file moved away; PostgreSQL's
    database closed to connections, its open ones ended): the read API cannot open it."""
    client = await make_client(webhook_token=Secret(TOKEN))
    state = client.server.app[AppState.KEY]

    def move_away() -> None:
        for suffix in ("", "-wal", "-shm"):
            path = Path(f"{state.store.path}{suffix}")
            if path.exists():
                path.rename(tmp_path / f"moved{suffix}")

    if isinstance(state.store, Store):
        move_away()
    else:
        close_to_connections(state.store.url.conninfo)
    for url in ("/api/v1/incidents", "/api/v1/incidents/1", "/api/v1/notifications"):
        resp = await client.get(url)
        assert resp.status == 503, url
        assert resp.headers["Retry-After"] == "1"
        assert await resp.json() == {"error": "store unavailable, retry later"}


async def test_content_encoding(make_client: MakeClient) -> None:
    import gzip

    client = await make_client(webhook_token=Secret(TOKEN), max_body_bytes=4096)
    body = fixture_bytes("firing-group-bearer.json")
    gz = {**AUTH, "Content-Encoding": "gzip"}
    assert (await post(client, gzip.compress(body), gz)).status == 200
    assert (await post(client, body, gz)).status == 400  # says gzip, is not
    # a small gzip body that inflates past the limit is refused while inflating
    bomb = gzip.compress(b"{" + b" " * 100_000 + b"}")
    assert len(bomb) < 4096
    assert (await post(client, bomb, gz)).status == 413


async def test_notifications_api(client: Any) -> None:
    await post(client, fixture_bytes("firing-group-bearer.json"))
    listed = await (await client.get("/api/v1/notifications")).json()
    [row] = listed["notifications"]  # the built-in policy tells the console of the opening
    assert (row["target"], row["tier"], row["event"], row["state"]) == (
        "console",
        "general",
        "opened",
        "pending",
    )
    assert row["idempotency_key"] == f"incident-1/general/console/opened/{row['event_id']}"
    assert (await (await client.get("/api/v1/notifications?state=dead")).json())[
        "notifications"
    ] == []
    assert (await client.get("/api/v1/notifications?state=lost")).status == 400
    assert (await client.get("/api/v1/notifications?state=dead,pending")).status == 400
    assert (await client.post(f"/api/v1/notifications/{row['id']}/retry")).status == 401
    conflict = await client.post(f"/api/v1/notifications/{row['id']}/retry", headers=WRITE)
    assert conflict.status == 409  # only dead ones can be retried
    assert (await client.post("/api/v1/notifications/999/retry", headers=WRITE)).status == 404
    assert (await client.post("/api/v1/notifications/x/retry", headers=WRITE)).status == 404


async def test_a_body_that_never_arrives_is_503_to_retry(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from bridge.http import receiver

    monkeypatch.setattr(receiver, "BODY_READ_TIMEOUT_S", 0.3)
    client = await make_client(webhook_token=Secret(TOKEN))
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b'\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"status": '
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    writer.close()
    await writer.wait_closed()
    # A 408 would be final for Alertmanager: the group would be dropped.
    assert answer.startswith(b"HTTP/1.1 503")
    assert b"Retry-After: 1" in answer and b"application/json" in answer


async def test_a_mitigated_incident_is_not_counted_open(client: Any) -> None:
    """Open means being worked: a mitigated incident is in its follow-up."""
    await post(client, fixture_bytes("firing-group-bearer.json"))
    firing = await (await client.get("/metrics")).text()
    assert 'incident_bridge_incidents_open{severity="sev1",status="triggered"} 1.0' in firing
    resolved = fixture_body("firing-group-bearer.json")
    for alert in resolved["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2026-11-27T05:05:13Z"
    resolved["status"] = "resolved"
    await post(client, json.dumps(resolved).encode())
    text = await (await client.get("/metrics")).text()
    assert 'incident_bridge_incidents_open{severity="sev1",status="triggered"} 0.0' in text
    assert 'status="mitigated"' not in text


async def test_a_bug_in_a_handler_is_a_json_500_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from aiohttp.test_utils import make_mocked_request

    from bridge.http.errors import json_errors

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    with caplog.at_level("ERROR", "bridge.http"):
        resp = await json_errors(broken)(make_mocked_request("GET", "/api/v1/x"))
    assert isinstance(resp, web.Response) and resp.status == 500
    assert resp.content_type == "application/json"
    assert resp.text is not None and "boom" not in resp.text
    assert "GET /api/v1/x failed" in caplog.text and "boom" in caplog.text
