"""Prometheus's HTTP API at the edge: the instant queries of the follow-up's PromQL checks.

``query`` asks ``POST <base>/api/v1/query`` (form-encoded ``query``, ``time``, ``timeout``) and
turns whatever comes back, or does not, into a ``core.checks.Answer``: a success's data, or a
sentence saying why there is none (Prometheus rejected the query, timed out, was unreachable,
answered something that is not its JSON). It never raises for what Prometheus or the network
does. ``run_checks``, the one function that runs checks, runs a route's checks (as the rules
give them or as the store keeps them) concurrently (at most ``MAX_CONCURRENCY`` at once) at one
evaluation time and judges each with ``core.checks.evaluate`` into a ``CheckResult``, which the
validation records as it is.

Without a Prometheus URL every check is "not run" and not passed: the validation item then
cannot check itself off, and a person does (docs/followup.md). Imports the core only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace

import aiohttp
from yarl import URL

from bridge.core.checks import Answer, Check, CheckResult, evaluate, not_run, read_answer
from bridge.core.secrets import Secret, credential_forms, mask

DEFAULT_TIMEOUT_S = 10.0
MAX_CONCURRENCY = 4
# An answer larger than this is refused (a check that returns thousands of series should
# aggregate them: max(...), count(...)).
MAX_ANSWER_BYTES = 4 * 1024 * 1024
NO_PROMETHEUS = "no Prometheus configured (--prometheus-url)"


def query_url(base_url: str) -> str:
    """``<base>/api/v1/query``; the base may carry a path prefix (``https://host/prometheus``)."""
    return base_url.rstrip("/") + "/api/v1/query"


def shown_url(base_url: str) -> str:
    """The base URL as messages show it: without user and password."""
    try:
        return str(URL(base_url).with_user(None))
    except (ValueError, TypeError):
        return "the configured URL"


async def _read(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    if resp.content_length is not None and resp.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def query(
    session: aiohttp.ClientSession,
    base_url: str,
    expr: str,
    at: float | None,
    token: Secret | None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Answer:
    """One instant query of ``expr`` at ``at`` (Unix seconds; None: Prometheus's now), within
    ``timeout_s`` (Prometheus is asked to stop evaluating then too). Never raises for an answer
    or a network failure: the ``Answer`` says what happened, and it never holds a credential
    (the token, the URL's user and password in any form an answer may echo them): the error
    is kept in the database and shown to readers."""
    answer = await _query(session, base_url, expr, at, token, timeout_s)
    if answer.error is None:
        return answer
    forms = credential_forms(token=token, url=base_url)
    return replace(answer, error=mask(answer.error, forms))


async def _query(
    session: aiohttp.ClientSession,
    base_url: str,
    expr: str,
    at: float | None,
    token: Secret | None,
    timeout_s: float,
) -> Answer:
    where = shown_url(base_url)
    form = {"query": expr, "timeout": f"{timeout_s:g}s"}
    if at is not None:
        form["time"] = f"{at:.3f}"
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token.reveal()}"
    try:
        async with (
            asyncio.timeout(timeout_s),
            session.post(
                query_url(base_url), data=form, headers=headers, allow_redirects=False
            ) as resp,
        ):
            if 300 <= resp.status < 400:
                location = resp.headers.get("Location", "?")
                return Answer(
                    error=f"Prometheus at {where} answered HTTP {resp.status}, a redirect to "
                    f"{shown_url(location)}: give --prometheus-url the address it redirects to"
                )
            body = await _read(resp, MAX_ANSWER_BYTES)
            if body is None:
                return Answer(
                    error=f"Prometheus's answer is larger than {MAX_ANSWER_BYTES // 1024 // 1024} "
                    "MiB: aggregate the query (e.g. max(...) or count(...))"
                )
            return read_answer(resp.status, body, resp.content_type)
    except TimeoutError:
        return Answer(error=f"Prometheus at {where} did not answer within {timeout_s:g} s")
    except aiohttp.InvalidURL:
        return Answer(error=f"invalid Prometheus URL {where!r}")
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
        return Answer(error=f"cannot reach Prometheus at {where}: {reason}")
    except (aiohttp.ClientError, OSError) as exc:
        text = str(exc).replace(base_url, where) or type(exc).__name__
        return Answer(error=f"the request to Prometheus at {where} failed: {text}")


async def run_checks(
    session: aiohttp.ClientSession | None,
    base_url: str | None,
    token: Secret | None,
    checks: Sequence[Check | Mapping[str, str]],
    at: float | None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    concurrency: int = MAX_CONCURRENCY,
) -> list[CheckResult]:
    """Each check's result, in the order given: its query at ``at`` (Unix seconds) judged
    against its ``expect``. Without ``base_url`` every check is not run (and not passed);
    without ``session``, one of its own for these queries."""
    wanted = [as_check(c) for c in checks]
    if not wanted:
        return []
    if not base_url:
        return [not_run(c, NO_PROMETHEUS) for c in wanted]
    if session is None:
        async with aiohttp.ClientSession() as own:
            return await run_checks(
                own, base_url, token, wanted, at, timeout_s=timeout_s, concurrency=concurrency
            )
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(client: aiohttp.ClientSession, check: Check) -> CheckResult:
        async with gate:
            answer = await query(client, base_url, check.expr, at, token, timeout_s)
        return evaluate(check, answer)

    return list(await asyncio.gather(*(one(session, c) for c in wanted)))


def as_check(check: Check | Mapping[str, str]) -> Check:
    """A check as the store keeps it (``{"name", "expr", "expect"}``) or as the rules give it."""
    if isinstance(check, Check):
        return check
    return Check(
        name=str(check.get("name", "")),
        expr=str(check.get("expr", "")),
        expect=str(check.get("expect", "")),
    )
