from __future__ import annotations

import json

import pytest

from bridge.core.alertmanager import PayloadError, fingerprint, parse_webhook
from bridge.core.timeutil import format_ns, parse_rfc3339
from tests.conftest import FIXTURES, fixture_body

ALL_FIXTURES = sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*.json"))


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_every_captured_webhook_parses_and_fingerprints_match(name: str) -> None:
    body = fixture_body(name)
    payload = parse_webhook(json.dumps(body).encode())
    assert payload.group_key == body["groupKey"]
    for alert, raw in zip(payload.alerts, body["alerts"], strict=True):
        assert alert.fingerprint == raw["fingerprint"]
        # Computed exactly as Alertmanager does, for senders that leave it out.
        assert fingerprint(alert.labels) == raw["fingerprint"]


def test_nanoseconds_kept_and_go_zero_time_means_no_end() -> None:
    payload = parse_webhook(json.dumps(fixture_body("firing-group-bearer.json")).encode())
    alert = payload.alerts[0]
    assert format_ns(alert.starts_at) == "2026-11-27T04:05:13.998173144Z"
    assert alert.ends_at is None


def test_unknown_fields_and_other_versions_are_accepted() -> None:
    body = fixture_body("firing-group-bearer.json")
    body["version"] = 5
    body["notification_reason"] = "repeat"
    body["routeLabels"] = {"x": "y"}
    body["alerts"][0]["newField"] = {"nested": [1, 2]}
    del body["alerts"][1]["fingerprint"]
    payload = parse_webhook(json.dumps(body).encode())
    assert payload.version == "5"
    assert payload.alerts[1].fingerprint == "5308e11450d376b3"


@pytest.mark.parametrize(
    ("name", "mutate", "field"),
    [
        ("wrong type of groupKey", lambda b: b.update(groupKey=1), "groupKey"),
        ("missing alerts", lambda b: b.pop("alerts"), "alerts"),
        ("alerts not a list", lambda b: b.update(alerts={}), "alerts"),
        ("missing labels", lambda b: b["alerts"][1].pop("labels"), "alerts[1].labels"),
        (
            "label value not a string",
            lambda b: b["alerts"][0]["labels"].update(a=1),
            "alerts[0].labels.a",
        ),
        (
            "bad startsAt",
            lambda b: b["alerts"][0].update(startsAt="yesterday"),
            "alerts[0].startsAt",
        ),
        (
            "startsAt not a string",
            lambda b: b["alerts"][0].update(startsAt=12),
            "alerts[0].startsAt",
        ),
        (
            "bad endsAt",
            lambda b: b["alerts"][1].update(endsAt="2026-13-01T00:00:00Z"),
            "alerts[1].endsAt",
        ),
        ("unknown status", lambda b: b["alerts"][0].update(status="pending"), "alerts[0].status"),
        # A year beyond 64-bit nanoseconds is kept, clamped (tests/http/test_never_refuse.py).
        (
            "truncatedAlerts beyond 64 bits",
            lambda b: b.update(truncatedAlerts=2**63),
            "truncatedAlerts",
        ),
        ("negative truncatedAlerts", lambda b: b.update(truncatedAlerts=-1), "truncatedAlerts"),
    ],
)
def test_bad_payloads_name_the_field(name: str, mutate: object, field: str) -> None:
    body = fixture_body("firing-group-bearer.json")
    mutate(body)  # type: ignore[operator]
    with pytest.raises(PayloadError) as err:
        parse_webhook(json.dumps(body).encode())
    assert err.value.field == field, name


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{", "malformed JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 10_000 + b"]" * 10_000, "recursion limit"),
        (b"null", "object"),
        (b"", "malformed JSON"),
    ],
)
def test_unparseable_bodies(body: bytes, needle: str) -> None:
    with pytest.raises(PayloadError) as err:
        parse_webhook(body)
    assert needle in err.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T04:05:23Z", "2026-11-27T04:05:23Z"),
        ("2026-11-27T04:05:13.998173144Z", "2026-11-27T04:05:13.998173144Z"),
        ("2026-11-27T06:05:23.5+02:00", "2026-11-27T04:05:23.5Z"),
        ("0001-01-01T00:00:00Z", None),
    ],
)
def test_rfc3339_round_trip(text: str, expected: str | None) -> None:
    assert format_ns(parse_rfc3339(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-29T00:00:00Z",
        "2026-04-31T10:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:60:00Z",
        "2026-01-01 00:00:00",
        "2026-1-01T00:00:00Z",
    ],
)
def test_impossible_timestamps_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


def test_timestamps_agree_with_the_standard_library() -> None:
    import random
    from datetime import UTC, datetime, timedelta

    rnd = random.Random(7)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for _ in range(5000):
        when = epoch + timedelta(
            seconds=rnd.randrange(-9 * 10**9, 9 * 10**9), microseconds=rnd.randrange(10**6)
        )
        delta = when - epoch
        expected = (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000
        assert parse_rfc3339(when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) == expected
        assert (
            parse_rfc3339(when.strftime("%Y-%m-%dT%H:%M:%S.%f+05:30")) == expected - 19800 * 10**9
        )
