"""The retry classifier as a table: (status, headers, body) -> outcome."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.delivery.classify import classify, parse_retry_after
from bridge.targets import PermanentError, RetryableError

NOW = 1_795_752_400.0
J = json.dumps

CASES: list[tuple[str, int, dict[str, str], Any, str, tuple[bool, bool, str, float | None]]] = [
    # name, status, headers, body, vendor, (ok, retryable, reason, retry_after)
    ("200 empty", 200, {}, b"", "", (True, False, "ok", None)),
    ("204", 204, {}, b"", "", (True, False, "ok", None)),
    ("202 teams", 202, {}, b"", "msteams", (True, False, "ok", None)),
    ("200 slack webhook ok", 200, {}, b"ok", "slack", (True, False, "ok", None)),
    ("200 teams legacy 1", 200, {}, b"1", "msteams", (True, False, "ok", None)),
    ("200 json ok true", 200, {}, J({"ok": True, "ts": "1.2"}), "slack", (True, False, "ok", None)),
    (
        "200 pagerduty",
        202,
        {},
        J({"status": "success", "dedup_key": "k"}),
        "pagerduty",
        (True, False, "ok", None),
    ),
    ("200 discord message", 200, {}, J({"id": "1"}), "discord", (True, False, "ok", None)),
    ("200 json list", 200, {}, J([1, 2]), "", (True, False, "ok", None)),
    (
        "200 slack ok:false channel",
        200,
        {},
        J({"ok": False, "error": "channel_not_found"}),
        "slack",
        (False, False, "slack_channel_not_found", None),
    ),
    (
        "200 slack ok:false ratelimited",
        200,
        {"Retry-After": "7"},
        J({"ok": False, "error": "ratelimited"}),
        "slack",
        (False, True, "rate_limited", 7.0),
    ),
    (
        "200 slack ok:false internal",
        200,
        {},
        J({"ok": False, "error": "internal_error"}),
        "slack",
        (False, True, "slack_internal_error", None),
    ),
    (
        "200 slack ok:false weird error",
        200,
        {},
        J({"ok": False, "error": "Bad Thing!"}),
        "slack",
        (False, False, "error_in_body", None),
    ),
    (
        "200 telegram ok:false 400",
        200,
        {},
        J({"ok": False, "error_code": 400, "description": "x"}),
        "telegram",
        (False, False, "telegram_400", None),
    ),
    (
        "200 telegram ok:false 429",
        200,
        {},
        J({"ok": False, "error_code": 429, "parameters": {"retry_after": 3}}),
        "telegram",
        (False, True, "rate_limited", 3.0),
    ),
    (
        "200 teams error text",
        200,
        {},
        b"Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 400",
        "msteams",
        (False, False, "error_in_body", None),
    ),
    (
        "200 teams error 429 text",
        200,
        {},
        b"Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429",
        "msteams",
        (False, True, "rate_limited", None),
    ),
    ("200 text mentioning errors", 200, {}, b"OK, 0 errors", "", (True, False, "ok", None)),
    (
        "200 text error:",
        200,
        {},
        b"Error: invalid card",
        "msteams",
        (False, False, "error_in_body", None),
    ),
    ("200 text failed", 200, {}, b"failed", "", (False, False, "error_in_body", None)),
    (
        "200 json status error",
        200,
        {},
        J({"status": "error"}),
        "",
        (False, False, "error_in_body", None),
    ),
    (
        "429 retry-after seconds",
        429,
        {"Retry-After": "30"},
        b"",
        "",
        (False, True, "rate_limited", 30.0),
    ),
    (
        "429 retry-after date",
        429,
        {"Retry-After": "Fri, 27 Nov 2026 04:07:40 GMT"},
        b"",
        "",
        (False, True, "rate_limited", 60.0),
    ),
    (
        "429 retry-after past date",
        429,
        {"Retry-After": "Fri, 27 Nov 2026 04:00:00 GMT"},
        b"",
        "",
        (False, True, "rate_limited", 0.0),
    ),
    (
        "429 retry-after garbage",
        429,
        {"Retry-After": "soon"},
        b"",
        "",
        (False, True, "rate_limited", None),
    ),
    ("429 no hint", 429, {}, b"", "", (False, True, "rate_limited", None)),
    (
        "429 discord headers",
        429,
        {"X-RateLimit-Reset-After": "1.5"},
        J({"retry_after": 1.25}),
        "discord",
        (False, True, "rate_limited", 1.5),
    ),
    (
        "429 discord body only",
        429,
        {},
        J({"retry_after": 2.5, "global": False}),
        "discord",
        (False, True, "rate_limited", 2.5),
    ),
    (
        "429 telegram",
        429,
        {},
        J({"ok": False, "error_code": 429, "parameters": {"retry_after": 5}}),
        "telegram",
        (False, True, "rate_limited", 5.0),
    ),
    (
        "429 reset epoch",
        429,
        {"X-RateLimit-Reset": str(int(NOW) + 12)},
        b"",
        "",
        (False, True, "rate_limited", 12.0),
    ),
    (
        "429 huge retry-after capped",
        429,
        {"Retry-After": "999999"},
        b"",
        "",
        (False, True, "rate_limited", 3600.0),
    ),
    (
        "429 lowercase header",
        429,
        {"retry-after": "2"},
        b"",
        "",
        (False, True, "rate_limited", 2.0),
    ),
    ("500", 500, {}, b"oops", "", (False, True, "http_500", None)),
    ("502", 502, {}, b"", "", (False, True, "http_502", None)),
    ("503 retry-after", 503, {"Retry-After": "120"}, b"", "", (False, True, "http_503", 120.0)),
    ("504", 504, {}, b"", "", (False, True, "http_504", None)),
    ("408", 408, {}, b"", "", (False, True, "http_408", None)),
    ("400 plain", 400, {}, b"bad", "", (False, False, "http_400", None)),
    (
        "400 slack webhook invalid_payload",
        400,
        {},
        b"invalid_payload",
        "slack",
        (False, False, "slack_invalid_payload", None),
    ),
    (
        "404 slack webhook channel_not_found",
        404,
        {},
        b"channel_not_found",
        "slack",
        (False, False, "slack_channel_not_found", None),
    ),
    (
        "410 archived",
        410,
        {},
        b"channel_is_archived",
        "slack",
        (False, False, "slack_channel_is_archived", None),
    ),
    (
        "403 action_prohibited",
        403,
        {},
        b"action_prohibited",
        "slack",
        (False, False, "slack_action_prohibited", None),
    ),
    (
        "401",
        401,
        {},
        J({"message": "Invalid Webhook Token", "code": 50027}),
        "discord",
        (False, False, "http_401", None),
    ),
    ("400 discord 50035", 400, {}, J({"code": 50035}), "discord", (False, False, "http_400", None)),
    (
        "400 pagerduty invalid",
        400,
        {},
        J({"status": "invalid event"}),
        "pagerduty",
        (False, False, "http_400", None),
    ),
    ("413", 413, {}, b"", "", (False, False, "http_413", None)),
    (
        "422 opsgenie",
        422,
        {},
        J({"message": "Request body is not valid"}),
        "opsgenie",
        (False, False, "http_422", None),
    ),
    (
        "404 long text body",
        404,
        {},
        b"Not Found: the thing you asked for",
        "",
        (False, False, "http_404", None),
    ),
    ("301 redirect", 301, {"Location": "/x"}, b"", "", (False, False, "redirect", None)),
    ("302 redirect", 302, {}, b"", "", (False, False, "redirect", None)),
    ("100 weird", 100, {}, b"", "", (False, False, "http_invalid", None)),
]


@pytest.mark.parametrize(
    ("status", "headers", "body", "vendor", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_classify(
    status: int,
    headers: dict[str, str],
    body: Any,
    vendor: str,
    expected: tuple[bool, bool, str, float | None],
) -> None:
    body = body.encode() if isinstance(body, str) else body
    out = classify(status, headers, body, vendor=vendor, now=NOW)
    assert (out.ok, out.retryable, out.reason, out.retry_after) == expected


def test_every_status_is_classified_with_a_bounded_reason() -> None:
    reasons = set()
    for status in range(100, 600):
        out = classify(status, {}, b"", now=NOW)
        assert out.ok == (200 <= status < 300)
        if 400 <= status < 500:
            assert out.retryable == (status in (408, 425, 429))
        if status >= 500:
            assert out.retryable
        reasons.add(out.reason)
    assert len(reasons) <= 600
    assert all(len(r) <= 48 and r.replace("_", "").isalnum() for r in reasons)


def test_raise_for_maps_to_errors() -> None:
    with pytest.raises(RetryableError) as r:
        classify(429, {"Retry-After": "3"}, b"", now=NOW).raise_for()
    assert r.value.reason == "rate_limited" and r.value.retry_after == 3.0
    with pytest.raises(PermanentError) as p:
        classify(404, {}, b"", now=NOW).raise_for()
    assert p.value.reason == "http_404"
    classify(200, {}, b"ok", now=NOW).raise_for()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", None),
        ("nan", None),
        ("", None),
        (None, None),
        ("Fri, 27 Nov 2026 04:06:50 GMT", 10.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected
