"""The one retry classifier: (HTTP status, headers, body) -> ok / retryable / permanent.

2xx is delivered unless the body says otherwise (Slack and Telegram answer HTTP 200 with
``ok: false``; old Teams connectors answered 200 with an error text). 5xx, 408 and 429 are
retryable and honour ``Retry-After`` and the vendors' own rate-limit hints; other 4xx are
permanent. Reasons are short identifiers from a bounded set: they become metric labels.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from bridge.delivery.protocol import PermanentError, RateLimited, RetryableError

# A retry hint further away than this is capped: the outbox schedule takes over.
MAX_RETRY_AFTER_S = 3600.0
_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_ERROR_TEXT = re.compile(r"^(error|fail(ed|ure)?)\b|delivery failed|returned http error|\berror:")
_OK_TEXT = {"", "ok", "1", "accepted", "true"}
# Slack Web API errors worth retrying (everything else with ok:false is permanent).
_SLACK_RETRYABLE = {
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
}


@dataclass(frozen=True)
class Verdict:
    ok: bool
    retryable: bool = False
    reason: str = "ok"
    retry_after: float | None = None

    def raise_for(self) -> None:
        """Raise the matching ``DeliveryError`` unless the outcome is ok."""
        if self.ok:
            return
        if self.retryable:
            if self.reason == "rate_limited":
                raise RateLimited(self.reason, self.retry_after)
            raise RetryableError(self.reason, self.retry_after)
        raise PermanentError(self.reason)


OK = Verdict(ok=True)


def _retry(reason: str, after: float | None) -> Verdict:
    return Verdict(ok=False, retryable=True, reason=reason, retry_after=after)


def _permanent(reason: str) -> Verdict:
    return Verdict(ok=False, retryable=False, reason=reason)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110)."""
    if value is None:
        return None
    value = value.strip()
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER_S)


def _json(body: bytes | str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _text(body: bytes | str) -> str:
    if isinstance(body, bytes):
        return body[:4096].decode("utf-8", "replace")
    return body[:4096]


def retry_hint(headers: Mapping[str, str], data: Any, now: float) -> float | None:
    """The longest wait any of the standard or vendor hints asks for, or None."""
    h = _lower(headers)
    hints = [
        parse_retry_after(h.get("retry-after"), now),
        _seconds(h.get("x-ratelimit-reset-after")),  # Discord: seconds, a float
    ]
    reset = _seconds_raw(h.get("x-ratelimit-reset"))
    if reset is not None:
        # Epoch seconds (Discord, GitHub) when it looks like a date, otherwise a delta.
        hints.append(_seconds(reset - now if reset > 1e9 else reset))
    if isinstance(data, dict):
        hints.append(_seconds(data.get("retry_after")))  # Discord JSON body
        params = data.get("parameters")
        if isinstance(params, dict):
            hints.append(_seconds(params.get("retry_after")))  # Telegram
    found = [x for x in hints if x is not None]
    return max(found) if found else None


def _seconds_raw(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _vendor_reason(prefix: str, data: Any, text: str) -> str | None:
    """A vendor's own error identifier (``channel_not_found``), when it is one."""
    code: Any = None
    if not prefix:  # a generic receiver's words are not a bounded vocabulary
        return None
    if isinstance(data, dict):
        code = data.get("error")
    elif data is None:
        code = text.strip()
    if isinstance(code, str) and _IDENT.match(code):
        return f"{prefix}_{code}"
    return None


def classify(
    status: int,
    headers: Mapping[str, str] | None = None,
    body: bytes | str = b"",
    *,
    vendor: str = "",
    now: float | None = None,
) -> Verdict:
    """Decide what an HTTP answer means. ``vendor`` prefixes vendor error codes in reasons."""
    headers = headers or {}
    now = time.time() if now is None else now
    data = _json(body)
    text = _text(body)
    if 200 <= status < 300:
        return _check_body(data, text, headers, vendor, now)
    if status == 429:
        return _retry("rate_limited", retry_hint(headers, data, now))
    if status in (408, 425) or status >= 500:
        return _retry(
            f"http_{status}" if status < 600 else "http_5xx", retry_hint(headers, data, now)
        )
    if 300 <= status < 400:
        # A redirect is never followed: a 302 turns a POST into a GET without body.
        return _permanent("redirect")
    if 400 <= status < 500:
        return _permanent(_vendor_reason(vendor, data, text) or f"http_{status}")
    return _permanent("http_invalid")


def _check_body(
    data: Any, text: str, headers: Mapping[str, str], vendor: str, now: float
) -> Verdict:
    if isinstance(data, dict):
        if data.get("ok") is False:
            return _ok_false(data, headers, vendor, now)
        if data.get("status") in ("error", "failure"):
            return _permanent(f"{vendor}_error" if vendor else "error_in_body")
        return OK
    if data is not None:
        return OK
    stripped = text.strip().lower()
    if stripped in _OK_TEXT:
        return OK
    # Old Teams connectors: 200 "Webhook message delivery failed with error: Microsoft Teams
    # endpoint returned HTTP error 429 ...". Only clear error texts count ("0 errors" is fine).
    if _ERROR_TEXT.search(stripped):
        if "429" in stripped:
            return _retry("rate_limited", retry_hint(headers, None, now))
        return _permanent("error_in_body")
    return OK


def _ok_false(data: dict[str, Any], headers: Mapping[str, str], vendor: str, now: float) -> Verdict:
    hint = retry_hint(headers, data, now)
    code = data.get("error_code")  # Telegram
    if isinstance(code, int):
        if code == 429:
            return _retry("rate_limited", hint)
        if code >= 500:
            return _retry(f"http_{min(code, 599)}", hint)
        return _permanent(
            f"{vendor or 'telegram'}_{code}" if 400 <= code < 500 else "error_in_body"
        )
    error = data.get("error")
    if isinstance(error, str):
        if error in ("ratelimited", "rate_limited"):
            return _retry("rate_limited", hint)
        if error in _SLACK_RETRYABLE:
            return _retry(f"{vendor or 'slack'}_{error}", hint)
        if _IDENT.match(error):
            return _permanent(f"{vendor or 'slack'}_{error}")
    return _permanent("error_in_body")
