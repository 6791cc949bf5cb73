"""The postmortem's Markdown: the shipped template against a golden file (UPDATE_GOLDEN=1
rewrites it), its overrides (the --templates folder, a route's own), escaping, and template
errors named by file and line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bridge.core.postmortem import Narrative, Version, build_facts, document, merge
from bridge.core.timeutil import NS
from bridge.delivery.templates import TemplateError
from bridge.kb.render import render, safe_markdown, unsafe_url
from tests.rendered import html_and_links

GOLDEN = Path(__file__).parent / "golden" / "postmortem.md"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

INCIDENT: dict[str, Any] = {
    "id": 12,
    "key": '{}:{alertname="HighErrorRate"}',
    "title": "Checkout errors | 5xx",
    "severity": "sev2",
    "status": "resolved",
    "route": "checkout",
    "team": "payments",
    "service": "checkout-api",
    "started_at": "2026-11-27T04:00:00Z",
    "opened_at": "2026-11-27T04:01:30Z",
    "acknowledged_at": "2026-11-27T04:05:00Z",
    "mitigated_at": "2026-11-27T04:40:00Z",
    "resolved_at": "2026-11-27T06:00:00Z",
    "closed_at": None,
    "roles": {"commander": ["dave"], "liaison": ["lee"], "responders": ["sam", "carol"]},
}


def _entry(eid: int, at: str, kind: str, actor: str, text: str, **data: Any) -> dict[str, Any]:
    return {"id": eid, "time": at, "kind": kind, "actor": actor, "text": text, "data": data}


TIMELINE = [
    _entry(1, "2026-11-27T04:01:30Z", "opened", "alertmanager", "Incident opened: Checkout errors"),
    _entry(2, "2026-11-27T04:01:30Z", "alert_fired", "alertmanager", "HighErrorRate fired"),
    _entry(
        3,
        "2026-11-27T04:02:00Z",
        "role_changed",
        "amara",
        "amara is commander",
        role="commander",
        to=["amara"],
        action="assign",
        **{"from": []},
    ),
    _entry(4, "2026-11-27T04:05:00Z", "status_changed", "carol", "Acknowledged by carol"),
    _entry(
        5,
        "2026-11-27T04:06:00Z",
        "role_changed",
        "amara",
        "Commander handed over from amara to dave",
        role="commander",
        to=["dave"],
        action="handover",
        **{"from": ["amara"]},
    ),
    {
        **_entry(
            6, "2026-11-27T04:07:00Z", "note", "sam", "Note: p99 at 4 s | pool at 100%\nsee graph"
        ),
        "corrected_by": 8,
        "corrected_text": "p99 at 6 s | pool at 100%\nsee graph",
    },
    _entry(7, "2026-11-27T04:10:00Z", "decision", "dave", "Decision: roll back 4.2"),
    _entry(
        8,
        "2026-11-27T04:11:00Z",
        "note",
        "sam",
        "Note (corrects #6): p99 at 6 s | pool at 100%\nsee graph",
        corrects=6,
    ),
    _entry(9, "2026-11-27T04:20:00Z", "status_update", "lee", "Status update: rolling back"),
    _entry(10, "2026-11-27T04:40:00Z", "status_changed", "alertmanager", "Mitigated"),
    _entry(11, "2026-11-27T06:00:00Z", "status_changed", "dave", "Resolved by dave"),
]
ALERTS = [
    {
        "status": "resolved",
        "labels": {"alertname": "HighErrorRate", "service": "checkout"},
        "annotations": {
            "summary": "5xx ratio above 5% [see](javascript:alert(1))",
            "runbook_url": "https://runbooks.example/checkout/high-error-rate",
        },
        "starts_at": "2026-11-27T04:00:00Z",
        "ends_at": "2026-11-27T04:40:00Z",
        "generator_url": "http://prometheus.example/graph?g0.expr=rate(x[5m])",
    },
    {
        "status": "resolved",
        "labels": {"alertname": "PoolExhausted"},
        "annotations": {"runbook_url": "javascript:alert(1)"},
        "starts_at": "2026-11-27T04:03:00Z",
        "ends_at": "2026-11-27T04:39:00Z",
        "generator_url": "",
    },
]
FOLLOWUP = {
    "validated_at": "2026-11-27T05:10:00Z",
    "validation": {
        "passed": True,
        "quiet": True,
        "window_s": 1800,
        "checks": [{"name": "error_ratio", "passed": True, "reason": "0.001 < 0.01"}],
        "reasons": [],
    },
}
ITEMS = [
    {
        "id": 21,
        "kind": "action",
        "text": "Alert on pool saturation",
        "owner": "zed",
        "state": "open",
    },
    {"id": 22, "kind": "check", "text": "Create follow-up tickets", "state": "done"},
    {"id": 23, "kind": "review", "text": "Review alerts", "state": "waived", "reason": "done live"},
]
TICKETS = {"21": {"key": "OPS-12", "url": "https://jira.example/browse/OPS-12"}}
NARRATIVE = Narrative(
    summary="Checkout answered 5xx for 40 minutes after release 4.2 *exhausted* the pool.",
    impact="About 5% of payments failed.",
    root_cause="Release 4.2 retried every failed query:\n\n- retries held connections\n"
    "- the pool had no headroom",
    went_well="The rollback took 4 minutes.",
)


def fixed_document(narrative: Narrative | None = NARRATIVE) -> dict[str, Any]:
    facts = build_facts(
        INCIDENT,
        TIMELINE,
        ALERTS,
        alert_count=2,
        followup=FOLLOWUP,
        items=ITEMS,
        tickets=TICKETS,
    )
    saved = None if narrative is None else Version(3, "dave", 1_795_766_400 * NS, narrative)
    return document(merge(facts, saved))


def test_the_shipped_template_renders_the_golden_postmortem() -> None:
    got = render(fixed_document(), "checkout").markdown
    if UPDATE:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(got, encoding="utf-8")
    assert GOLDEN.exists(), f"missing golden file {GOLDEN}; run with UPDATE_GOLDEN=1"
    assert got == GOLDEN.read_text(encoding="utf-8"), f"{GOLDEN} differs; UPDATE_GOLDEN=1"


def test_what_the_postmortem_shows() -> None:
    md = render(fixed_document(), "checkout").markdown
    assert md.startswith("# Postmortem: #12 Checkout errors \\| 5xx\n")
    assert "| Severity | sev2 |" in md and "| Team | payments |" in md
    assert "| Impact window (UTC) | 2026-11-27 04:00:00 to 2026-11-27 04:40:00 (40m 00s) |" in md
    for row in (
        "| Detection delay (started to opened) | 1m 30s |",
        "| Time to acknowledge | 5m 00s |",
        "| Time to mitigate | 40m 00s |",
        "| Time to resolve | 2h 00m 00s |",
    ):
        assert row in md
    assert "| 2026-11-27 04:06:00 | commander | amara | dave | amara |" in md
    # The corrected note reads corrected, in one table row; the correction is not repeated.
    assert (
        "| 2026-11-27 04:07:00 | note | sam | Note: p99 at 6 s \\| pool at 100%<br>see graph "
        "_(corrected by #8)_ |"
    ) in md
    assert "Note (corrects #6)" not in md
    assert "| 2026-11-27 04:10:00 | decision | dave | Decision: roll back 4.2 |" in md
    assert "[source](http://prometheus.example/graph?g0.expr=rate%28x%5B5m%5D%29)" in md
    assert "[runbook](https://runbooks.example/checkout/high-error-rate)" in md
    assert "runbook" in md.split("PoolExhausted", 1)[1].split("\n")[0]  # shown, not linked
    assert "javascript:alert(1))" not in md.split("PoolExhausted", 1)[1].split("\n")[0]
    assert "\\[see\\](javascript:alert(1))" in md  # a link in a label is inert
    assert "Passed at 2026-11-27 05:10:00 UTC; the stabilization window was quiet." in md
    assert "| 21 | Alert on pool saturation | action | zed | open | " in md
    assert "[OPS-12](https://jira.example/browse/OPS-12) |" in md
    # The narrative is the team's Markdown, as written; an empty section shows its guidance.
    assert "*exhausted*" in md and "- retries held connections" in md
    assert "## What went badly\n\n> _Not written yet._ Where alerts" in md


def test_a_draft_shows_the_guidance_everywhere() -> None:
    md = render(fixed_document(None), "checkout").markdown
    assert "| Narrative | not written yet |" in md
    assert md.count("> _Not written yet._") == 6


def test_the_templates_folder_and_a_route_override_the_shipped_template(tmp_path: Path) -> None:
    (tmp_path / "postmortem").mkdir()
    (tmp_path / "postmortem.md.j2").write_text("general {{ incident.id }}\n")
    (tmp_path / "postmortem" / "checkout.md.j2").write_text("route {{ incident.title }}\n")
    doc = fixed_document()
    got = render(doc, "checkout", user_dir=tmp_path)
    assert got.markdown == "route Checkout errors \\| 5xx\n"
    assert got.template == tmp_path / "postmortem" / "checkout.md.j2"
    assert render(doc, "payments", user_dir=tmp_path).markdown == "general 12\n"
    # A route name that is not a file name never picks a template elsewhere.
    assert render(doc, "../postmortem/checkout", user_dir=tmp_path).markdown == "general 12\n"
    # An edit applies at the next render.
    (tmp_path / "postmortem.md.j2").write_text("edited {{ incident.id }}\n")
    os.utime(tmp_path / "postmortem.md.j2", (1, 4_000_000_000))
    assert render(doc, "payments", user_dir=tmp_path).markdown == "edited 12\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("# {{ incident.id }}\n{% if %}\n", 2, "Expected an expression"),
        ("# ok\n\n{{ incident.nope }}\n", 3, "UndefinedError"),
        ("{{ incident.__class__.__mro__ }}\n", 1, "SecurityError"),
    ],
)
def test_a_template_error_names_its_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    (tmp_path / "postmortem.md.j2").write_text(text)
    with pytest.raises(TemplateError) as caught:
        render(fixed_document(), "checkout", user_dir=tmp_path)
    assert caught.value.template.endswith("postmortem.md.j2")
    assert caught.value.line == line and message in caught.value.message
    assert str(caught.value).startswith(f"{caught.value.template}:{line}: ")


# --- the narrative's raw HTML and unsafe links ------------------------------------------------


HOSTILE_MARKDOWN = [
    "<script>alert(1)</script>",
    "Hi <img src=x onerror=alert(1)> there",
    "<div>\n`<script>`\n</div>",
    "[x](javascript:alert(1))",
    "[x]( JaVaScRiPt:alert(1))",
    "[x](javascript&#58;alert(1))",
    "[x](java\\script:alert(1))",
    "[x](<javascript:alert(1)>)",
    "![i](data:text/html,<script>alert(1)</script>)",
    "<javascript:alert(1)>",
    "[r]\n\n[r]: javascript:alert(1)",
    "[r]\n\n[r]:\n  vbscript:msgbox(1)",
    "> [r]: javascript:alert(1)\n\n[r]",
    "- item <b>x</b>\n  - [y](file:///etc/passwd)",
    "| a | b |\n|---|---|\n| `<x>` | <b>y</b> [j](javascript:1) |",
    "`unclosed <b>",
    "<!-- a comment --> <?php ?> <![CDATA[x]]>",
]


@pytest.mark.parametrize("text", HOSTILE_MARKDOWN)
def test_the_narrative_s_raw_html_and_unsafe_links_are_made_text(text: str) -> None:
    safe = safe_markdown(text)
    html, links = html_and_links(safe)
    assert html == [] and not any(unsafe_url(link) for link in links), (safe, html, links)
    assert safe_markdown(safe) == safe  # made safe once, nothing more to do


@pytest.mark.parametrize(
    "text",
    [
        "Plain *Markdown*, [a link](https://runbooks.example/a?b=1) and [relative](../2025/7.md)",
        "Mail <mailto:oncall@example.com> or <https://status.example/9>",
        "Code `<b>` and ``a ` <i> b``",
        "```html\n<script>alert('quoted')</script>\n```",
        "    <script>indented code</script>",
        "- item\n  ```\n  <s>\n  ```",
        "a \\<b> escaped already, 1 < 2",
    ],
)
def test_safe_markdown_and_code_are_kept(text: str) -> None:
    expected = text.replace("1 < 2", "1 &lt; 2")
    assert safe_markdown(text) == expected


def test_what_the_escaping_misses_is_caught_by_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the scan read a construct differently from the parser, the check after it
    escapes the whole text bluntly: every < and [ as a character reference."""
    import bridge.kb.render as rendering

    monkeypatch.setattr(rendering, "_escape_inline", lambda text: text)
    safe_markdown.cache_clear()  # no answer kept from before the patch
    text = "Hi <script>alert(1)</script> [x](javascript:alert(2)) `<code>`"
    safe = safe_markdown(text)
    assert safe == text.replace("<", "&lt;").replace("[", "&#91;")
    html, links = html_and_links(safe)
    assert html == [] and links == []


def test_the_template_gets_the_sections_made_safe_unless_raw_html_is_allowed() -> None:
    narrative = Narrative(summary="Down. <script>alert(1)</script> [x](javascript:alert(2))")
    made_safe = render(fixed_document(narrative), "checkout").markdown
    assert "&lt;script>alert(1)&lt;/script> [x]\\(javascript:alert(2))" in made_safe
    verbatim = render(fixed_document(narrative), "checkout", raw_html=True).markdown
    assert "<script>alert(1)</script> [x](javascript:alert(2))" in verbatim
    # The template's own <br> (a line break in a table's cell) is not the narrative's: kept.
    assert "100%<br>see graph" in made_safe
