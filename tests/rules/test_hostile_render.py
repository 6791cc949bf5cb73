"""Label values are written by anyone who can create an alert: a title or message template must
not let them size an allocation or a loop. Whatever the labels, a render is quick and small; a
title is at most TITLE_MAX characters; a render refused by the budget falls back and says why."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bridge.delivery.budget import ELLIPSIS, MESSAGE_MAX, TITLE_MAX, RenderBudgetExceeded
from bridge.delivery.templates import Renderer, TemplateError, context
from bridge.rules import RulesPolicy, engine
from bridge.rules.engine import WEBHOOK_RENDER_STEPS
from tests.rules.helpers import load_text, payload

# timing bounds: run after the parallel run, alone (make test)
pytestmark = pytest.mark.serial

NOW = 1_795_000_000 * 10**9

RULES = """
route:
  name: root
  title: {title}
"""

HUGE = str(10_000_000)  # a label that asks for ten million characters


@pytest.mark.parametrize(
    ("title", "labels"),
    [
        pytest.param("\"{{ 'x' * (labels.n|int) }}\"", {"n": HUGE}, id="repetition"),
        pytest.param("\"{{ '%*s' % (labels.n|int, '') }}\"", {"n": HUGE}, id="printf-width"),
        pytest.param("\"{{ '{:>{}}'.format('', labels.n|int) }}\"", {"n": HUGE}, id="format-width"),
        pytest.param("\"{{ 'x'|center(labels.n|int) }}\"", {"n": HUGE}, id="center"),
        pytest.param("\"{{ 'x'.ljust(labels.n|int) }}\"", {"n": HUGE}, id="ljust"),
        pytest.param('"{{ [labels.n] * (labels.n|int) }}"', {"n": HUGE}, id="list-repetition"),
        pytest.param(
            "\"{{ labels.s|replace('', labels.s) }}\"", {"n": "1", "s": "y" * 10_000}, id="replace"
        ),
        pytest.param(
            "'{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}t'",
            {"n": "1"},
            id="nested-loops",
        ),
        pytest.param(
            "'{% set x %}{% for i in range(10000) %}{{ labels.s }}{% endfor %}{% endset %}"
            "{{ x|length }}'",
            {"n": "1", "s": "y" * 10_000},
            id="set-block",
        ),
    ],
)
def test_a_label_cannot_size_a_title_render(
    tmp_path: Path, title: str, labels: dict[str, str]
) -> None:
    policy = RulesPolicy(load_text(tmp_path, RULES.format(title=title)))
    started = time.perf_counter()
    [decision] = policy.evaluate(payload({"alertname": "Hostile", **labels}), NOW)
    took = time.perf_counter() - started
    assert decision.title == "Hostile"  # the fallback
    assert len(decision.render_errors) == 1
    assert decision.render_errors[0].startswith("title: RenderBudgetExceeded: "), decision
    assert took < 1.0, took


def test_a_long_title_is_cut_with_a_marker(tmp_path: Path) -> None:
    policy = RulesPolicy(load_text(tmp_path, RULES.format(title="'{{ labels.text }}'")))
    [decision] = policy.evaluate(payload({"alertname": "Long", "text": "word " * 5000}), NOW)
    assert len(decision.title) == TITLE_MAX
    assert decision.title.endswith(ELLIPSIS)
    assert decision.render_errors == ()


def test_a_long_summary_fallback_is_cut_too(tmp_path: Path) -> None:
    policy = RulesPolicy(load_text(tmp_path, RULES.format(title="'{{ labels.missing }}'")))
    body = payload({"alertname": "Long"})
    alert = body.alerts[0].model_copy(update={"annotations": {"summary": "s" * 100_000}})
    [decision] = policy.evaluate(body.model_copy(update={"alerts": (alert,)}), NOW)
    assert len(decision.title) == TITLE_MAX and decision.title.endswith(ELLIPSIS)


def test_a_webhooks_titles_share_one_budget(tmp_path: Path) -> None:
    """Many groups of one webhook, each render within its own budget: together they still
    stop, the rest falling back with a render error."""
    slow = "'{% for i in range(19000) %}{% endfor %}{{ labels.instance }}'"
    rules = RULES.format(title=slow).replace("  title:", "  group_by: [instance]\n  title:")
    policy = RulesPolicy(load_text(tmp_path, rules))
    alerts = [{"alertname": "Many", "instance": f"host-{i}"} for i in range(2000)]
    started = time.perf_counter()
    decisions = policy.evaluate(payload(*alerts), NOW)
    took = time.perf_counter() - started
    assert len(decisions) == 2000
    rendered = [d for d in decisions if not d.render_errors]
    assert rendered[0].title == "host-0"
    assert 1 <= len(rendered) <= WEBHOOK_RENDER_STEPS // 19_000, len(rendered)
    late = [d for d in decisions if d.render_errors]
    assert all(d.title == "Many" for d in late)
    assert sum("took over" in d.render_errors[0] for d in late) >= 1900
    assert took < 1.0, took


def test_a_large_webhook_of_real_titles_renders_every_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What this proves is the step budget: 2,000 real titles fit in WEBHOOK_RENDER_STEPS. The
    # webhook's wall-clock share (0.5 s) is another bound, proven by the looping templates
    # above; on a CI machine running two test workers on two cores, 2,000 renders can take
    # longer than that share, which says nothing about the steps.
    monkeypatch.setattr(engine, "WEBHOOK_RENDER_S", 60.0)
    real = "'{{ labels.alertname }} on {{ labels.instance }}{% if labels.team is defined %}" + (
        " ({{ labels.team|upper }}){% endif %}'"
    )
    rules = RULES.format(title=real).replace("  title:", "  group_by: [instance]\n  title:")
    policy = RulesPolicy(load_text(tmp_path, rules))
    alerts = [{"alertname": "Many", "instance": f"h-{i}", "team": "t"} for i in range(2000)]
    decisions = policy.evaluate(payload(*alerts), NOW)
    assert [d.title for d in decisions] == [f"Many on h-{i} (T)" for i in range(2000)]


def _renderer(tmp_path: Path, template: str) -> Renderer:
    (tmp_path / "console").mkdir()
    (tmp_path / "console" / "default.j2").write_text(template)
    return Renderer(tmp_path)


def _incident(labels: dict[str, str]) -> dict[str, object]:
    from bridge.delivery.templates import SAMPLE_INCIDENT

    alert = {**SAMPLE_INCIDENT["alerts"][0], "labels": labels}
    return {**SAMPLE_INCIDENT, "alerts": [alert]}


def test_a_label_cannot_size_a_message_render(tmp_path: Path) -> None:
    renderer = _renderer(tmp_path, "{{ 'x' * (alerts[0].labels.n|int) }}")
    started = time.perf_counter()
    with pytest.raises(TemplateError, match="RenderBudgetExceeded"):
        renderer.render(
            "console", "opened", context(_incident({"n": HUGE}), "opened"), markup="text"
        )
    assert time.perf_counter() - started < 1.0


def test_a_long_message_is_cut_with_a_marker(tmp_path: Path) -> None:
    renderer = _renderer(
        tmp_path,
        "{% set title = alerts[0].labels.t %}"
        "{% for i in range(100) %}{{ alerts[0].labels.s }}{% endfor %}",
    )
    ctx = context(_incident({"s": "<b>" * 1000, "t": "&" * 1000}), "opened")
    out = renderer.render("console", "opened", ctx, markup="html")
    assert len(out.body) <= MESSAGE_MAX and out.body.endswith(ELLIPSIS)
    assert not out.body.rstrip(ELLIPSIS).endswith(("&", "&l", "&lt"))  # no entity cut through
    assert len(out.title) <= TITLE_MAX and out.title.endswith(ELLIPSIS)


def test_a_long_document_outside_a_message_budget_still_renders() -> None:
    """The postmortem's Markdown renders through the same sandbox without a message budget:
    a document of a few hundred thousand characters is fine, 400 million is not."""
    from bridge.delivery.templates import sandbox

    env = sandbox([], lambda s: s)
    long = env.from_string("{% for i in range(300) %}{{ x }}{% endfor %}").render(x="y" * 1000)
    assert len(long) == 300_000
    with pytest.raises(RenderBudgetExceeded):
        env.from_string("{{ 'x' * 400000000 }}").render()


def test_quick_evaluation_is_all_or_nothing(tmp_path: Path) -> None:
    """The receiver's first try on the event loop: the same decisions as ``evaluate`` when the
    titles fit its small budget, None (not fallbacks) when they do not."""
    policy = RulesPolicy(load_text(tmp_path, RULES.format(title="'{{ labels.alertname }}!'")))
    body = payload({"alertname": "Small"})
    assert policy.evaluate_quick(body, NOW) == policy.evaluate(body, NOW)
    slow = RULES.format(title="'{% for i in range(19000) %}{% endfor %}{{ labels.alertname }}'")
    policy = RulesPolicy(load_text(tmp_path, slow, name="slow.yaml"))
    assert policy.evaluate_quick(body, NOW) is None
    assert policy.evaluate(body, NOW)[0].title == "Small"
