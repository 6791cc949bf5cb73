"""The reconciler through the running app on an injected clock, with a scripted Alertmanager
answer (the client itself is tested against the real Alertmanager in test_alertmanager_api.py
and tests/integration/test_reconcile.py): no decision without a trusted answer, back-off while
there is none, the readiness line, missed resolves, and a truncated group's other alerts
replayed through the webhook's own path."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bridge.alertmanager_api import AmError, Fetched
from bridge.core.reconcile import AmAlert, AmSilence, AmView
from bridge.core.timeutil import parse_rfc3339
from bridge.reconciler import Reconciler
from bridge.service import AppState
from bridge.store.reconcile import Applied
from tests.conftest import BOTH_BACKENDS, SECOND, Clock, MakeClient, fixture_body

# Each test's service runs on SQLite and on PostgreSQL (tests/conftest.py: service_db).
pytestmark = BOTH_BACKENDS

HOOK = "/api/v1/alerts"


class Scripted:
    """An AlertmanagerClient that answers what the test says."""

    peers = ("http://am-0:9093",)

    def __init__(self) -> None:
        self.next: Fetched = Fetched(None, (), ())
        self.asked = 0

    async def fetch(self, grace_s: float) -> Fetched:
        self.asked += 1
        return self.next


def view(
    clock: Clock,
    *alerts: AmAlert,
    silences: tuple[AmSilence, ...] = (),
    receiver: str = "bridge",
) -> AmView:
    return AmView(
        peer="http://am-0:9093",
        fetched_at=clock.now,
        up_since=clock.now - 3600 * SECOND,
        alerts={a.fingerprint: a for a in alerts},
        silences={s.id: s for s in silences},
        receivers=frozenset({receiver}),
    )


def reconciler(
    client: Any, scripted: Scripted, min_age_s: float = 0.0
) -> tuple[Reconciler, AppState]:
    state: AppState = client.server.app[AppState.KEY]
    r = Reconciler(
        state,
        scripted,  # type: ignore[arg-type]
        interval_s=60,
        grace_s=300,
        min_age_s=min_age_s,
        jitter=lambda: 0.5,
    )
    state.reconcile_detail = r.health.detail
    return r, state


async def started(
    make_client: MakeClient, min_age_s: float = 0.0
) -> tuple[Any, Scripted, Reconciler, AppState]:
    """The app, a scripted Alertmanager, and the reconciler over both (not running: the test
    ticks it)."""
    client = await make_client()
    scripted = Scripted()
    r, state = reconciler(client, scripted, min_age_s)
    return client, scripted, r, state


async def incident_now(client: Any, incident_id: int) -> dict[str, Any]:
    found: dict[str, Any] = await (await client.get(f"/api/v1/incidents/{incident_id}")).json()
    return found


async def incident_of(client: Any, body: Any) -> dict[str, Any]:
    resp = await client.post(HOOK, json=body)
    assert resp.status == 200
    return await incident_now(client, (await resp.json())["incidents"][0]["id"])


async def test_no_trusted_answer_decides_nothing_backs_off_and_says_why(
    make_client: MakeClient, clock: Clock
) -> None:
    client, scripted, r, _ = await started(make_client)
    incident = await incident_of(client, fixture_body("firing-group-bearer.json"))
    clock.advance(5)
    assert r.pause_s() == 60.0
    scripted.next = Fetched(
        None,
        (AmError("unreachable", "http://am-0:9093", "/api/v2/status", "connection refused"),),
        (),
    )
    assert await r.tick() is None
    assert await r.tick() is None
    assert r.pause_s() == 240.0, "doubled per failed tick"
    for _ in range(6):
        await r.tick()
    assert r.pause_s() == 600.0, "at most ten intervals"
    ready = await (await client.get("/-/ready")).text()
    assert ready.startswith("OK\n") and "alertmanager: no trusted answer since" in ready
    assert "connection refused" in ready
    metrics = await (await client.get("/metrics")).text()
    assert 'incident_bridge_alertmanager_api_errors_total{reason="unreachable"} 8.0' in metrics
    assert "incident_bridge_alertmanager_up 0.0" in metrics
    # A young peer's empty answer is no answer either: the client reports it as young.
    scripted.next = Fetched(None, (), ("http://am-0:9093",))
    assert await r.tick() is None
    assert "up for less than 300s" in r.health.detail()
    after = await incident_now(client, incident["id"])
    assert after["status"] == "triggered"
    assert {a["status"] for a in after["alerts"]} == {"firing"}


async def test_a_trusted_answer_resolves_what_it_no_longer_lists(
    make_client: MakeClient, clock: Clock
) -> None:
    client, scripted, r, state = await started(make_client)
    incident = await incident_of(client, fixture_body("firing-group-bearer.json"))
    clock.advance(5)
    scripted.next = Fetched(view(clock), (), ())
    first = await r.tick()
    assert first is not None and not first.changed, "one answer alone resolves nothing"
    assert len(first.gone) == 2
    clock.advance(60)
    scripted.next = Fetched(view(clock), (), ())
    done = await r.tick()
    assert done is not None and done.mitigated == (incident["id"],)
    assert r.pause_s() == 60.0
    assert state.scheduler_due.is_set(), "the follow-up opens now"
    after = await incident_now(client, incident["id"])
    assert after["status"] == "mitigated"
    assert {a["resolved_via"] for a in after["alerts"]} == {"api"}
    assert "alertmanager: reconciled at" in await (await client.get("/-/ready")).text()
    metrics = await (await client.get("/metrics")).text()
    assert 'incident_bridge_reconcile_changes_total{kind="alert_resolved"} 2.0' in metrics
    assert "incident_bridge_alertmanager_up 1.0" in metrics


async def test_a_truncated_groups_other_alerts_are_fetched_and_attached(
    make_client: MakeClient, clock: Clock
) -> None:
    client, scripted, r, _ = await started(make_client)
    body = fixture_body("firing-truncated-basic-auth.json")
    incident = await incident_of(client, body)
    assert incident["truncated_alerts"] > 0
    held = {a["fingerprint"] for a in incident["alerts"]}
    group = body["groupLabels"]
    listed = [
        AmAlert(
            fingerprint=a["fingerprint"],
            labels=a["labels"],
            starts_at=clock.now - 60 * SECOND,
            receivers=(body["receiver"],),
        )
        for a in incident["alerts"]
    ]
    extra = [
        AmAlert(
            fingerprint=f"{n:016x}",
            labels={**group, "instance": f"extra-{n}"},
            starts_at=clock.now - 30 * SECOND,
            receivers=(body["receiver"],),
        )
        for n in range(incident["truncated_alerts"])
    ]
    clock.advance(5)
    scripted.next = Fetched(view(clock, *listed, *extra, receiver=body["receiver"]), (), ())
    await r.tick()
    after = await incident_now(client, incident["id"])
    got = {a["fingerprint"] for a in after["alerts"]}
    assert got == held | {a.fingerprint for a in extra}
    fetched = [
        e for e in after["timeline"] if e["kind"] == "alert_fired" and e["data"].get("via") == "api"
    ]
    assert len(fetched) == len(extra)
    assert "webhook left it out" in fetched[0]["text"]
    assert {e["actor"] for e in fetched} == {"alertmanager-api"}, "learned from the API"
    await r.tick()  # the same answer again: nothing more
    again = await incident_now(client, incident["id"])
    assert len(again["timeline"]) == len(after["timeline"])


async def test_a_silenced_alert_is_marked_on_the_incident_page(
    make_client: MakeClient, clock: Clock
) -> None:
    client, scripted, r, _ = await started(make_client)
    incident = await incident_of(client, fixture_body("firing-group-bearer.json"))
    first, second = incident["alerts"]
    clock.advance(5)
    silence = AmSilence("5ee-1", "active", "alice", "<b>deploy</b>", clock.now, clock.now + SECOND)
    listed = [
        AmAlert(
            fingerprint=a["fingerprint"],
            labels=a["labels"],
            starts_at=parse_rfc3339(a["starts_at"]) or 0,
            state="suppressed" if a is first else "active",
            silenced_by=("5ee-1",) if a is first else (),
        )
        for a in (first, second)
    ]
    scripted.next = Fetched(view(clock, *listed, silences=(silence,)), (), ())
    await r.tick()
    page = await (await client.get(f"/incidents/{incident['id']}")).text()
    assert page.count('<span class="badge muted">silenced</span>') == 1
    assert "&lt;b&gt;deploy&lt;/b&gt;" in page and "<b>deploy</b>" not in page


async def test_a_lying_or_wrong_peer_cannot_resolve_a_fresh_alert(
    make_client: MakeClient, clock: Clock
) -> None:
    """A peer that reports a long uptime and lists nothing (or one Prometheus does not send
    to): nothing is resolved until the alert's last webhook is older than the minimum age and
    two answers in a row agree; a failed poll in between breaks the row."""
    client, scripted, r, _ = await started(make_client, min_age_s=300)
    incident = await incident_of(client, fixture_body("firing-group-bearer.json"))
    url = f"/api/v1/incidents/{incident['id']}"
    for _ in range(3):
        clock.advance(2)
        scripted.next = Fetched(view(clock), (), ())
        done = await r.tick()
        assert done is not None and not done.changed and not done.gone
    assert (await (await client.get(url)).json())["status"] == "triggered"
    clock.advance(300)
    scripted.next = Fetched(view(clock), (), ())
    assert not (await r.tick() or Applied()).changed, "the first old-enough answer only notes"
    scripted.next = Fetched(None, (AmError("timeout", "http://am-0:9093", "/", "slow"),), ())
    assert await r.tick() is None
    clock.advance(60)
    scripted.next = Fetched(view(clock), (), ())
    assert not (await r.tick() or Applied()).changed, "the failed poll broke the row"
    clock.advance(60)
    scripted.next = Fetched(view(clock), (), ())
    done = await r.tick()
    assert done is not None and done.mitigated == (incident["id"],)


async def test_no_trusted_answer_is_warned_once_per_kind_of_trouble(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    _client, scripted, r, _ = await started(make_client)
    caplog.set_level(logging.DEBUG, logger="bridge.reconcile")
    scripted.next = Fetched(None, (), ("http://am-0:9093",))
    for _ in range(5):  # a young peer's first minutes
        assert await r.tick() is None
    refused = AmError("unreachable", "http://am-0:9093", "/", "cannot connect: refused")
    scripted.next = Fetched(None, (refused,), ())
    for _ in range(3):
        assert await r.tick() is None
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "up for less than" in warnings[0] and "cannot connect" in warnings[1]
