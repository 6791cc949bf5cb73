"""The follow-up's PromQL checks, pure: the ``expect`` grammar, Prometheus's answer to an
instant query read from its status and body, and that answer judged against the expectation:
a ``CheckResult`` with the values seen and a sentence saying why, the one record of a check's
result (``core/followup.validate`` keeps its ``record()``). No I/O: ``bridge/promql.py``
asks Prometheus and hands the answer here.

The grammar of ``expect`` (spaces around the parts are free)::

    expect     = comparison | "empty" | "not empty"
    comparison = op number            op: <  <=  >  >=  ==  !=
    number     = a finite decimal: 0.01, 5, -1, .5, 1e3, 2.5E-4 (no NaN, no Inf)

How a result is judged (docs/followup.md, "Validation"):

- a comparison: every series of the vector (or the scalar) must meet it. A query that returns
  no series does NOT pass ("no data": nothing shows the service is healthy; a series that
  disappeared and a typo in a metric name look the same). When no series is the healthy answer,
  the check says ``empty``.
- NaN (``0/0``: e.g. an error ratio without requests) meets no comparison, ``!=`` included,
  unlike PromQL's own filters: the check cannot tell whether the service is healthy.
- +Inf and -Inf compare by order (``+Inf > 5``, ``+Inf`` is not ``< 0.01``), as PromQL's
  comparisons do; a reason names them (usually a division by zero).
- ``empty``: the query returns no series; a scalar is never empty. ``not empty``: one series
  or more (or a scalar).
- an answer that is not a result (Prometheus rejected the query, was unreachable, answered
  something else, or the query returns a range vector or a string) never passes: ``error``
  says why.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

from bridge.core.text import escape_controls
from bridge.core.values import immutable

Op = Literal["<", "<=", ">", ">=", "==", "!="]
Kind = Literal["compare", "empty", "not empty"]
_COMPARE: Mapping[str, Callable[[float, float], bool]] = MappingProxyType(
    {
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
        "==": operator.eq,
        "!=": operator.ne,
    }
)
# The samples a result keeps (those that fail first), and the series a reason names.
MAX_VALUES = 10
MAX_NAMED = 3
# Bounds on what is kept of a sample's labels and of Prometheus's texts.
MAX_LABELS = 32
MAX_LABEL_VALUE = 200
MAX_ERROR_TEXT = 500

_EXPECT = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(.*?)\s*$", re.DOTALL)
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_NOT_FINITE = re.compile(r"^[+-]?(?:inf(?:inity)?|nan)$", re.IGNORECASE)
GRAMMAR = 'a comparison and a number, like "< 0.01", ">= 1e3" or "== 0"; or "empty" / "not empty"'


@immutable
class Check:
    """A PromQL check run at the end of the stabilization window: ``expr`` must give a result
    that meets ``expect`` (e.g. ``< 0.01``; the grammar is this module's)."""

    name: str
    expr: str
    expect: str


class ExpectError(ValueError):
    """An ``expect`` outside the grammar; the message says what is wrong and what is allowed."""


@immutable
class Expect:
    """A parsed ``expect``: a comparison with a finite threshold, or (not) empty."""

    kind: Kind
    op: Op | None = None
    threshold: float = 0.0

    def __str__(self) -> str:
        if self.kind != "compare":
            return self.kind
        return f"{self.op} {format_value(self.threshold)}"

    def met_by(self, value: float) -> bool:
        """Whether one sample's value meets the comparison (NaN meets none)."""
        assert self.op is not None
        return not math.isnan(value) and _COMPARE[self.op](value, self.threshold)


def parse_expect(text: str) -> Expect:
    """``< 0.01``, ``>= 1e3``, ``== 0``, ``empty``, ``not empty``; raises ExpectError."""
    if not isinstance(text, str):
        raise ExpectError(f"must be text: {GRAMMAR} (quote it in YAML)")
    words = text.split()
    if not words:
        raise ExpectError(f"must not be empty: give {GRAMMAR}")
    if words == ["empty"]:
        return Expect("empty")
    if words == ["not", "empty"]:
        return Expect("not empty")
    m = _EXPECT.match(text)
    if m is None:
        hint = ' (equality is "==")' if text.strip().startswith("=") else ""
        raise ExpectError(f"{text.strip()!r} is not an expectation{hint}: give {GRAMMAR}")
    op, number = m.group(1), m.group(2)
    if not number:
        raise ExpectError(f"{text.strip()!r}: a number must follow {op}, like {op} 0.01")
    if _NOT_FINITE.match(number):
        raise ExpectError(f"{text.strip()!r}: the threshold must be a finite number, not {number}")
    if not _NUMBER.match(number):
        raise ExpectError(
            f"{text.strip()!r}: {number!r} is not a number (a decimal like 0.01, 5, -1 or 1e3)"
        )
    threshold = float(number)
    if math.isinf(threshold):
        raise ExpectError(f"{text.strip()!r}: {number} is too large a number")
    return Expect("compare", _op(op), threshold)


def _op(text: str) -> Op:
    for op in ("<", "<=", ">", ">=", "==", "!="):
        if op == text:
            return op
    raise ExpectError(f"unknown comparison {text!r}")  # pragma: no cover - the regex allows none


# --- Prometheus's answer ------------------------------------------------------------------


@immutable
class Answer:
    """Prometheus's answer to one instant query: ``data`` (``{"resultType", "result"}``) when
    it succeeded, else ``error``: a sentence saying why there is no result."""

    data: Mapping[str, Any] | None = None
    error: str | None = None
    warnings: tuple[str, ...] = ()


def _clip(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    text = escape_controls(text.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_answer(status: int, body: bytes, content_type: str = "") -> Answer:
    """What an HTTP answer of ``/api/v1/query`` says: a success's data, or why there is none
    (Prometheus's own error with its type, a status without Prometheus's JSON, a body that is
    not JSON). A rejected query is never a result. The body of a 401 or 403 is not kept: auth
    proxies and gateways echo the request's credentials there."""
    if status in (401, 403):
        return Answer(
            error=f"Prometheus refused the request: HTTP {status} (are the credentials right? "
            "--prometheus-token-file, or the user and password of --prometheus-url)"
        )
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict) or doc.get("status") not in ("success", "error"):
        return Answer(error=_not_prometheus(status, body, content_type, doc is not None))
    warnings = tuple(_clip(str(w)) for w in (doc.get("warnings") or ())[:MAX_NAMED])
    if doc["status"] == "error":
        kind = _clip(str(doc.get("errorType") or "error"), 64)
        text = _clip(str(doc.get("error") or "no reason given"))
        if 400 <= status < 500:
            return Answer(error=f"Prometheus rejected the query: {kind}: {text}")
        return Answer(error=f"Prometheus could not run the query (HTTP {status}): {kind}: {text}")
    data = doc.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("resultType"), str):
        return Answer(error="Prometheus answered success without a result (no data.resultType)")
    return Answer(data=data, warnings=warnings)


def _not_prometheus(status: int, body: bytes, content_type: str, is_json: bool) -> str:
    shown = _clip(body[:200].decode("utf-8", "replace"), 200) or "an empty body"
    what = "JSON that is not Prometheus's answer" if is_json else "no JSON"
    return f"Prometheus answered HTTP {status} with {what} ({content_type or 'no type'}): {shown}"


# --- judging a result -----------------------------------------------------------------------


@immutable
class Sample:
    """One series of a result: its labels (``__name__`` included) and its value."""

    labels: Mapping[str, str]
    value: float


@immutable
class CheckResult:
    """One check judged: ``passed`` only when the result meets ``expect``; ``values`` the
    samples seen (those that fail first, at most ``MAX_VALUES``), ``series`` how many there were;
    ``reason`` a sentence; ``error`` why there is no result to judge (then never passed)."""

    name: str
    expr: str
    expect: str
    passed: bool
    values: tuple[Sample, ...] = ()
    reason: str = ""
    error: str | None = None
    series: int = 0

    def record(self) -> dict[str, Any]:
        """What the validation keeps (``validation.checks`` of the follow-up, its timeline
        entry) and the API shows: JSON-able, a non-finite value as Prometheus writes it
        (``NaN``, ``+Inf``, ``-Inf``)."""
        return {
            "name": self.name,
            "passed": self.passed,
            "reason": self.reason,
            "values": [
                {"labels": dict(s.labels), "value": json_value(s.value)} for s in self.values
            ],
            "error": self.error,
        }


def format_value(value: float) -> str:
    """A value as people read it: ``0.001``, ``5``, ``1e-05``, ``NaN``, ``+Inf``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def json_value(value: float) -> float | str:
    return value if math.isfinite(value) else format_value(value)


def _short(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_series(labels: Mapping[str, str]) -> str:
    """``error_ratio{instance="a", job="b"}`` (values clipped, controls escaped)."""
    name = escape_controls(labels.get("__name__", ""))
    rest = ", ".join(
        f"{escape_controls(k)}={escape_controls(json.dumps(_short(v), ensure_ascii=False))}"
        for k, v in sorted(labels.items())
        if k != "__name__"
    )
    return f"{name}{{{rest}}}" if rest or not name else name


def not_run(check: Check, why: str) -> CheckResult:
    """A check that was not run (e.g. no Prometheus configured): not passed, ``error`` says why."""
    return CheckResult(
        check.name, check.expr, check.expect, False, (), f"not run: {why}", f"not run: {why}"
    )


def failed(check: Check, error: str) -> CheckResult:
    """A check without a result to judge: never passed."""
    return CheckResult(
        check.name,
        check.expr,
        check.expect,
        False,
        (),
        "not evaluated: there is no result to judge",
        error,
    )


def _labels(raw: Any) -> Mapping[str, str]:
    if not isinstance(raw, dict):
        raise ValueError("a sample's metric is not a mapping")
    items = sorted(raw.items())[:MAX_LABELS]
    return {str(k): str(v)[:MAX_LABEL_VALUE] for k, v in items}


def _value(pair: Any) -> float:
    if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str)):
        raise ValueError(f'a sample\'s value is not [time, "number"]: {_clip(repr(pair), 80)}')
    try:
        return float(pair[1])  # "NaN", "+Inf", "-Inf" included
    except ValueError:
        raise ValueError(f"a sample's value {pair[1]!r} is not a number") from None


def samples(data: Mapping[str, Any]) -> tuple[list[Sample], bool]:
    """The samples of a success's data, and whether it was a scalar; raises ValueError with a
    sentence for what a check cannot judge (a range vector, a string, a malformed answer)."""
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return [Sample({}, _value(result))], True
    if kind == "vector":
        if not isinstance(result, list):
            raise ValueError("the vector's result is not a list")
        out = []
        for item in result:
            if not isinstance(item, dict):
                raise ValueError("a sample of the vector is not a mapping")
            if "value" not in item and "histogram" in item:
                raise ValueError(
                    "the query returns native histograms, which cannot be compared with a "
                    "number: use histogram_quantile(), histogram_count() or histogram_sum()"
                )
            out.append(Sample(_labels(item.get("metric", {})), _value(item.get("value"))))
        return out, False
    if kind == "matrix":
        raise ValueError(
            "the query returns a range vector (matrix); a check needs an instant vector or a "
            "scalar: drop the [range] selector or wrap it, e.g. in max_over_time(...)"
        )
    if kind == "string":
        raise ValueError("the query returns a string; a check needs an instant vector or a scalar")
    raise ValueError(f"Prometheus answered an unknown resultType {_clip(str(kind), 40)!r}")


def _explain(value: float) -> str:
    if math.isnan(value):
        return (
            " (NaN, not a number: e.g. 0/0 when there was nothing to count; it meets no comparison)"
        )
    if math.isinf(value):
        return " (an infinite value: usually a division by zero)"
    return ""


def _named(items: Sequence[Sample]) -> str:
    shown = [f"{format_value(s.value)} {format_series(s.labels)}" for s in items[:MAX_NAMED]]
    more = len(items) - MAX_NAMED
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def evaluate(check: Check, answer: Answer) -> CheckResult:
    """Judge Prometheus's answer to ``check.expr`` against ``check.expect`` (the rules: this
    module's docstring)."""
    try:
        expect = parse_expect(check.expect)
    except ExpectError as exc:
        return failed(check, f"invalid expect: {exc}")
    if answer.error is not None or answer.data is None:
        return failed(check, answer.error or "Prometheus gave no result")
    try:
        found, scalar = samples(answer.data)
    except ValueError as exc:
        return failed(check, str(exc))
    n = len(found)

    def result(passed: bool, reason: str, kept: Sequence[Sample] = found) -> CheckResult:
        return CheckResult(
            check.name,
            check.expr,
            check.expect,
            passed,
            tuple(kept[:MAX_VALUES]),
            reason,
            None,
            n,
        )

    if expect.kind == "empty":
        if scalar:
            return result(False, "the query returns a scalar, which is never empty")
        if n == 0:
            return result(True, "the query returned no series, as expected (empty)")
        return result(False, f"the query returned {n} series, expected none: {_named(found)}")
    if expect.kind == "not empty":
        if n == 0:
            return result(False, "no data: the query returned no series, expected some")
        return result(True, f"the query returned {n} series, as expected (not empty)")
    if n == 0:
        return result(
            False,
            f"no data: the query returned no series, so nothing shows it is {expect} "
            '(if no series is the healthy answer, expect "empty")',
        )
    failing = [s for s in found if not expect.met_by(s.value)]
    kept = failing + [s for s in found if expect.met_by(s.value)]
    if not failing:
        if n == 1:
            text = f"{format_value(found[0].value)} is {expect}{_explain(found[0].value)}"
        else:
            low = min(s.value for s in found)
            high = max(s.value for s in found)
            text = f"all {n} series are {expect} (from {format_value(low)} to {format_value(high)})"
        return result(True, text, kept)
    if n == 1:
        value = found[0].value
        return result(False, f"{format_value(value)} is not {expect}{_explain(value)}", kept)
    odd = next((s.value for s in failing if not math.isfinite(s.value)), None)
    note = _explain(odd) if odd is not None else ""
    return result(
        False, f"{len(failing)} of {n} series are not {expect}: {_named(failing)}{note}", kept
    )
