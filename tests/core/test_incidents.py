"""The pure state machine, as tables of named cases."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.core.alertmanager import Alert
from bridge.core.incidents import AlertState, Incident, alert_change, plan_webhook
from bridge.core.policy import Decision

S = 1_000_000_000
T = 1_795_752_400 * S


def alert(fp: str, status: str = "firing", starts: int = T, ends: int | None = None) -> Alert:
    return Alert.model_validate(
        {
            "status": status,
            "labels": {"alertname": "A", "instance": fp},
            "startsAt": "2026-11-27T04:06:40Z",
            "fingerprint": fp,
        }
    ).model_copy(update={"starts_at": starts, "ends_at": ends})


def known(fp: str, status: str = "firing", starts: int = T, ends: int | None = None) -> AlertState:
    return AlertState(fp, status, starts, ends)


@pytest.mark.parametrize(
    ("name", "before", "incoming", "expected"),
    [
        ("first sight, firing", None, alert("a"), "fired"),
        ("first sight, resolved", None, alert("a", "resolved", ends=T + S), "resolved"),
        ("repeat while firing", known("a"), alert("a"), "same"),
        ("resolve", known("a"), alert("a", "resolved", ends=T + S), "resolved"),
        (
            "resolved again",
            known("a", "resolved", ends=T + S),
            alert("a", "resolved", ends=T + S),
            "same",
        ),
        (
            "late firing copy of a resolved occurrence",
            known("a", "resolved", ends=T + S),
            alert("a"),
            "stale",
        ),
        ("older occurrence", known("a", starts=T + 5 * S), alert("a"), "stale"),
        (
            "fires again: new occurrence",
            known("a", "resolved", ends=T + S),
            alert("a", starts=T + 60 * S),
            "fired",
        ),
        ("new occurrence while firing", known("a"), alert("a", starts=T + 60 * S), "update"),
        (
            "missed fire, new occurrence resolved",
            known("a", "resolved", ends=T),
            alert("a", "resolved", T + 9 * S, T + 10 * S),
            "update",
        ),
        (
            "missed resolve, new occurrence resolved",
            known("a"),
            alert("a", "resolved", T + 9 * S, T + 10 * S),
            "resolved",
        ),
    ],
)
def test_classify(name: str, before: AlertState | None, incoming: Alert, expected: str) -> None:
    assert alert_change(before, incoming) == expected, name


DECISION = Decision(key="k", severity="sev2", title="High error rate", fingerprints=("a", "b"))
OPEN = Incident(
    id=7,
    key="k",
    title="High error rate",
    severity="sev2",
    status="triggered",
    started_at=T,
    opened_at=T + S,
)


def plan(
    alerts: list[Alert],
    current: Incident | None = None,
    links: dict[str, AlertState] | None = None,
    now: int = T + 100 * S,
    truncated: int = 0,
    decision: Decision = DECISION,
):  # type: ignore[no-untyped-def]
    links = links or {}
    return plan_webhook(
        decision=decision,
        alerts=alerts,
        truncated=truncated,
        current=current,
        current_links=links,
        known=links,
        now=now,
    )


def kinds(p) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.kind for e in p.events]


MITIGATED = replace(OPEN, status="mitigated", mitigated_at=T + 50 * S)
RESOLVED_LINKS = {"a": known("a", "resolved", ends=T + 40 * S)}


@pytest.mark.parametrize(
    ("name", "kwargs", "status", "created", "events"),
    [
        (
            "first firing alert opens",
            dict(alerts=[alert("a"), alert("b", starts=T - S)]),
            "triggered",
            True,
            ["opened", "alert_fired", "alert_fired"],
        ),
        (
            "only resolved alerts open nothing",
            dict(alerts=[alert("a", "resolved", ends=T)]),
            None,
            False,
            [],
        ),
        (
            "repeat changes nothing",
            dict(alerts=[alert("a")], current=OPEN, links={"a": known("a")}),
            "triggered",
            False,
            [],
        ),
        (
            "one of two resolves",
            dict(
                alerts=[alert("a", "resolved", ends=T + S), alert("b")],
                current=OPEN,
                links={"a": known("a"), "b": known("b")},
            ),
            "triggered",
            False,
            ["alert_resolved"],
        ),
        (
            "last resolves -> mitigated",
            dict(
                alerts=[alert("b", "resolved", ends=T + S)],
                current=OPEN,
                links={"a": known("a", "resolved", ends=T), "b": known("b")},
            ),
            "mitigated",
            False,
            ["alert_resolved", "status_changed"],
        ),
        (
            "fires again within window -> reopened",
            dict(
                alerts=[alert("a", starts=T + 60 * S)],
                current=MITIGATED,
                links=RESOLVED_LINKS,
                now=T + 60 * S,
            ),
            "triggered",
            False,
            ["reopened", "alert_fired"],
        ),
        (
            "fires again after window -> new incident",
            dict(
                alerts=[alert("a", starts=T + 4000 * S)],
                current=MITIGATED,
                links=RESOLVED_LINKS,
                now=T + 4000 * S,
            ),
            "triggered",
            True,
            ["opened", "alert_fired"],
        ),
        (
            "stale firing copy after mitigation changes nothing",
            dict(alerts=[alert("a")], current=MITIGATED, links=RESOLVED_LINKS, now=T + 9000 * S),
            "mitigated",
            False,
            [],
        ),
        (
            "resolved incident: new fire opens a new one",
            dict(
                alerts=[alert("a", starts=T + 60 * S)],
                current=replace(MITIGATED, status="resolved"),
                links=RESOLVED_LINKS,
                now=T + 61 * S,
            ),
            "triggered",
            True,
            ["opened", "alert_fired"],
        ),
        (
            "truncated alerts noted once",
            dict(alerts=[alert("a")], current=OPEN, links={"a": known("a")}, truncated=3),
            "triggered",
            False,
            ["truncated_alerts"],
        ),
        (
            "truncated count unchanged: nothing",
            dict(
                alerts=[alert("a")],
                current=replace(OPEN, truncated_alerts=3),
                links={"a": known("a")},
                truncated=3,
            ),
            "triggered",
            False,
            [],
        ),
        (
            "worse severity on a new fire escalates",
            dict(
                alerts=[alert("b")], current=replace(OPEN, severity="sev3"), links={"a": known("a")}
            ),
            "triggered",
            False,
            ["alert_fired", "severity_changed"],
        ),
    ],
)
def test_plan(
    name: str, kwargs: dict, status: str | None, created: bool, events: list[str]
) -> None:  # type: ignore[type-arg]
    p = plan(**kwargs)
    assert kinds(p) == events, name
    assert (p.incident.status if p.incident else None) == status, name
    assert p.created == created, name


def test_new_incident_starts_at_earliest_firing_alert_and_links_previous() -> None:
    p = plan(
        [alert("a", starts=T + 4000 * S), alert("b", starts=T + 3990 * S)],
        current=MITIGATED,
        links=RESOLVED_LINKS,
        now=T + 4000 * S,
    )
    assert p.incident is not None
    assert p.incident.started_at == T + 3990 * S
    assert p.incident.previous_id == MITIGATED.id
    assert p.events[0].data["previous_incident"] == MITIGATED.id


def test_reopen_clears_mitigated_at_and_mitigation_sets_it() -> None:
    p = plan(
        [alert("a", starts=T + 60 * S)], current=MITIGATED, links=RESOLVED_LINKS, now=T + 60 * S
    )
    assert p.incident is not None and p.incident.mitigated_at is None
    q = plan(
        [alert("a", "resolved", T + 60 * S, T + 70 * S)],
        current=p.incident,
        links={"a": known("a", starts=T + 60 * S)},
        now=T + 71 * S,
    )
    assert q.incident is not None
    assert q.incident.status == "mitigated" and q.incident.mitigated_at == T + 71 * S


def _storm(labels: list[dict[str, str]]) -> list[str]:
    alerts = [
        Alert.model_validate(
            {"status": "firing", "labels": {"alertname": "StormErrors", **extra},
             "startsAt": "2026-11-27T04:06:40Z"}
        )
        for extra in labels
    ]  # fmt: skip
    plan = plan_webhook(
        decision=Decision(key="k", severity="sev2", title="t", fingerprints=()),
        alerts=alerts,
        truncated=0,
        current=None,
        current_links={},
        known={},
        now=T,
        new_id=1,
    )
    return [e.text for e in plan.events if e.kind == "alert_fired"]


def test_storm_lines_name_each_alert_by_the_labels_that_differ() -> None:
    lines = _storm([{"pod": f"api-{i}", "zone": "eu-1"} for i in range(3)])
    assert lines == [f"Alert fired: StormErrors (api-{i})" for i in range(3)]
    lines = _storm([{"pod": "a", "zone": "z1"}, {"pod": "b", "zone": "z2"}])
    assert lines == [
        "Alert fired: StormErrors (pod=a, zone=z1)",
        "Alert fired: StormErrors (pod=b, zone=z2)",
    ]
    assert _storm([{"instance": "web-1"}]) == ["Alert fired: StormErrors (web-1)"]
