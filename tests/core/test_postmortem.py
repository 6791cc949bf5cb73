"""The postmortem's pure parts: sections and versions, the facts record (durations from the
milestones, hand-overs, corrections applied, bounds), the merge, the knowledge base's layout."""

from __future__ import annotations

from typing import Any

from bridge.core.postmortem import (
    EMPTY,
    MAX_SECTION,
    MAX_TIMELINE,
    SECTION_INFO,
    SECTIONS,
    IndexEntry,
    Narrative,
    SectionProblem,
    Version,
    apply_sections,
    build_facts,
    changed_sections,
    diff,
    document,
    durations,
    format_duration,
    index_entry,
    index_page,
    kb_path,
    md_cell,
    merge,
    narrative_from,
    published_event,
    saved_event,
    searchable_text,
    slug,
)
from bridge.core.timeutil import NS, parse_rfc3339

INCIDENT: dict[str, Any] = {
    "id": 12,
    "key": "k",
    "title": "Checkout errors",
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
    "roles": {"commander": ["dave"], "responders": ["sam", "lee"]},
}


def entry(eid: int, kind: str, shown: str, **data: Any) -> dict[str, Any]:
    """A timeline entry as store/queries gives it (``data`` is the entry's data)."""
    return {
        "id": eid,
        "time": f"2026-11-27T04:{eid % 60:02d}:00Z",
        "kind": kind,
        "actor": "sam",
        "text": shown,
        "data": data,
    }


def ok(result: Narrative | SectionProblem) -> Narrative:
    assert isinstance(result, Narrative), result
    return result


def test_sections_are_named_titled_and_guided_blamelessly() -> None:
    assert SECTIONS == ("summary", "impact", "root_cause", "went_well", "went_badly", "lucky")
    assert [s.name for s in SECTION_INFO] == list(SECTIONS)
    guidance = " ".join(s.guidance for s in SECTION_INFO)
    assert "not people" in guidance and "not who did it" in guidance


def test_a_change_keeps_the_other_sections_and_normalizes_the_text() -> None:
    first = ok(apply_sections(EMPTY, {"summary": "  Checkout failed.\r\n\r\n", "impact": "5%"}))
    assert first.summary == "Checkout failed." and first.written == ("summary", "impact")
    second = ok(apply_sections(first, {"impact": "", "lucky": "It was night.  \n"}))
    assert second.summary == "Checkout failed." and second.impact == ""
    assert second.lucky == "It was night."
    assert changed_sections(first, second) == ("impact", "lucky")
    # The same text again (with what an editor adds around it) changes nothing.
    assert changed_sections(second, ok(apply_sections(second, {"lucky": "It was night.\n"}))) == ()


def test_an_unknown_or_oversized_section_is_named() -> None:
    bad = apply_sections(EMPTY, {"summary": "x", "blame": "bob"})
    assert isinstance(bad, SectionProblem)
    assert bad.field == "sections.blame" and "unknown section 'blame'" in bad.message
    assert "summary, impact" in bad.message
    long = apply_sections(EMPTY, {"impact": "x" * (MAX_SECTION + 1)})
    assert isinstance(long, SectionProblem) and long.field == "sections.impact"
    assert isinstance(apply_sections(EMPTY, {"impact": 3}), SectionProblem)


def test_a_stored_narrative_reads_leniently() -> None:
    assert narrative_from({"summary": "s", "unknown": "x", "impact": 5}) == Narrative(summary="s")
    assert narrative_from(["not", "an", "object"]) == EMPTY


def test_the_diff_is_unified_over_the_sections() -> None:
    a = Narrative(summary="Checkout failed.")
    b = Narrative(summary="Checkout failed for 40 minutes.", root_cause="A pool leak.")
    text = diff(a, b, "v1", "v2")
    assert text.startswith("--- v1\n+++ v2\n")
    assert "-Checkout failed.\n+Checkout failed for 40 minutes.\n" in text
    assert "+A pool leak.\n" in text
    assert diff(a, a, "v1", "v1") == ""


