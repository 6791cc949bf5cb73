"""Incidents people start, in the store (both backends): a declaration is one transaction with
its entries, outbox rows and source; a linked group's webhooks update the declared incident; a
merge closes the duplicate, references its entries and sends its group's webhooks on."""

from __future__ import annotations

import copy
import json
from typing import Any

from bridge.core.declare import Declaration, builtin_decision
from bridge.store.interface import DeclareRequest, Idempotency, LinkRequest, MergeRequest
from tests.conftest import SECOND, T0, execute, fixture_body, rows
from tests.store.conftest import opened
from tests.store.test_store import ingest


def _decision(key: str = "declared:abc", severity: Any = "sev2") -> Any:
    return builtin_decision(
        key=key,
        title="Checkout is slow",
        severity=severity,
        labels={"service": "checkout"},
        route=None,
        team="payments",
        general=("console",),
        reopen_window_s=3600.0,
    )


async def _declare(store: Any, key: str = "declared:abc", **kw: Any) -> Any:
    declaration = Declaration(
        actor=kw.pop("actor", "alice"),
        title="Checkout is slow",
        severity="sev2",
        description=kw.pop("description", "p99 at 4 s since the deploy"),
        commander=kw.pop("commander", None),
        labels={"service": "checkout"},
    )
    request = DeclareRequest(
        decision=_decision(key), declaration=declaration, now=kw.pop("now", T0), **kw
    )
    return await store.declared.declare(request)


async def test_a_declaration_writes_the_incident_its_entries_outbox_and_source(store: Any) -> None:
    answer = await _declare(store, commander="bob")
    assert answer.status == 201 and answer.changed
    incident = answer.body["incident"]
    assert (incident["title"], incident["severity"], incident["status"]) == (
        "Checkout is slow",
        "sev2",
        "triggered",
    )
    assert incident["team"] == "payments" and incident["service"] == "checkout"
    assert incident["key"] == "declared:abc"
    assert incident["source"] == {
        "source": "declared",
        "declared_by": "alice",
        "description": "p99 at 4 s since the deploy",
        "labels": {"service": "checkout"},
        "merged_into": None,
    }
    kinds = [e["kind"] for e in incident["timeline"]]
    assert kinds == ["opened", "role_changed"]
    assert incident["timeline"][0]["data"]["source"] == "declared"
    assert incident["timeline"][0]["actor"] == "alice"
    assert json.loads(rows(store, "SELECT roles FROM incidents")[0][0]) == {"commander": ["bob"]}
    # announced in the tiers as a webhook's incident is: the opened message
    outbox = rows(store, "SELECT target, event FROM outbox WHERE incident_id = ?", incident["id"])
    assert ("console", "opened") in outbox
    # a webhook's incident says where it came from too
    other = await opened(store)
    shown = await store.queries.get_incident(other)
    assert shown["source"] == {"source": "alertmanager", "merged_into": None}


async def test_a_declaration_is_answered_once_for_its_idempotency_key(store: Any) -> None:
    key = Idempotency("alice", "d-1", "digest-1")
    first = await _declare(store, idempotency=key)
    again = await _declare(store, key="declared:other", idempotency=key)
    assert again.replayed and again.body == first.body
    assert rows(store, "SELECT count(*) FROM incidents")[0][0] == 1
    refused = await _declare(store, idempotency=Idempotency("alice", "d-1", "digest-2"))
    assert refused.status == 422 and refused.body["field"] == "Idempotency-Key"


def _resolved(body: dict[str, Any]) -> dict[str, Any]:
    done = copy.deepcopy(body)
    done["status"] = "resolved"
    for a in done["alerts"]:
        a["status"] = "resolved"
        a["endsAt"] = "2026-11-27T04:00:00Z"
    return done


async def test_a_linked_group_updates_the_declared_incident(store: Any) -> None:
    declared = (await _declare(store)).body["incident"]["id"]
    body = fixture_body("firing-group-bearer.json")
    linked = await store.declared.link(
        LinkRequest(declared, body["groupKey"], "alice", T0 + SECOND)
    )
    assert linked.status == 200 and linked.changed
    assert linked.body["events"][0]["kind"] == "linked"
    again = await store.declared.link(LinkRequest(declared, body["groupKey"], "alice", T0))
    assert again.status == 200 and not again.changed  # linked already

    result = await ingest(store, body, now=T0 + 2 * SECOND)
    assert [t.id for t in result.incidents] == [declared]  # no incident of its own
    assert rows(store, "SELECT count(*) FROM incidents")[0][0] == 1
    shown = await store.queries.get_incident(declared)
    assert shown["alerts"] and {a["status"] for a in shown["alerts"]} == {"firing"}
    assert "alert_fired" in [e["kind"] for e in shown["timeline"]]
    # its resolve mitigates the declared incident, as its own incident would have been
    await ingest(store, _resolved(body), now=T0 + 3 * SECOND)
    assert (await store.queries.incident_summary(declared))["status"] == "mitigated"


