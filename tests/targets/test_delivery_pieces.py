"""Retry schedule, rate limiter and coalescing, and an outage replayed against a fake."""

from __future__ import annotations

import pytest

from bridge.delivery.coalesce import coalesce
from bridge.delivery.ratelimit import RateLimiter
from bridge.delivery.retry import RetryPolicy, backoff, decide
from bridge.targets import DeliveryError, PermanentError, RetryableError
from tests.fakes.webhook import SECRET, WebhookFake
from tests.targets.conftest import FixedClock, MakeTarget, make_notification

POLICY = RetryPolicy(base_s=2, factor=2, cap_s=60, max_attempts=5)


@pytest.mark.parametrize(
    ("error", "attempt", "dead", "wait", "reason"),
    [
        (PermanentError("http_404"), 1, True, 0.0, "http_404"),
        (RetryableError("http_503"), 1, False, 2.0, "http_503"),
        (RetryableError("http_503"), 3, False, 8.0, "http_503"),
        (RetryableError("http_503"), 4, False, 16.0, "http_503"),
        (RetryableError("rate_limited", 30), 1, False, 30.0, "rate_limited"),  # the hint wins
        (RetryableError("rate_limited", 0.5), 4, False, 0.5, "rate_limited"),
        (RetryableError("rate_limited", 0), 2, False, 4.0, "rate_limited"),
        (RetryableError("rate_limited", 99999), 1, False, 3600.0, "rate_limited"),
        (RetryableError("timeout"), 5, True, 0.0, "retries_exhausted:timeout"),
    ],
)
def test_decide(error: DeliveryError, attempt: int, dead: bool, wait: float, reason: str) -> None:
    d = decide(error, attempt, now=1000.0, policy=POLICY, rand=lambda: 1.0)
    assert (d.dead, d.reason) == (dead, reason)
    if not dead:
        assert d.at - 1000.0 == pytest.approx(wait)


def test_backoff_is_capped_and_jittered() -> None:
    assert backoff(50, POLICY, rand=lambda: 1.0) == 60.0
    assert backoff(1, POLICY, rand=lambda: 0.0) == 1.0  # half the step at least


def test_rate_limiter_paces_and_pauses() -> None:
    rl = RateLimiter(rate=1.0, burst=1.0)
    assert rl.delay("slack:C1", 100.0) == 0.0
    assert rl.delay("slack:C1", 100.25) == pytest.approx(0.75)
    assert rl.delay("slack:C2", 100.25) == 0.0  # another channel is independent
    assert rl.delay("slack:C1", 101.0) == 0.0
    rl.pause("slack:C1", 130.0)
    assert rl.delay("slack:C1", 110.0) == pytest.approx(20.0)
    assert rl.delay("slack:C1", 131.0) == 0.0


def test_coalesce_keeps_order_and_opened_alone() -> None:
    rows = [
        make_notification("opened", sequence=1),
        make_notification("timeline", sequence=2, events=({"kind": "timeline", "text": "a"},)),
        make_notification("acknowledged", sequence=3),
        make_notification("resolved", sequence=4),
        make_notification("opened", sequence=5, target="other"),
    ]
    batches = coalesce(rows)
    assert [b.row_ids for b in batches] == [(1,), (2, 3, 4), (5,)]
    merged = batches[1].notification
    assert merged.event == "resolved"
    assert merged.kinds == ("timeline", "acknowledged", "resolved")
    assert [b.row_ids for b in coalesce(rows[1:4], max_events=2)] == [(2, 3), (4,)]


async def test_outage_then_recovery_honours_retry_after(
    webhook: WebhookFake, make_target: MakeTarget, fixed_clock: FixedClock
) -> None:
    """503 twice, then 429 with Retry-After: 30, then up. Each message is delivered once per
    idempotency key, in order, and the attempts follow the schedule (no hot loop)."""
    target = make_target("webhook", url=webhook.hook_url, secret=SECRET)
    webhook.fail_next(2, status=503)
    webhook.fail_next(1, status=429, retry_after=30)
    queue = [
        make_notification(e, sequence=i)
        for i, e in enumerate(["opened", "acknowledged", "resolved"], 1)
    ]
    start = fixed_clock.now
    attempts, waits = 0, []
    for n in queue:  # per (incident, target) order: the next row waits for this one
        attempt = 0
        while True:
            attempt += 1
            attempts += 1
            try:
                await target.send(n)
                break
            except DeliveryError as exc:
                d = decide(exc, attempt, fixed_clock.now, POLICY, rand=lambda: 1.0)
                assert not d.dead
                waits.append(d.at - fixed_clock.now)
                fixed_clock.now = d.at  # the persisted schedule, on a fake clock
    assert attempts == 6
    assert waits == [2.0, 4.0, 30.0]
    assert fixed_clock.now - start == 36.0
    assert [d["event"] for d in webhook.deliveries.values()] == [
        "opened",
        "acknowledged",
        "resolved",
    ]
    assert len(webhook.received) == 3
