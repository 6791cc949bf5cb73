"""Per-key send pacing (e.g. Slack: about one message per second per channel) and pauses
after a 429, with an injected clock. The worker asks ``delay(key, now)`` before a send and
calls ``pause(key, until)`` when a target says to back off, so every row to that target
waits, not only the one that got the 429."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """A token bucket per key: ``rate`` sends per second, bursts of ``burst``."""

    rate: float = 1.0
    burst: float = 1.0
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _paused: dict[str, float] = field(default_factory=dict)

    def delay(self, key: str, now: float) -> float:
        """Seconds to wait before sending on ``key``; 0 means go (and a token is taken)."""
        paused = self._paused.get(key)
        if paused is not None:
            if paused > now:
                return paused - now
            del self._paused[key]
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def pause(self, key: str, until: float) -> None:
        """Hold every send on ``key`` until ``until`` (a 429's Retry-After)."""
        self._paused[key] = max(until, self._paused.get(key, 0.0))
