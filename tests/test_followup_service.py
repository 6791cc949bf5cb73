"""The follow-up phase through the running app on an injected clock: opened when the alerts
resolve (the default checklist, the findings), items added, checked off and waived through the
API, the validation at the end of the stabilization window, and the incident resolved when the
checklist is done."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge import promql
from bridge.core.checks import CheckResult, Sample
from bridge.core.followup import Check, FollowUpPolicy
from bridge.delivery.worker import OutboxWorker
from bridge.metrics import Metrics
from bridge.runtime import rules_runtime
from bridge.service import AppState
from bridge.service.scheduler import ReminderScheduler, advance_followups
from bridge.store.followup import has_work, next_validation_at
from bridge.targets.base import TargetDeps
from tests.conftest import BOTH_BACKENDS, WRITE, Clock, MakeClient, fixture_body
from tests.fakes.github import REPO as GITHUB_REPO
from tests.fakes.github import TOKEN as GITHUB_TOKEN
from tests.fakes.github import GitHubFake

# Each test's service runs on SQLite and on PostgreSQL (tests/conftest.py: service_db).
pytestmark = BOTH_BACKENDS

HOOK = "/api/v1/alerts"


async def post(client: Any, path: str, body: Any = None) -> tuple[int, Any]:
    resp = await client.post(path, json=body, headers=WRITE)
    return resp.status, await resp.json()


async def get(client: Any, path: str) -> tuple[int, Any]:
    resp = await client.get(path, headers=WRITE)
    return resp.status, await resp.json()


async def mitigated(client: Any) -> int:
    """An incident opened by the fixtures, acknowledged, then mitigated by its alerts."""
    resp = await client.post(HOOK, json=fixture_body("firing-group-bearer.json"))
    incident = int((await resp.json())["incidents"][0]["id"])
    assert (await post(client, f"/api/v1/incidents/{incident}/acknowledge"))[0] == 200
    for name in ("partially-resolved.json", "resolved-last.json"):
        assert (await client.post(HOOK, json=fixture_body(name))).status == 200
    return incident


def state_of(client: Any) -> AppState:
    state: AppState = client.server.app[AppState.KEY]
    return state


async def test_the_follow_up_opens_validates_and_resolves(
    make_client: MakeClient, clock: Clock
) -> None:
    client: Any = await make_client()
    state = state_of(client)
    i = await mitigated(client)
    base = f"/api/v1/incidents/{i}"
    status, body = await get(client, f"{base}/followup")
    assert status == 404 and "opens when the incident is mitigated" in body["error"]
    assert await advance_followups(state) == 1
    assert await advance_followups(state) == 0  # opened once
    status, view = await get(client, f"{base}/followup")
    assert status == 200, view
    assert [(x["kind"], x["state"]) for x in view["items"]] == [
        ("check", "open"),
        ("validate", "open"),
        ("review", "open"),
    ]
    assert view["items"][1]["detail"]["stabilization_s"] == 1800
    findings = {f["kind"]: f for f in view["items"][2]["detail"]["findings"]}
    # web-2 of the fixture has no runbook_url
    assert findings["no_runbook"]["evidence"] == {"alertnames": ["HighErrorRate"]}
    assert view["open_items"] == 3

    # People work the checklist through the API.
    status, body = await post(
        client, f"{base}/followup/items", {"text": "Add a canary", "kind": "action", "owner": "bob"}
    )
    assert status == 200 and body["changed"], body
    added = body["followup"]["items"][-1]
    assert (added["kind"], added["owner"], added["ticket"]) == ("action", "bob", None)
    status, body = await post(client, f"{base}/followup/waive", {"item": added["id"]})
    assert status == 400 and body["field"] == "reason"
    status, body = await post(
        client, f"{base}/followup/waive", {"item": added["id"], "reason": "done in OPS-7 already"}
    )
    assert status == 200 and body["followup"]["items"][-1]["state"] == "waived"
    first = view["items"][0]["id"]
    assert (await post(client, f"{base}/followup/check", {"item": first}))[0] == 200
    status, body = await post(client, f"{base}/followup/check", {"item": first})
    assert status == 200 and not body["changed"]  # a retried check-off writes nothing
    review = view["items"][2]["id"]
    assert (await post(client, f"{base}/followup/check", {"item": review, "note": "ok"}))[0] == 200
    status, body = await post(client, f"{base}/followup/check", {"item": 10_000})
    assert status == 404 and body["field"] == "item"

    # Resolving by hand with the validation open needs a reason.
    status, body = await post(client, f"{base}/resolve")
    assert status == 409 and "1 follow-up item is still open" in body["error"]

    # Before the window ends nothing is validated; after it, the incident stayed quiet.
    clock.advance(29 * 60)
    assert await advance_followups(state) == 0
    clock.advance(2 * 60)
    assert await advance_followups(state) == 1
    status, view = await get(client, f"{base}/followup")
    assert view["validation"]["passed"] is True and view["validation"]["quiet"] is True
    assert view["items"][1]["state"] == "done" and view["open_items"] == 0
    status, detail = await get(client, base)
    assert detail["status"] == "resolved"
    kinds = [e["kind"] for e in detail["timeline"]]
    assert kinds[-2:] == ["followup_item", "status_changed"] and "validated" in kinds
    assert detail["timeline"][-1]["text"] == "Resolved: the follow-up checklist is done"


async def test_an_alert_firing_again_in_the_window_restarts_it(
    make_client: MakeClient, clock: Clock
) -> None:
    client: Any = await make_client()
    state = state_of(client)
    i = await mitigated(client)
    await advance_followups(state)
    clock.advance(10 * 60)
    again = fixture_body("firing-group-bearer.json")
    for alert in again["alerts"]:
        alert["startsAt"] = "2026-11-27T04:20:00Z"
    assert (await client.post(HOOK, json=again)).status == 200
    _, detail = await get(client, f"/api/v1/incidents/{i}")
    assert detail["status"] == "triggered"
    clock.advance(40 * 60)
    assert await advance_followups(state) == 0  # no validation while it burns again
    resolved = fixture_body("resolved-last.json")
    resolved["alerts"] = [
        dict(a, status="resolved", endsAt="2026-11-27T04:50:00Z") for a in again["alerts"]
    ]
    assert (await client.post(HOOK, json=resolved)).status == 200
    assert await advance_followups(state) == 1  # the window starts over
    _, view = await get(client, f"/api/v1/incidents/{i}/followup")
    assert view["validated_at"] is None
    findings = [f["kind"] for f in view["items"][2]["detail"]["findings"]]
    assert "no_runbook" in findings
    clock.advance(31 * 60)
    assert await advance_followups(state) == 1
    _, view = await get(client, f"/api/v1/incidents/{i}/followup")
    assert view["validation"]["passed"] is True
    assert view["items"][1]["state"] == "done"
    _, detail = await get(client, f"/api/v1/incidents/{i}")
    assert detail["status"] == "mitigated"  # the plain item and the review are still open


async def test_the_scheduler_wakes_when_a_window_ends(
    make_client: MakeClient, clock: Clock
) -> None:
    client: Any = await make_client()
    state = state_of(client)
    scheduler = ReminderScheduler(state, every_s=3600)
    assert await scheduler._pause() == 3600  # nothing pending: the tick
    await mitigated(client)
    assert state.scheduler_due.is_set()  # the mitigation woke it
    await advance_followups(state)
    assert await scheduler._pause() == 1800  # the window ends in 30 minutes
    clock.advance(1799.5)
    assert await scheduler._pause() == 0.5
    clock.advance(1)
    assert await scheduler._pause() == 3600  # ended: the tick now runs its validation


async def test_a_failed_validation_looks_again_and_checks_itself_off_when_healthy(
    make_client: MakeClient, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    client: Any = await make_client()
    state = state_of(client)
    check = Check("errors", "error_ratio", "< 0.01")
    state.runtime = dataclasses.replace(
        state.runtime, followups={"default": FollowUpPolicy(stabilization_s=600, checks=(check,))}
    )
    ratio = [0.2]
    looks: list[int] = []

    async def checks(*args: Any, **kwargs: Any) -> list[CheckResult]:
        looks.append(args[4])
        ok = ratio[0] < 0.01
        why = f"{ratio[0]} {'<' if ok else 'is not <'} 0.01"
        return [CheckResult("errors", check.expr, check.expect, ok, (Sample({}, ratio[0]),), why)]

    monkeypatch.setattr(promql, "run_checks", checks)
    i = await mitigated(client)
    await advance_followups(state)
    base = f"/api/v1/incidents/{i}"
    _, view = await get(client, f"{base}/followup")
    for item in view["items"]:
        if item["kind"] in ("check", "review"):
            assert (await post(client, f"{base}/followup/check", {"item": item["id"]}))[0] == 200
    # An action item (a permanent fix, tracked in its ticket) does not hold the incident.
    await post(client, f"{base}/followup/items", {"text": "Shard the queue", "kind": "action"})

    clock.advance(601)
    assert await advance_followups(state) == 1
    _, view = await get(client, f"{base}/followup")
    assert view["validated_at"] is None and view["validation"]["passed"] is False
    assert view["validation"]["reasons"] == ["check errors: 0.2 is not < 0.01"]
    assert view["items"][1]["state"] == "open" and view["open_items"] == 1
    clock.advance(601)
    assert await advance_followups(state) == 0  # the same failure again: not told twice
    ratio[0] = 0.001
    clock.advance(601)
    assert await advance_followups(state) == 1
    assert len(looks) == 3
    _, view = await get(client, f"{base}/followup")
    assert view["validation"]["passed"] is True and view["items"][1]["state"] == "done"
    _, detail = await get(client, base)
    assert detail["status"] == "resolved"
    failures = [e for e in detail["timeline"] if e["kind"] == "validated"]
    assert [e["data"]["passed"] for e in failures] == [False, True]


async def test_action_items_become_github_issues_shown_on_the_items(
    make_client: MakeClient, clock: Clock, tmp_path: Path
) -> None:
    github = GitHubFake()
    await github.start()
    rules = tmp_path / "rules.yaml"
    (tmp_path / "github-token").write_text(GITHUB_TOKEN + "\n")
    rules.write_text(
        "targets:\n"
        f"  issues: {{type: github, api_url: '{github.url}', token_file: github-token,"
        f" repo: {GITHUB_REPO}}}\n"
        "route:\n  follow_up: {ticket_target: issues}\n"
    )
    client: Any = await make_client()
    state = state_of(client)
    async with aiohttp.ClientSession() as session:
        state.runtime = rules_runtime([rules], TargetDeps(session=session))
        worker = OutboxWorker(state.store, state.runtime.targets, Metrics.create(), clock=clock)
        state.worker = worker
        try:
            i = await mitigated(client)
            base = f"/api/v1/incidents/{i}"
            await post(client, f"{base}/actions", {"text": "Shard the queue", "owner": "bob"})
            await advance_followups(state)
            await post(client, f"{base}/followup/items", {"text": "Add a canary", "kind": "action"})
            await worker.run_once()
            await worker.drain()
            _, view = await get(client, f"{base}/followup")
        finally:
            await github.close()
    actions = [x for x in view["items"] if x["kind"] == "action"]
    assert [(x["text"], x["ticket"]["key"]) for x in actions] == [
        ("Shard the queue", "#1"),
        ("Add a canary", "#2"),
    ]
    assert [issue["title"] for issue in github.issues.values()] == [
        f"Shard the queue (incident {i})",
        f"Add a canary (incident {i})",
    ]
    assert actions[0]["ticket"]["url"] == github.issues[1]["html_url"]


async def test_stopping_while_the_scheduler_reads_its_pause_leaves_nothing_unawaited(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc
    import warnings

    client: Any = await make_client()
    state = state_of(client)
    reading = asyncio.Event()
    read = state.store.read

    async def slow_read(fn: Any) -> Any:
        if getattr(fn, "func", None) is next_validation_at:
            reading.set()
            await asyncio.Event().wait()  # the stop comes while this read is in flight
        return await read(fn)

    monkeypatch.setattr(state.store, "read", slow_read)
    scheduler = ReminderScheduler(state, every_s=3600)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scheduler.start()
        await asyncio.wait_for(reading.wait(), 5)
        await scheduler.stop()
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


async def test_resolved_by_hand_in_the_window_the_validation_is_settled_not_run(
    make_client: MakeClient, clock: Clock
) -> None:
    client: Any = await make_client()
    state = state_of(client)
    i = await mitigated(client)
    await advance_followups(state)
    base = f"/api/v1/incidents/{i}"
    assert (await post(client, f"{base}/resolve", {"reason": "known fix shipped"}))[0] == 200
    store = state.store
    assert not await store.read(lambda c: has_work(c, clock()))  # an idle tick writes nothing
    clock.advance(31 * 60)
    assert await store.read(lambda c: has_work(c, clock()))
    assert await advance_followups(state) == 0
    _, view = await get(client, f"{base}/followup")
    assert view["validation"] == {"skipped": "resolved before the stabilization window ended"}
    assert view["validated_at"] is not None
    assert not await store.read(lambda c: has_work(c, clock()))
