"""When to try a failed notification again, or give up: the persisted schedule's policy.

Pure: the outbox worker passes the error, the attempt number and the time, and stores the
answer. A target's own hint (``Retry-After``, a vendor rate-limit header) is honoured and is
never shortened by jitter; without one, exponential backoff with full jitter and a cap.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from bridge.targets.base import DeliveryError


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 2.0
    factor: float = 2.0
    cap_s: float = 600.0
    max_attempts: int = 12
    # A hint longer than this is capped: a broken header must not park a row for a day.
    max_hint_s: float = 3600.0


@dataclass(frozen=True)
class RetryDecision:
    dead: bool
    at: float  # when to try again (epoch seconds); meaningless when dead
    reason: str


def backoff(attempt: int, policy: RetryPolicy, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based), full jitter in
    [50%, 100%] of the exponential step so retries of a burst spread out."""
    step = min(policy.cap_s, policy.base_s * policy.factor ** max(0, attempt - 1))
    return step * (0.5 + 0.5 * rand())


def decide(
    error: DeliveryError,
    attempt: int,
    now: float,
    policy: RetryPolicy | None = None,
    rand: Callable[[], float] = random.random,
) -> RetryDecision:
    """Dead-letter a permanent error or exhausted retries; otherwise schedule the next try."""
    policy = policy or RetryPolicy()
    if not error.retryable:
        return RetryDecision(dead=True, at=now, reason=error.reason)
    if attempt >= policy.max_attempts:
        return RetryDecision(dead=True, at=now, reason=f"retries_exhausted:{error.reason}")
    hint = getattr(error, "retry_after", None)
    if hint is not None and hint > 0:
        wait = min(float(hint), policy.max_hint_s)  # exactly what the target asked for
    else:
        wait = backoff(attempt, policy, rand)
    return RetryDecision(dead=False, at=now + wait, reason=error.reason)