def test_durations_run_from_the_first_alert() -> None:
    facts = build_facts(INCIDENT, [])
    got = {d.name: d.ns for d in facts.durations}
    started = parse_rfc3339("2026-11-27T04:00:00Z")
    assert started is not None
    for name, milestone in (
        ("detection_delay", "opened_at"),
        ("time_to_acknowledge", "acknowledged_at"),
        ("time_to_mitigate", "mitigated_at"),
        ("time_to_resolve", "resolved_at"),
    ):
        at = parse_rfc3339(INCIDENT[milestone])
        assert at is not None and got[name] == at - started
    assert got["detection_delay"] == 90 * NS and got["time_to_resolve"] == 2 * 3600 * NS
    unreached = durations({"started_at": 0, "opened_at": NS})
    assert [d.ns for d in unreached] == [NS, None, None, None]
    assert [format_duration(n) for n in (None, 45 * NS, 252 * NS, 7500 * NS, 3 * 86400 * NS)] == [
        "-",
        "45s",
        "4m 12s",
        "2h 05m 00s",
        "3d 00h 00m",
    ]
    doc = document(merge(facts, None))
    assert doc["impact"] == {
        "start": "2026-11-27T04:00:00Z",
        "end": "2026-11-27T04:40:00Z",
        "duration": "40m 00s",
    }
    assert doc["durations"][0] == {
        "name": "detection_delay",
        "label": "Detection delay (started to opened)",
        "seconds": 90.0,
        "text": "1m 30s",
    }


def test_hand_overs_and_corrections_chains_included() -> None:
    timeline = [
        entry(1, "opened", "Incident opened: Checkout errors"),
        entry(
            2,
            "role_changed",
            "Commander handed over from amara to dave",
            role="commander",
            **{"from": ["amara"], "to": ["dave"], "action": "handover"},
        ),
        {**entry(3, "note", "Note: p99 at 4 s", text="p99 at 4 s"), "corrected_by": 4},
        {
            **entry(4, "note", "Note (corrects #3): p99 at 6 s", text="p99 at 6 s", corrects=3),
            "corrected_by": 5,
            "corrected_text": "p99 at 8 s",
        },
        entry(5, "note", "Note (corrects #4): p99 at 8 s", text="p99 at 8 s", corrects=4),
        entry(6, "decision", "Decision: roll back 4.2", text="roll back 4.2"),
        # The postmortem's own entries and the close (by the publication) are not its story.
        entry(7, "postmortem_saved", "Postmortem v1 saved by dave (summary)", version=1),
        entry(8, "postmortem_published", "Postmortem v1 published by dave", version=1),
        entry(9, "status_changed", "Closed by dave", to="closed"),
    ]
    timeline[2]["corrected_text"] = "p99 at 6 s"
    facts = build_facts(INCIDENT, timeline)
    assert [(h.role, h.before, h.after, h.action) for h in facts.handovers] == [
        ("commander", ("amara",), ("dave",), "handover")
    ]
    rows = [(r.id, r.kind, r.text, r.corrected_by) for r in facts.timeline]
    assert rows == [
        (1, "opened", "Incident opened: Checkout errors", None),
        (2, "role_changed", "Commander handed over from amara to dave", None),
        (3, "note", "Note: p99 at 8 s", 5),  # the last correction of the chain
        (6, "decision", "Decision: roll back 4.2", None),
    ]
    assert facts.roles == (("commander", ("dave",)), ("responders", ("sam", "lee")))


def test_the_timeline_and_the_alerts_are_bounded() -> None:
    storm = [entry(1, "opened", "opened")]
    storm += [entry(i, "alert_fired", f"alert {i}") for i in range(2, MAX_TIMELINE + 600)]
    storm += [entry(MAX_TIMELINE + 700, "note", "Note: the fix", text="the fix")]
    alerts = [{"labels": {"alertname": f"A{i}"}, "status": "firing"} for i in range(150)]
    facts = build_facts(INCIDENT, storm, alerts, alert_count=5000)
    kinds = [r.kind for r in facts.timeline]
    assert kinds.count("alert_fired") == 25 and kinds[-1] == "note"
    assert facts.timeline_omitted == len(storm) - len(facts.timeline)
    assert len(facts.alerts) == 100 and facts.alerts_omitted == 4900


