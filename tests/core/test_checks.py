"""The PromQL checks' pure half: the ``expect`` grammar, Prometheus's answers read, results
judged (NaN, Inf, no data, scalars, range vectors), and the record the validation keeps."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from bridge.core.checks import (
    MAX_VALUES,
    Answer,
    Check,
    CheckResult,
    Expect,
    ExpectError,
    evaluate,
    format_series,
    format_value,
    not_run,
    parse_expect,
    read_answer,
)
from bridge.core.followup import validate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("< 0.01", Expect("compare", "<", 0.01)),
        ("<0.01", Expect("compare", "<", 0.01)),
        ("<= 5", Expect("compare", "<=", 5.0)),
        ("> -1", Expect("compare", ">", -1.0)),
        (">= 1e3", Expect("compare", ">=", 1000.0)),
        ("== 0", Expect("compare", "==", 0.0)),
        ("!= .5", Expect("compare", "!=", 0.5)),
        ("  <   2.5E-4 ", Expect("compare", "<", 2.5e-4)),
        ("empty", Expect("empty")),
        ("not empty", Expect("not empty")),
        (" not   empty ", Expect("not empty")),
    ],
)
def test_the_expect_grammar(text: str, expected: Expect) -> None:
    assert parse_expect(text) == expected


def test_expectations_print_as_people_write_them() -> None:
    assert str(parse_expect(">= 1e3")) == ">= 1000"
    assert str(parse_expect("<0.01")) == "< 0.01"
    assert str(parse_expect("not  empty")) == "not empty"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("0.01", "is not an expectation"),
        ("= 0", 'equality is "=="'),
        ("=> 3", "is not an expectation"),
        ("<", "a number must follow <"),
        ("< abc", "'abc' is not a number"),
        ("< 1,5", "'1,5' is not a number"),
        ("< 0x10", "is not a number"),
        ("< NaN", "must be a finite number, not NaN"),
        ("> +Inf", "must be a finite number, not +Inf"),
        ("< 1e999", "too large"),
        ("is empty", "is not an expectation"),
        ("empty!", "is not an expectation"),
    ],
)
def test_bad_expectations_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ExpectError, match=None) as info:
        parse_expect(text)
    assert says in str(info.value), str(info.value)


def test_a_non_string_expect_is_refused() -> None:
    with pytest.raises(ExpectError, match="must be text"):
        parse_expect(0)  # type: ignore[arg-type]


# --- answers ---------------------------------------------------------------------------------


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def vector(*samples: tuple[dict[str, str], str]) -> Answer:
    result = [{"metric": m, "value": [1_700_000_000.0, v]} for m, v in samples]
    return read_answer(
        200, body({"status": "success", "data": {"resultType": "vector", "result": result}})
    )


def check(expect: str, name: str = "error_ratio") -> Check:
    return Check(name, "job:error_ratio:rate5m", expect)


def test_a_success_is_read() -> None:
    answer = vector(({"__name__": "up"}, "1"))
    assert answer.error is None and answer.data is not None
    assert answer.data["resultType"] == "vector"


@pytest.mark.parametrize(
    ("status", "doc", "says"),
    [
        (
            400,
            {"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unexpected"},
            "Prometheus rejected the query: bad_data: 1:5: parse error: unexpected",
        ),
        (
            422,
            {"status": "error", "errorType": "execution", "error": "many-to-many matching"},
            "Prometheus rejected the query: execution: many-to-many matching",
        ),
        (
            503,
            {"status": "error", "errorType": "timeout", "error": "query timed out"},
            "Prometheus could not run the query (HTTP 503): timeout: query timed out",
        ),
        (200, {"status": "success"}, "success without a result"),
        (200, {"status": "success", "data": {"result": []}}, "success without a result"),
        (200, {"hello": 1}, "HTTP 200 with JSON that is not Prometheus's answer"),
    ],
)
def test_errors_are_read(status: int, doc: Any, says: str) -> None:
    answer = read_answer(status, body(doc), "application/json")
    assert answer.data is None and answer.error is not None
    assert says in answer.error, answer.error


def test_a_body_that_is_not_json() -> None:
    answer = read_answer(502, b"<html>Bad Gateway\x1b[31m</html>", "text/html")
    assert answer.error is not None
    assert answer.error.startswith("Prometheus answered HTTP 502 with no JSON (text/html): <html>")
    assert "\x1b" not in answer.error and "\\x1b" in answer.error
    assert "refused the request: HTTP 401" in (read_answer(401, b"", "").error or "")
    assert "an empty body" in (read_answer(500, b"", "").error or "")


def test_a_long_error_is_clipped() -> None:
    doc = {"status": "error", "errorType": "bad_data", "error": "x" * 5000}
    error = read_answer(400, body(doc)).error or ""
    assert len(error) < 600 and error.endswith("…")


# --- judging ---------------------------------------------------------------------------------


def test_a_value_that_meets_the_comparison_passes() -> None:
    r = evaluate(check("< 0.01"), vector(({"__name__": "error_ratio", "job": "api"}, "0.001")))
    assert r.passed and r.error is None
    assert r.reason == "0.001 is < 0.01"
    assert r.values[0].labels == {"__name__": "error_ratio", "job": "api"}
    assert r.values[0].value == 0.001 and r.series == 1
    assert (r.name, r.expr, r.expect) == ("error_ratio", "job:error_ratio:rate5m", "< 0.01")


def test_a_value_that_does_not_meet_it_fails_and_names_it() -> None:
    r = evaluate(check("< 0.01"), vector(({"job": "api"}, "0.2")))
    assert not r.passed and r.error is None
    assert r.reason == "0.2 is not < 0.01"


def test_every_series_must_meet_it_and_the_failing_ones_come_first() -> None:
    many = [({"instance": f"i{n}"}, "0.001") for n in range(30)]
    many[17] = ({"instance": "bad-1"}, "0.5")
    many[23] = ({"instance": "bad-2"}, "0.25")
    r = evaluate(check("< 0.01"), vector(*many))
    assert not r.passed
    assert r.reason == (
        '2 of 30 series are not < 0.01: 0.5 {instance="bad-1"}, 0.25 {instance="bad-2"}'
    )
    assert len(r.values) == MAX_VALUES and r.series == 30
    assert [s.labels["instance"] for s in r.values[:2]] == ["bad-1", "bad-2"]
    ok = evaluate(check("< 0.01"), vector(({"i": "a"}, "0.001"), ({"i": "b"}, "0.004")))
    assert ok.passed and ok.reason == "all 2 series are < 0.01 (from 0.001 to 0.004)"


def test_no_data_with_a_comparison_is_not_a_pass() -> None:
    r = evaluate(check("< 0.01"), vector())
    assert not r.passed and r.error is None and r.series == 0
    assert r.reason.startswith("no data: the query returned no series")
    assert '"empty"' in r.reason


@pytest.mark.parametrize("expect", ["< 1", "> 1", "== 0", "!= 0", ">= -1e9"])
def test_nan_meets_no_comparison(expect: str) -> None:
    r = evaluate(check(expect), vector(({}, "NaN")))
    assert not r.passed
    assert r.reason.startswith(f"NaN is not {parse_expect(expect)} (NaN, not a number")
    assert math.isnan(r.values[0].value)


def test_infinities_compare_by_order_and_are_explained() -> None:
    low = evaluate(check("< 0.01"), vector(({}, "+Inf")))
    assert not low.passed
    assert low.reason == "+Inf is not < 0.01 (an infinite value: usually a division by zero)"
    high = evaluate(check("> 5"), vector(({}, "+Inf")))
    assert high.passed and "infinite" in high.reason
    assert not evaluate(check("> 0"), vector(({}, "-Inf"))).passed
    mixed = evaluate(check("< 1"), vector(({"i": "a"}, "0"), ({"i": "b"}, "+Inf")))
    assert not mixed.passed and mixed.reason.endswith("usually a division by zero)")


def test_empty_and_not_empty() -> None:
    none, some = vector(), vector(({"__name__": "ALERTS", "alertname": "X"}, "1"))
    assert evaluate(check("empty"), none).passed
    r = evaluate(check("empty"), some)
    assert not r.passed
    assert r.reason == 'the query returned 1 series, expected none: 1 ALERTS{alertname="X"}'
    assert evaluate(check("not empty"), some).passed
    r = evaluate(check("not empty"), none)
    assert not r.passed and r.reason.startswith("no data")


def scalar(value: str) -> Answer:
    doc = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, value]}}
    return read_answer(200, body(doc))


def test_a_scalar() -> None:
    r = evaluate(check(">= 1"), scalar("3"))
    assert r.passed and r.reason == "3 is >= 1" and r.values[0].labels == {}
    assert not evaluate(check("empty"), scalar("0")).passed
    assert evaluate(check("not empty"), scalar("0")).passed


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"resultType": "matrix", "result": []}, "range vector (matrix)"),
        ({"resultType": "string", "result": [1.0, "x"]}, "returns a string"),
        ({"resultType": "streams", "result": []}, "unknown resultType 'streams'"),
        ({"resultType": "vector", "result": {}}, "not a list"),
        ({"resultType": "vector", "result": [{"metric": {}, "value": [1, 2]}]}, "not [time"),
        ({"resultType": "vector", "result": [{"metric": {}, "value": [1, "x"]}]}, "'x' is not"),
        ({"resultType": "vector", "result": [{"metric": {}, "histogram": [1, {}]}]}, "native"),
    ],
)
def test_what_a_check_cannot_judge_is_an_error_never_a_pass(data: Any, says: str) -> None:
    answer = read_answer(200, body({"status": "success", "data": data}))
    r = evaluate(check("not empty"), answer)
    assert not r.passed and r.error is not None and says in r.error, r.error


def test_a_rejected_query_is_never_a_pass() -> None:
    doc = {"status": "error", "errorType": "bad_data", "error": "parse error: unexpected"}
    r = evaluate(check("empty"), read_answer(400, body(doc)))
    assert not r.passed
    assert r.error == "Prometheus rejected the query: bad_data: parse error: unexpected"


def test_an_invalid_stored_expect_is_an_error() -> None:
    r = evaluate(check("about 3"), vector(({}, "3")))
    assert not r.passed and (r.error or "").startswith("invalid expect: ")


def test_not_run() -> None:
    r = not_run(check("< 1"), "no Prometheus configured")
    assert not r.passed and r.error == "not run: no Prometheus configured"


def test_values_and_series_print_plainly() -> None:
    assert [format_value(v) for v in (0.001, 5.0, 1e-05, 1e20, -2.5)] == [
        "0.001", "5", "1e-05", "1e+20", "-2.5",
    ]  # fmt: skip
    assert [format_value(v) for v in (math.nan, math.inf, -math.inf)] == ["NaN", "+Inf", "-Inf"]
    assert format_series({"__name__": "up", "job": 'a"b', "x": "\n"}) == 'up{job="a\\"b", x="\\n"}'
    assert format_series({"__name__": "up"}) == "up"
    assert format_series({}) == "{}"


def test_the_outcome_the_validation_keeps_is_json() -> None:
    r = evaluate(check("< 1"), vector(({"i": "a"}, "+Inf"), ({"i": "b"}, "NaN"), ({"i": "c"}, "0")))
    out = r.record()
    assert not out["passed"]
    assert json.loads(json.dumps(out["values"], allow_nan=False)) == [
        {"labels": {"i": "a"}, "value": "+Inf"},
        {"labels": {"i": "b"}, "value": "NaN"},
        {"labels": {"i": "c"}, "value": 0.0},
    ]


def test_the_validation_says_why_with_the_result() -> None:
    from bridge.core.followup import FollowUp, Item
    from bridge.core.incidents import Incident

    inc = Incident(id=1, key="k", title="t", severity="sev2", status="mitigated", started_at=0,
                   opened_at=0, mitigated_at=1)  # fmt: skip
    fu = FollowUp(1, None, (Item(5, "validate", "Validate"),))
    bad = evaluate(check("< 0.01"), vector(({}, "0.2")))
    outcome = validate(inc, fu, quiet=True, window_s=1800, checks=[bad], now=2)
    assert outcome.events[0].text == "Validation failed: check error_ratio: 0.2 is not < 0.01"


def test_a_result_is_a_plain_record() -> None:
    r = CheckResult("n", "up", "< 1", True)
    assert r.values == () and r.error is None and r.series == 0
