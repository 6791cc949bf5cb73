"""bridge/promql.py against the real Prometheus (scraping an exporter whose values the test
sets): a check that passes, one that fails and names the value, empty / not empty, a query
Prometheus rejects, a range vector, the evaluation time, Prometheus down or silent. And the
request itself against a stub (form fields, token, answers that are not Prometheus's)."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from bridge.core.checks import Check, CheckResult
from bridge.core.secrets import Secret
from bridge.promql import query, run_checks
from tests.integration import prometheus as fixtures
from tests.integration.procs import LOOPBACK, free_port
from tests.integration.prometheus import PrometheusWithExporter

prometheus = fixtures.prometheus
shared_prometheus = fixtures.shared_prometheus
integration = pytest.mark.integration


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def one(
    session: aiohttp.ClientSession, url: str | None, check: Check, at: float | None = None
) -> CheckResult:
    [result] = await run_checks(session, url, None, [check], at, timeout_s=5)
    return result


@integration
async def test_a_check_that_passes(
    shared_prometheus: PrometheusWithExporter, session: aiohttp.ClientSession
) -> None:
    prom = shared_prometheus
    prom.exporter.set("error_ratio", 0.001, service="pass")
    prom.wait_for_value('error_ratio{service="pass"}', 0.001)
    r = await one(session, prom.url, Check("errors", 'error_ratio{service="pass"}', "< 0.01"))
    assert r.passed and r.error is None, r
    assert r.reason == "0.001 is < 0.01"
    [sample] = r.values
    assert sample.value == 0.001
    assert sample.labels["__name__"] == "error_ratio" and sample.labels["job"] == "exporter"
    assert sample.labels["service"] == "pass"


@integration
async def test_a_check_that_fails_names_the_value(
    shared_prometheus: PrometheusWithExporter, session: aiohttp.ClientSession
) -> None:
    prom = shared_prometheus
    prom.exporter.set("error_ratio", 0.2, service="fail")
    prom.wait_for_value('error_ratio{service="fail"}', 0.2)
    r = await one(session, prom.url, Check("errors", 'error_ratio{service="fail"}', "< 0.01"))
    assert not r.passed and r.error is None
    assert r.reason == "0.2 is not < 0.01"
    # an aggregation works the same; every series must meet the comparison
    prom.exporter.set("error_ratio", 0.001, service="fail", pod="b")
    prom.wait_for_value('error_ratio{service="fail", pod="b"}', 0.001)
    r = await one(session, prom.url, Check("e", 'error_ratio{service="fail"}', "< 0.01"))
    assert not r.passed and r.series == 2
    assert r.reason.startswith("1 of 2 series are not < 0.01: 0.2 error_ratio{")
    r = await one(session, prom.url, Check("e", 'max(error_ratio{service="fail"})', "<= 0.2"))
    assert r.passed and r.reason == "0.2 is <= 0.2"


@integration
async def test_empty_and_not_empty(
    shared_prometheus: PrometheusWithExporter, session: aiohttp.ClientSession
) -> None:
    prom = shared_prometheus
    prom.exporter.set("queue_stuck", 1, queue="emails")
    prom.wait_for_value("queue_stuck", 1)
    some, none = "queue_stuck", 'queue_stuck{queue="nothing-here"}'
    assert (await one(session, prom.url, Check("a", none, "empty"))).passed
    assert (await one(session, prom.url, Check("b", some, "not empty"))).passed
    r = await one(session, prom.url, Check("c", some, "empty"))
    assert not r.passed and r.reason.startswith("the query returned 1 series, expected none: 1 ")
    r = await one(session, prom.url, Check("d", none, "not empty"))
    assert not r.passed and r.reason.startswith("no data")
    # a comparison over no series is no data, not a pass
    r = await one(session, prom.url, Check("e", none, "< 1"))
    assert not r.passed and r.error is None and r.reason.startswith("no data")
    # a series that goes away goes stale: then the query is empty
    prom.exporter.remove("queue_stuck", queue="emails")
    prom.wait_for_absent("queue_stuck")
    assert (await one(session, prom.url, Check("f", some, "empty"))).passed


@integration
async def test_a_query_prometheus_rejects_is_an_error_never_a_pass(
    shared_prometheus: PrometheusWithExporter, session: aiohttp.ClientSession
) -> None:
    url = shared_prometheus.url
    for expect in ("empty", "< 1", "not empty"):
        r = await one(session, url, Check("broken", "sum(rate(error_ratio[5m]", expect))
        assert not r.passed and r.values == ()
        assert (r.error or "").startswith("Prometheus rejected the query: bad_data: "), r.error
        assert "parse error" in (r.error or "")
    r = await one(session, url, Check("range", "error_ratio[1m]", "< 1"))
    assert not r.passed and "range vector (matrix)" in (r.error or "")
    r = await one(session, url, Check("scalar", "scalar(vector(3))", ">= 3"))
    assert r.passed and r.reason == "3 is >= 3"
    r = await one(session, url, Check("nan", "vector(0) / vector(0)", "< 1"))
    assert not r.passed and r.reason.startswith("NaN is not < 1 (NaN, not a number")
    r = await one(session, url, Check("inf", "vector(1) / vector(0)", "< 1"))
    assert not r.passed and "infinite" in r.reason


@integration
async def test_the_checks_are_evaluated_at_the_time_given(
    prometheus: PrometheusWithExporter, session: aiohttp.ClientSession
) -> None:
    prom = prometheus  # a fresh one (the function-scoped fixture)
    url, exporter = prom
    assert url == prom.url and exporter is prom.exporter
    prom.exporter.set("latency_seconds", 0.1, service="at")
    prom.wait_for_value('latency_seconds{service="at"}', 0.1)
    await asyncio.sleep(1.5)  # scraped more than once at 0.1
    window_end = time.time()
    prom.exporter.set("latency_seconds", 3.0, service="at")
    prom.wait_for_value('latency_seconds{service="at"}', 3.0)
    checks = [
        Check("latency", 'latency_seconds{service="at"}', "< 0.5"),
        Check("broken", "latency_seconds{", "< 0.5"),
        Check("up", 'up{job="exporter"}', "== 1"),
    ]
    then = await run_checks(session, prom.url, None, checks, window_end)
    now = await run_checks(session, prom.url, None, checks, None)
    assert [r.name for r in then] == ["latency", "broken", "up"]  # in the order given
    assert [r.passed for r in then] == [True, False, True]
    assert [r.passed for r in now] == [False, False, True]
    assert now[0].reason == "3 is not < 0.5"
    # what the service calls: checks as stored, its own session, the records it keeps
    outcomes = await run_checks(
        None,
        prom.url,
        Secret("ignored-by-this-prometheus"),
        [{"name": c.name, "expr": c.expr, "expect": c.expect} for c in checks],
        int(window_end * 1e9) / 1e9,
    )
    assert [(o.name, o.passed) for o in outcomes] == [
        ("latency", True), ("broken", False), ("up", True),
    ]  # fmt: skip
    assert outcomes[0].record()["values"][0]["value"] == 0.1
    assert outcomes[0].record()["values"][0]["labels"]["service"] == "at"


async def test_prometheus_down_is_an_error(session: aiohttp.ClientSession) -> None:
    url = f"http://{LOOPBACK}:{free_port()}"  # nothing listens there
    r = await one(session, url, Check("errors", "up", "empty"))
    assert not r.passed
    assert (r.error or "").startswith(f"cannot reach Prometheus at {url}: "), r.error


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(8)
        yield f"http://{LOOPBACK}:{sock.getsockname()[1]}"


async def test_prometheus_that_does_not_answer_is_an_error(
    session: aiohttp.ClientSession, silent_server: str
) -> None:
    started = time.monotonic()
    [r] = await run_checks(
        session, silent_server, None, [Check("e", "up", "< 1")], None, timeout_s=0.5
    )
    assert time.monotonic() - started < 5
    assert not r.passed and r.error == f"Prometheus at {silent_server} did not answer within 0.5 s"


async def test_without_a_prometheus_url_the_checks_are_not_run(
    session: aiohttp.ClientSession,
) -> None:
    checks = [Check("a", "up", "< 1"), Check("b", "up", "empty")]
    results = await run_checks(session, "", None, checks, None)
    assert [(r.passed, r.error) for r in results] == [
        (False, "not run: no Prometheus configured (--prometheus-url)")
    ] * 2
    outcomes = await run_checks(None, None, None, [{"name": "a", "expr": "up", "expect": "< 1"}], 0)
    assert not outcomes[0].passed and "no Prometheus configured" in (outcomes[0].error or "")
    assert await run_checks(session, "http://x", None, [], None) == []


# --- the request, against a stub ---------------------------------------------------------------


@pytest.fixture
async def stub() -> AsyncIterator[tuple[str, list[dict[str, str]], dict[str, web.Response]]]:
    """A stub Prometheus under a path prefix: records each request's form and headers and
    answers what the test put in ``answers`` (by query, once)."""
    seen: list[dict[str, str]] = []
    answers: dict[str, web.Response] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        form = dict(await request.post())
        seen.append(
            {
                **{k: str(v) for k, v in form.items()},
                "method": request.method,
                "content_type": request.content_type,
                "authorization": request.headers.get("Authorization", ""),
            }
        )
        # each answer once (a response is sent once); then a success without data
        return answers.pop(str(form.get("query")), web.json_response({"status": "success"}))

    app = web.Application()
    app.router.add_route("*", "/prom/api/v1/query", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://{LOOPBACK}:{port}/prom/", seen, answers
    finally:
        await runner.cleanup()


async def test_the_request_prometheus_gets(
    session: aiohttp.ClientSession,
    stub: tuple[str, list[dict[str, str]], dict[str, web.Response]],
) -> None:
    url, seen, answers = stub
    vector = {"status": "success", "data": {"resultType": "vector", "result": []}}
    answers["up"] = web.json_response(vector)
    answer = await query(session, url, "up", 1_700_000_000.25, Secret("s3cr3t-token"), 7.5)
    assert answer.error is None and answer.data == vector["data"]
    assert seen == [
        {
            "query": "up",
            "time": "1700000000.250",
            "timeout": "7.5s",
            "method": "POST",
            "content_type": "application/x-www-form-urlencoded",
            "authorization": "Bearer s3cr3t-token",
        }
    ]
    answer = await query(session, url, "up", None, None, 10)
    assert "time" not in seen[-1] and seen[-1]["authorization"] == ""
    assert answer.error == "Prometheus answered success without a result (no data.resultType)"


async def test_answers_that_are_not_prometheus_s(
    session: aiohttp.ClientSession,
    stub: tuple[str, list[dict[str, str]], dict[str, web.Response]],
) -> None:
    url, _, answers = stub
    answers["html"] = web.Response(
        status=502, text="<h1>Bad gateway</h1>", content_type="text/html"
    )
    answers["auth"] = web.Response(status=401, text="no")
    answers["moved"] = web.Response(status=302, headers={"Location": "https://u:pw@other/prom"})
    answers["busy"] = web.json_response(
        {"status": "error", "errorType": "unavailable", "error": "too many queries"}, status=503
    )
    answers["big"] = web.Response(body=b"x" * (5 * 1024 * 1024), content_type="application/json")
    checks = [Check(q, q, "empty") for q in ("html", "auth", "moved", "busy", "big")]
    results = await run_checks(session, url, None, checks, None)
    errors = [r.error or "" for r in results]
    assert not any(r.passed for r in results)
    assert errors[0] == (
        "Prometheus answered HTTP 502 with no JSON (text/html): <h1>Bad gateway</h1>"
    )
    assert errors[1].startswith("Prometheus refused the request: HTTP 401")
    assert (
        errors[2].startswith("Prometheus at ") and "a redirect to https://other/prom" in errors[2]
    )
    assert "pw" not in errors[2]
    assert errors[3] == (
        "Prometheus could not run the query (HTTP 503): unavailable: too many queries"
    )
    assert errors[4].startswith("Prometheus's answer is larger than 4 MiB")


async def test_a_url_with_credentials_is_not_shown(session: aiohttp.ClientSession) -> None:
    url = f"http://user:pa55word@{LOOPBACK}:{free_port()}"
    r = await one(session, url, Check("e", "up", "empty"))
    assert "pa55word" not in (r.error or "") and "user" not in (r.error or "")
    assert (r.error or "").startswith(f"cannot reach Prometheus at http://{LOOPBACK}:")


async def test_credentials_echoed_by_a_gateway_never_reach_a_result(
    session: aiohttp.ClientSession,
) -> None:
    """An auth proxy in front of Prometheus that quotes the request's Authorization in its
    answer: neither the bearer token nor the URL's user and password (as given, percent-encoded
    or in the base64 of the Basic header) reach a check's error, which the database keeps and
    every reader sees."""

    async def echo(request: web.Request) -> web.StreamResponse:
        form = dict(await request.post())
        status = int(str(form["query"])[:3])
        said = f"denied for {request.headers.get('Authorization', '')} on {request.url}"
        if str(form["query"]).endswith("json"):
            body = {"status": "error", "errorType": "auth", "error": said}
            return web.json_response(body, status=status)
        return web.Response(status=status, text=said, content_type="text/plain")

    app = web.Application()
    app.router.add_post("/api/v1/query", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    token, password = "tok-3cr3t-value", "p@ss:w0rd/value"
    quoted = "p%40ss%3Aw0rd%2Fvalue"
    basic = base64.b64encode(f"ops:{password}".encode()).decode()
    try:
        checks = [Check(q, q, "empty") for q in ("401", "403", "500", "500json", "422json")]
        errors = []
        for url, secret in (
            (f"http://{LOOPBACK}:{port}", Secret(token)),
            (f"http://ops:{quoted}@{LOOPBACK}:{port}", None),
        ):
            results = await run_checks(session, url, secret, checks, None)
            errors += [r.error or "" for r in results]
    finally:
        await runner.cleanup()
    text = "\n".join(errors)
    for leaked in (token, password, quoted, basic):
        assert leaked not in text
    # A refusal's body is not kept; other answers are, with the credentials masked.
    assert errors[0].startswith("Prometheus refused the request: HTTP 401 (")
    assert "denied" not in errors[0] and "denied" not in errors[1]
    assert "denied for Bearer <secret>" in errors[2]
    assert "denied for Basic <secret>" in errors[7]
