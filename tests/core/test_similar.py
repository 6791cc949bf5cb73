"""Seen this before, pure: the words compared, the order of the candidates, and the entry that
names them (a timeline event only the dedicated channel hears of)."""

from __future__ import annotations

from bridge.core.events import TIMELINE_KINDS, event_kind
from bridge.core.incidents import Incident
from bridge.core.notify import plan_notifications
from bridge.core.policy import Tiers
from bridge.core.similar import (
    KIND,
    Candidate,
    choose,
    compared_values,
    query_terms,
    similar_event,
)
from tests.conftest import T0


def c(
    i: int,
    status: str = "resolved",
    reason: str = "same_alert_and_service",
    score: float | None = None,
) -> Candidate:
    return Candidate(i, f"incident {i}", status, T0 + i, reason, score)  # type: ignore[arg-type]


def test_the_words_compared() -> None:
    values = compared_values(
        [
            ("alertname", "DiskFull"),
            ("severity", "critical"),
            ("env", "prod"),
            ("instance", "db-3:9100"),
        ]
    )
    assert values == ["DiskFull", "db-3:9100"]
    assert query_terms("Disk full on db-3 (10.0.0.7)", values) == [
        "disk",
        "full",
        "on",
        "db",
        "diskfull",
    ]
    assert len(query_terms(" ".join(f"w{n}" for n in range(40)), [])) == 16


def test_the_same_alert_first_ended_first_then_text_by_relevance() -> None:
    keyed = [c(3, "triggered"), c(5, "acknowledged"), c(2, "closed"), c(4, "mitigated")]
    texts = [c(1, reason="similar_text", score=2.0), c(6, reason="similar_text", score=9.0)]
    assert [x.id for x in choose(10, keyed, texts)] == [4, 2, 5, 3, 6]
    assert [x.id for x in choose(10, keyed, texts, limit=7)] == [4, 2, 5, 3, 6, 1]
    # Never itself, nothing newer, nothing twice.
    assert [x.id for x in choose(4, keyed, [c(2, reason="similar_text", score=1.0)])] == [2, 3]
    assert choose(1, keyed, texts) == []


def test_the_entry_names_them_with_their_links() -> None:
    event = similar_event(
        [c(12), c(9, "triggered", "similar_text", 3.5)],
        url=lambda i: f"https://b.example/incidents/{i}",
        postmortems={12: "https://kb.example/pm/12"},
    )
    assert event.kind == KIND and event.actor == "incident-bridge"
    assert event.text == (
        "Seen before: #12 incident 12 (resolved, opened 2026-11-27) https://b.example/incidents/12, "
        "postmortem https://kb.example/pm/12; #9 incident 9 (triggered, opened 2026-11-27) "
        "https://b.example/incidents/9"
    )
    first, second = event.data["similar"]
    assert first["postmortem_url"] == "https://kb.example/pm/12" and first["score"] is None
    assert second["reason"] == "similar_text" and second["url"].endswith("/9")
    assert second["opened_at"] == "2026-11-27T04:06:40.000000009Z"
    # Without an external URL, no links; a long title is cut.
    bare = similar_event([Candidate(1, "x" * 200, "closed", T0, "similar_text", 1.0)])
    assert "https" not in bare.text and "x" * 79 + "…" in bare.text


def test_it_is_a_timeline_event_for_the_dedicated_channel_only() -> None:
    assert KIND in TIMELINE_KINDS and event_kind(KIND) == "timeline"
    incident = Incident(7, "k", "t", "sev1", "triggered", 0, 0)
    tiers = Tiers(general=("chat",), incident="room", stakeholders=("pager",))
    entries = plan_notifications(
        before=incident, after=incident, events=[(40, similar_event([c(3)]))], tiers=tiers
    )
    assert [(e.tier, e.target, e.event) for e in entries] == [("incident", "room", "timeline")]