def test_alerts_validation_and_items_with_tickets() -> None:
    alert = {
        "status": "resolved",
        "labels": {"alertname": "HighErrorRate", "service": "checkout"},
        "annotations": {"summary": "5xx > 5%", "runbook_url": "https://runbooks.example/x"},
        "starts_at": "2026-11-27T04:00:00Z",
        "ends_at": 1_795_752_400 * NS,
        "generator_url": "http://prometheus.example/graph",
    }
    followup = {
        "validated_at": "2026-11-27T05:10:00Z",
        "validation": {
            "passed": False,
            "quiet": True,
            "checks": [{"name": "error_ratio", "passed": False, "reason": "0.2 is not < 0.01"}],
            "reasons": ["check error_ratio: 0.2 is not < 0.01"],
        },
    }
    items = [
        {"id": 7, "kind": "action", "text": "Pool alert", "owner": "zed", "state": "open"},
        {"id": 8, "kind": "check", "text": "Tickets", "state": "waived", "reason": "none"},
    ]
    tickets = {"7": {"key": "OPS-12", "url": "https://jira.example/OPS-12"}, "x": "junk"}
    facts = build_facts(INCIDENT, [], [alert], followup=followup, items=items, tickets=tickets)
    doc = document(merge(facts, None))
    assert doc["alerts"][0]["runbook_url"] == "https://runbooks.example/x"
    assert doc["alerts"][0]["generator_url"] == "http://prometheus.example/graph"
    assert doc["alerts"][0]["ends_at"] == "2026-11-27T04:06:40Z"
    assert doc["validation"]["passed"] is False and doc["validation"]["quiet"] is True
    assert doc["validation"]["checks"] == [
        {"name": "error_ratio", "passed": False, "reason": "0.2 is not < 0.01"}
    ]
    assert doc["action_items"][0]["ticket"] == {
        "key": "OPS-12",
        "url": "https://jira.example/OPS-12",
    }
    assert doc["action_items"][1]["ticket"] is None
    # Nothing of the follow-up is known yet: it reads as nothing, not as an error.
    empty = document(merge(build_facts(INCIDENT, [], followup={"validation": "junk"}), None))
    assert empty["validation"]["passed"] is None and empty["action_items"] == []


def test_the_merge_puts_the_narrative_over_the_facts() -> None:
    facts = build_facts(INCIDENT, [])
    narrative = Narrative(summary="Checkout failed.", root_cause="A pool leak.")
    pm = merge(facts, Version(3, "dave", 1_795_752_400 * NS, narrative))
    doc = document(pm)
    assert (doc["version"], doc["author"], doc["saved_at"]) == (3, "dave", "2026-11-27T04:06:40Z")
    by_name = {s["name"]: s for s in doc["sections"]}
    assert by_name["summary"]["text"] == "Checkout failed."
    assert by_name["impact"]["text"] == "" and by_name["impact"]["guidance"]
    assert searchable_text(pm).startswith("Postmortem: Checkout errors")
    assert "A pool leak." in searchable_text(pm)
    draft = document(merge(facts, None))
    assert draft["version"] is None and all(s["text"] == "" for s in draft["sections"])


def test_the_timeline_entries_say_what_was_done() -> None:
    saved = saved_event(2, "dave", ["summary", "root_cause"])
    assert saved.kind == "postmortem_saved"
    assert saved.text == "Postmortem v2 saved by dave (summary, root cause and trigger)"
    assert saved.data == {"version": 2, "sections": ["summary", "root_cause"]}
    done = published_event(2, "dave", "2026/12-checkout-errors.md", "a" * 40)
    assert done.text == (
        "Postmortem v2 published by dave: 2026/12-checkout-errors.md (commit aaaaaaaaaaaa)"
    )
    assert published_event(1, "dave", "", None).text == "Postmortem v1 published by dave"


def test_the_file_name_is_ascii_bounded_and_never_a_path() -> None:
    assert slug("Checkout: 5xx on /api/pay (EU)") == "checkout-5xx-on-api-pay-eu"
    assert slug("Café déjà vu") == "cafe-deja-vu"
    assert slug("../../etc/passwd") == "etc-passwd"
    assert slug("日本語") == "incident" and slug("") == "incident"
    long = slug("word " * 40)
    assert len(long) <= 60 and not long.endswith("-") and long.startswith("word-word")
    opened = parse_rfc3339("2026-11-27T04:01:30Z")
    assert opened is not None
    assert kb_path(12, "Checkout errors", opened) == "2026/12-checkout-errors.md"


def test_table_cells_cannot_break_the_table() -> None:
    assert md_cell("a | b\nc") == "a \\| b<br>c"
    assert md_cell("[x](javascript:y) <b>") == "\\[x\\](javascript:y) \\<b\\>"
    assert md_cell("[a](http://x) | b", escaped=True) == "[a](http://x) \\| b"


def test_the_index_lists_the_newest_first_once_each() -> None:
    facts = build_facts(INCIDENT, [])
    older = IndexEntry(3, "Disk | full", "sev3", "", "2025/3-disk-full.md", 5, durations({}))
    page = index_page([older, index_entry(facts, "old.md"), index_entry(facts, "2026/12-x.md")])
    lines = page.splitlines()
    assert lines[0] == "# Postmortems"
    rows = [line for line in lines if line.startswith("| [#")]
    assert rows[0].startswith("| [#12](2026/12-x.md) | 2026-11-27 04:00:00 | sev2 | payments |")
    assert rows[0].endswith("| 1m 30s | 5m 00s | 40m 00s | 2h 00m 00s |")
    assert rows[1].startswith("| [#3](2025/3-disk-full.md) |") and "Disk \\| full" in rows[1]
    assert len(rows) == 2
    assert "| - | - |" in index_page([])
