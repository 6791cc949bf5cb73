"""A title template that raises for some labels never makes ``RulesPolicy.evaluate`` raise:
Alertmanager drops a group answered with a 4xx, so one bad template would lose every alert of
the webhook. The title falls back like for a missing label, and the decision says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.core.alertmanager import WebhookPayload
from bridge.core.policy import Decision
from bridge.rules import RulesPolicy
from tests.rules.helpers import load_text

NOW = 1_795_000_000 * 10**9

RULES = """
route:
  routes:
    - name: metric
      matchers: ['alertname="Metric"']
      group_by: [alertname, instance]
      title: {title}
    - name: other
      matchers: ['alertname="Other"']
      title: "{{{{ labels.alertname }}}} on {{{{ labels.instance }}}}"
"""


def webhook(*alerts: tuple[dict[str, str], dict[str, str]]) -> WebhookPayload:
    items: list[dict[str, Any]] = [
        {
            "status": "firing",
            "labels": labels,
            "annotations": annotations,
            "startsAt": "2026-11-27T10:00:00Z",
        }
        for labels, annotations in alerts
    ]
    return WebhookPayload.model_validate(
        {"groupKey": '{}:{alertname="Metric"}', "status": "firing", "alerts": items}
    )


def evaluate(
    tmp_path: Path, title: str, *alerts: tuple[dict[str, str], dict[str, str]]
) -> list[Decision]:
    policy = RulesPolicy(load_text(tmp_path, RULES.format(title=title)))
    return policy.evaluate(webhook(*alerts), NOW)


GOOD = ({"alertname": "Other", "instance": "good"}, {})


@pytest.mark.parametrize(
    ("title", "labels", "error"),
    [
        pytest.param(
            "\"{{ '{:.1f}'.format(labels.value) }}\"",
            {"value": "high"},
            "title: ValueError: Unknown format code 'f' for object of type 'str'",
            id="format-code-on-a-string",
        ),
        pytest.param(
            '"{{ labels.value|float / (labels.value|float - 3) }}"',
            {"value": "3"},
            "title: ZeroDivisionError: float division by zero",
            id="division-by-zero",
        ),
        pytest.param(
            "\"{{ '{alertname} on {city}'.format(**labels) }}\"",
            {"town": "Paris"},
            "title: KeyError: 'city'",
            id="format-missing-key",
        ),
        pytest.param(
            "\"{{ labels.city.encode('ascii') }}\"",
            {"city": "café"},
            "title: UnicodeEncodeError: 'ascii' codec can't encode character '\\xe9' in "
            "position 3: ordinal not in range(128)",
            id="encode-non-ascii",
        ),
    ],
)
def test_a_title_that_raises_falls_back_and_keeps_the_group(
    tmp_path: Path, title: str, labels: dict[str, str], error: str
) -> None:
    bad = ({"alertname": "Metric", "instance": "bad", **labels}, {})
    with_summary = ({"alertname": "Metric", "instance": "sum", **labels}, {"summary": "CPU hot"})
    ds = evaluate(tmp_path, title, GOOD, bad, with_summary)
    assert [d.key for d in ds] == [
        'other:{}:{alertname="Metric"}',
        'metric:{alertname="Metric", instance="bad"}',
        'metric:{alertname="Metric", instance="sum"}',
    ]
    good, failed, summary = ds
    assert good.title == "Other on good" and good.render_errors == ()
    # the fallback of a missing label: the summary annotation, else alertname, else the key
    assert failed.title == "Metric" and failed.render_errors == (error,)
    assert summary.title == "CPU hot" and summary.render_errors == (error,)
    assert failed.route == "metric" and failed.fingerprints and failed.severity == "sev4"


@pytest.mark.parametrize(
    ("title", "error"),
    [
        ('"{{ labels.value - 1 }}"', "title: TypeError: unsupported operand type(s)"),
        ('"{{ labels.value.__class__ }}"', "title: SecurityError: access to attribute"),
        ('"{{ range(10**9)|list }}"', "title: OverflowError: Range too big."),
    ],
)
def test_any_exception_type_is_caught(tmp_path: Path, title: str, error: str) -> None:
    (d,) = evaluate(tmp_path, title, ({"alertname": "Metric", "value": "x"}, {}))
    assert d.title == "Metric"
    assert len(d.render_errors) == 1 and d.render_errors[0].startswith(error)


def test_the_key_is_the_last_fallback(tmp_path: Path) -> None:
    rules = 'route: {group_by: [x], title: "{{ 1 / 0 }}"}\n'
    (d,) = RulesPolicy(load_text(tmp_path, rules)).evaluate(webhook(({"x": "1"}, {})), NOW)
    assert d.title == 'root:{x="1"}'
    assert d.render_errors == ("title: ZeroDivisionError: division by zero",)


def test_render_errors_are_one_bounded_line(tmp_path: Path) -> None:
    title = "\"{{ ('{' ~ 'k' * 500 ~ '}').format(**labels) }}\""
    (d,) = evaluate(tmp_path, title, ({"alertname": "Metric"}, {}))
    (message,) = d.render_errors
    assert message.startswith("title: KeyError: 'kkk")
    assert len(message) <= 200 and "\n" not in message


def test_a_missing_label_is_the_documented_fallback_not_an_error(tmp_path: Path) -> None:
    (d,) = evaluate(tmp_path, '"{{ labels.nowhere }}"', ({"alertname": "Metric"}, {}))
    assert d.title == "Metric" and d.render_errors == ()