async def test_link_refusals(store: Any) -> None:
    assert (await store.declared.link(LinkRequest(99, "g", "alice", T0))).status == 404
    declared = (await _declare(store)).body["incident"]["id"]
    other = (await _declare(store, key="declared:two")).body["incident"]["id"]
    await store.declared.merge(MergeRequest(other, declared, "alice", T0))
    closed = await store.declared.link(LinkRequest(other, "g", "alice", T0))
    assert closed.status == 409


async def test_a_merge_closes_the_duplicate_references_its_entries_and_moves_its_group(
    store: Any,
) -> None:
    body = fixture_body("firing-group-bearer.json")
    duplicate = (await ingest(store, body)).incidents[0].id
    survivor = (await _declare(store, now=T0 + SECOND)).body["incident"]["id"]
    entries = [
        r[0] for r in rows(store, "SELECT id FROM timeline WHERE incident_id = ?", duplicate)
    ]
    timeline_rows = rows(store, "SELECT count(*) FROM timeline")[0][0]

    answer = await store.declared.merge(
        MergeRequest(duplicate, survivor, "alice", T0 + 2 * SECOND, reason="same outage")
    )
    assert answer.status == 200 and answer.changed
    assert answer.body["incident"]["status"] == "closed"
    assert answer.body["into"]["id"] == survivor
    # two entries written, none copied
    assert rows(store, "SELECT count(*) FROM timeline")[0][0] == timeline_rows + 2
    shown = await store.queries.get_incident(survivor)
    merged_in = [e for e in shown["timeline"] if e["kind"] == "merged_in"]
    assert merged_in[0]["data"]["duplicate"] == duplicate
    assert merged_in[0]["data"]["entries"] == entries
    gone = await store.queries.get_incident(duplicate)
    assert gone["source"]["merged_into"] == survivor
    assert gone["timeline"][-1]["kind"] == "merged"
    assert ("console", "closed") in rows(
        store, "SELECT target, event FROM outbox WHERE incident_id = ?", duplicate
    )
    # a retry changes nothing; a merge elsewhere or into itself is refused
    again = await store.declared.merge(MergeRequest(duplicate, survivor, "alice", T0))
    assert again.status == 200 and not again.changed
    third = (await _declare(store, key="declared:three")).body["incident"]["id"]
    assert (await store.declared.merge(MergeRequest(duplicate, third, "a", T0))).status == 409
    itself = await store.declared.merge(MergeRequest(third, third, "a", T0))
    assert (itself.status, itself.body["field"]) == (400, "into")
    missing = await store.declared.merge(MergeRequest(third, 999, "a", T0))
    assert (missing.status, missing.body["field"]) == (400, "into")

    # the duplicate's group goes to the survivor from now on
    later = copy.deepcopy(body)
    later["alerts"][0]["startsAt"] = "2026-11-27T04:05:00Z"
    result = await ingest(store, later, now=T0 + 5 * SECOND)
    assert [t.id for t in result.incidents] == [survivor]
    assert rows(store, "SELECT count(*) FROM incidents")[0][0] == 3


async def test_a_merged_duplicate_is_no_pending_postmortem(store: Any) -> None:
    def pending() -> int:
        return int(rows(store, "SELECT coalesce(sum(n), 0) FROM metric_postmortems")[0][0])

    survivor = (await _declare(store)).body["incident"]["id"]
    duplicate = (await _declare(store, key="declared:two")).body["incident"]["id"]
    resolved = (await _declare(store, key="declared:three")).body["incident"]["id"]
    await store.declared.merge(MergeRequest(duplicate, survivor, "alice", T0 + SECOND))
    assert pending() == 0  # closed by the merge, yet nothing to write up of its own
    # one resolved before its merge was pending; merged, it is not any more
    execute(store, "UPDATE incidents SET status = 'resolved' WHERE id = ?", (resolved,))
    assert pending() == 1
    await store.declared.merge(MergeRequest(resolved, survivor, "alice", T0 + 2 * SECOND))
    assert pending() == 0
    # the survivor still counts as any incident does
    execute(store, "UPDATE incidents SET status = 'resolved' WHERE id = ?", (survivor,))
    assert pending() == 1
