"""POST /api/v1/alerts: the Alertmanager webhook receiver.

Persist, then answer: the 200 goes out only after the writer committed the webhook's rows.
Bad input is a 400 naming the field, never a 5xx and never a partial write; a store that cannot
write is a 503 so that Alertmanager retries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from pydantic_core import to_json

from bridge.core.alertmanager import PayloadError, parse_webhook
from bridge.core.policy import Decision
from bridge.delivery.templates import bounded_title
from bridge.http import auth
from bridge.http.errors import error_response, store_unavailable
from bridge.service import AppState
from bridge.service.heartbeats import record_beats
from bridge.store.interface import IngestItem, StoreUnavailable, WebhookResult

log = logging.getLogger("bridge.http.receiver")
_CHUNK = 64 * 1024
# A body that has not arrived in this time is refused (slow senders, and undecodable streams
# that aiohttp never fails, e.g. a truncated deflate body whose end comes after the headers).
BODY_READ_TIMEOUT_S = 10.0


class BodyBudget:
    """Bytes of webhook bodies the receiver holds at once, all requests together (both
    listeners share the state's one): concurrent large webhooks wait for Alertmanager's retry
    instead of growing the process without bound (--max-bodies-bytes)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size


def body_budget(state: AppState) -> BodyBudget:
    """The state's body budget (``state.bodies``), made at the first webhook: the service
    layer, below http, holds it without knowing its type."""
    budget = state.bodies
    if not isinstance(budget, BodyBudget):
        budget = state.bodies = BodyBudget(state.settings.max_bodies_bytes)
    return budget


class _Refused(Exception):
    """The answer to a webhook that is not accepted, built where the reason is found."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` (stops reading at the limit)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def _too_large(limit: int) -> _Refused:
    response = error_response(413, f"body larger than {limit} bytes")
    response.force_close()  # do not read the rest of an oversized body to reuse the connection
    return _Refused(response)


def _unreadable(exc: Exception) -> _Refused:
    # A body the HTTP layer cannot decode, e.g. "Content-Encoding: gzip" that is not gzip.
    # The rest of the body cannot be skipped, so the connection cannot be reused.
    response = error_response(400, f"cannot read the request body: {type(exc).__name__}")
    response.force_close()
    return _Refused(response)


def _buffered_body(request: web.Request, limit: int) -> bytes | None:
    """The body when it came whole with the headers (most webhooks: nothing to wait for, no
    timer to arm), or None when it is still arriving; raises _Refused."""
    content = request.content
    if not content.is_eof():
        return None
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        body = content.read_nowait(-1)
    except (RequestPayloadError, HttpProcessingError, ValueError) as exc:
        raise _unreadable(exc) from None
    if len(body) > limit:
        raise _too_large(limit)
    return body


async def _streamed_body(request: web.Request, limit: int) -> bytes:
    """The body of a request whose body did not come with its headers, within a time limit;
    raises _Refused."""
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            body = await _read_limited(request, limit)
    except TimeoutError:
        # Not a 408: Alertmanager takes a 4xx as final and drops the group. The sender got
        # past authentication, so let it retry.
        log.warning(
            "webhook body not received within %.0f s from %s; answered 503 so that it is sent "
            "again",
            BODY_READ_TIMEOUT_S,
            request.remote,
        )
        response = error_response(
            503, "request body not received in time, retry", headers={"Retry-After": "1"}
        )
        response.force_close()
        raise _Refused(response) from None
    except (RequestPayloadError, HttpProcessingError, ValueError) as exc:
        raise _unreadable(exc) from None
    if body is None:
        raise _too_large(limit)
    return body


async def receive_alerts(request: web.Request) -> web.Response:
    state: AppState = request.app[AppState.KEY]
    started = time.perf_counter()
    try:
        _check_credentials(request, state)
        limit = state.settings.max_body_bytes
        length = request.content_length
        # bytes of the body budget this request holds until it is answered
        reserved = limit if length is None else min(length, limit)
        budget = body_budget(state)
        if not budget.take(reserved):
            return _counted(state, _busy(budget), started)
        try:
            body = _buffered_body(request, limit)
            if body is None:
                body = await _streamed_body(request, limit)
            item, beats = await _accept(body, state)
            # The one await that waits (for the commit) is here rather than in a helper: every
            # coroutine between the request and the writer's future is resumed once more when
            # the future is done, for every webhook.
            try:
                result = await state.store.ingest.apply_webhooks(item)
                if beats:  # a Watchdog's webhook (once per repeat_interval): one small upsert
                    await record_beats(state, beats, item.now)
            except StoreUnavailable as exc:
                log.error("store unavailable, webhook not accepted: %s", exc)
                return _counted(state, store_unavailable().response(), started)
            return _counted(state, _answer(result, state), started)
        finally:
            budget.give(reserved)
    except _Refused as refused:
        return _counted(state, refused.response, started)
    except Exception:  # a bug: still a JSON 5xx (Alertmanager retries it), counted and logged
        log.exception("webhook failed")
        return _counted(state, error_response(500, "internal error"), started)


def _counted(state: AppState, response: web.Response, started: float) -> web.Response:
    """Every answer counted by status; an accepted webhook's time observed."""
    state.metrics.child(state.metrics.webhook_requests, str(response.status)).inc()
    if response.status == 200:
        state.metrics.webhook_duration.observe(time.perf_counter() - started)
    return response


def _busy(budget: BodyBudget) -> web.Response:
    """Too many bodies held at once: Alertmanager sends this one again later."""
    log.warning(
        "webhook refused for now: %d bytes of bodies held already (--max-bodies-bytes %d)",
        budget.held,
        budget.limit,
    )
    response = error_response(
        503, "too many webhooks in progress, retry", headers={"Retry-After": "1"}
    )
    response.force_close()  # its body is not read
    return response


def _check_credentials(request: web.Request, state: AppState) -> None:
    """Raises _Refused (401) when credentials are configured and these are missing or wrong."""
    settings = state.settings
    if settings.has_webhook_auth and not auth.check(
        request.headers.get("Authorization"),
        token=settings.webhook_token,
        basic_user=settings.basic_user,
        basic_password=settings.basic_password,
    ):
        challenge = auth.challenge("incident-bridge", basic=settings.webhook_token is None)
        response = error_response(
            401, "missing or wrong credentials", headers={"WWW-Authenticate": challenge}
        )
        # Nothing of an unauthenticated body is read, not even to keep the connection open
        # (app.runner_options): it may be undecodable, and it is not ours to spend time on.
        response.force_close()
        raise _Refused(response)


async def _accept(body: bytes, state: AppState) -> tuple[IngestItem, list[str]]:
    """Validate and evaluate: the webhook ready for the writer, and the heartbeats it beats
    (its alerts that beat one are taken out: a beat, not an incident); raises _Refused."""
    try:
        payload = parse_webhook(body)
    except PayloadError as exc:
        log.info("webhook rejected: %s", exc, extra={"field": exc.field})
        raise _Refused(error_response(400, exc.message, field=exc.field)) from None

    metrics = state.metrics
    for alert in payload.alerts:
        metrics.child(metrics.alerts_received, alert.status).inc()
    now = state.clock()
    runtime = state.runtime  # one policy for the whole webhook, even during a reload
    policy = runtime.policy
    beats: list[str] = []
    if runtime.beats:  # only with heartbeats in the rules: one dict lookup per alert
        beats, payload = runtime.beats.split(payload)
    # Never a 4xx because of the rules: a template that cannot render falls back (and says so
    # in render_errors); anything else the rules raise is a bug, a 500 Alertmanager retries.
    quick = getattr(policy, "evaluate_quick", None)
    if quick is not None:
        # Title templates: most webhooks' render in a few dozen steps, here. One that needs more
        # (thousands of groups, a template that loops) is evaluated again in a thread, within
        # the whole budget (bridge/rules/engine.py), while the loop goes on with the others.
        found = quick(payload, now)
        decisions = (
            found if found is not None else await asyncio.to_thread(policy.evaluate, payload, now)
        )
    else:
        decisions = policy.evaluate(payload, now)
    decisions = [_bounded(d) for d in decisions]
    _render_failed(decisions, payload.group_key, state)
    item = IngestItem(
        payload=payload,
        decisions=decisions,
        sha256=hashlib.sha256(body).hexdigest(),
        body=body if state.settings.body_retention_s > 0 else None,
        now=now,
    )
    return item, beats


def _bounded(decision: Decision) -> Decision:
    """A title of at most TITLE_MAX characters, whatever the policy (the built-in one takes the
    summary annotation as it came)."""
    title = bounded_title(decision.title)
    return decision if title is decision.title else dataclasses.replace(decision, title=title)


def _render_failed(decisions: list[Decision], group_key: str, state: AppState) -> None:
    """Count every render error; log each distinct one once per webhook (a webhook of many
    groups with one bad template is one line with a count, not thousands on the event loop)."""
    metrics = state.metrics
    seen: dict[tuple[str, str], int] = {}
    for decision in decisions:
        if decision.render_errors:
            metrics.child(metrics.rule_render_errors, decision.route).inc()
            what = (decision.route, "; ".join(decision.render_errors))
            seen[what] = seen.get(what, 0) + 1
    for (route, errors), count in seen.items():
        log.warning(
            "route %s could not render for group %s: %s (%s kept with a fallback)",
            route,
            group_key,
            errors,
            "the incident is" if count == 1 else f"{count} incidents are",
        )


def _answer(result: WebhookResult, state: AppState) -> web.Response:
    metrics = state.metrics
    mitigated = any(t.changed and t.status == "mitigated" for t in result.incidents)
    if not result.changed:
        metrics.webhooks_duplicate.inc()
    state.committed(notifications=result.notifications, mitigated=mitigated)
    return web.Response(
        body=to_json({"status": "ok", "incidents": [t.as_json() for t in result.incidents]}),
        content_type="application/json",
    )
