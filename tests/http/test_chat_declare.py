"""``/incident declare sev2 Checkout is slow`` in Slack and Mattermost: a new incident routed by
the rules, declared by the person behind the chat user, answered to the channel with its id (and
link); a retry declares nothing twice; bad lines and read-only people change nothing."""

from __future__ import annotations

from typing import Any

from bridge.core import chat as chat_grammar
from tests.conftest import BOTH_BACKENDS, WRITE, Clock, MakeClient, rows
from tests.fakes.slack_app import mattermost_body
from tests.http.test_chat import FORM, Chat, start_chat

pytestmark = BOTH_BACKENDS


async def _incidents(chat: Chat) -> list[dict[str, Any]]:
    resp = await chat.client.get("/api/v1/incidents", headers=WRITE)
    return list((await resp.json())["incidents"])


async def test_declare_in_slack(make_client: MakeClient, clock: Clock) -> None:
    chat = await start_chat(make_client, clock)
    body = await chat.command("declare sev2 Checkout is slow", trigger_id="t-declare")
    newest = (await _incidents(chat))[0]
    assert newest["id"] != chat.incident  # a new one, even typed in a dedicated channel
    assert body["response_type"] == "in_channel", body
    base = chat.state.settings.base_url
    assert body["text"] == (
        f"#{newest['id']} declared by alice (sev2, route root): Checkout is slow "
        f"{base}/incidents/{newest['id']}"
    )
    shown = await (await chat.client.get(f"/api/v1/incidents/{newest['id']}", headers=WRITE)).json()
    assert shown["source"]["declared_by"] == "alice"
    assert shown["severity"] == "sev2" and shown["title"] == "Checkout is slow"
    # announced in the rules' tiers as any new incident
    assert ("general", "opened") in rows(
        chat.state.store, "SELECT target, event FROM outbox WHERE incident_id = ?", newest["id"]
    )
    # Slack's retry of the same command (its trigger) declares nothing twice
    again = await chat.command("declare sev2 Checkout is slow", trigger_id="t-declare")
    assert again["text"] == body["text"]
    assert len(await _incidents(chat)) == 2

    for line, says in (
        ("declare sev9 x", "Which severity?"),
        ("declare sev2", "needs a title"),
        (f"{chat.incident} declare sev2 x", "give no id"),
    ):
        refused = await chat.command(line)
        assert refused["response_type"] == "ephemeral" and says in refused["text"], refused
    looker = await chat.command("declare sev2 x", user_id="U0LOOK")
    assert looker["response_type"] == "ephemeral"
    assert len(await _incidents(chat)) == 2
    assert "declare sev1|sev2|sev3|sev4" in chat_grammar.HELP


async def test_declare_in_mattermost(make_client: MakeClient, clock: Clock) -> None:
    chat = await start_chat(make_client, clock)
    resp = await chat.client.post(
        "/api/v1/chat/mattermost/commands",
        data=mattermost_body("declare sev3 Disk full on db-3"),
        headers=FORM,
    )
    body = await resp.json()
    newest = (await _incidents(chat))[0]
    assert body == {
        "response_type": "in_channel",
        "text": f"#{newest['id']} declared by alice (sev3, route root): Disk full on db-3 "
        f"{chat.state.settings.base_url}/incidents/{newest['id']}",
    }


ROUTED = """
targets:
  general: {type: console}
  room: {type: console}
  payments-room: {type: console}
rotations:
  oncall:
    members:
      - {name: alice, handles: {slack: U0ALICE, mattermost: mm0alice,
                                mattermost_username: alice.m}}
      - {name: bob, handles: {slack: U0BOB}}
    start: 2026-01-05
route:
  tiers: {general: [general], incident: room}
  routes:
    - name: checkout
      matchers: ['team="payments"', 'service="checkout"']
      tiers: {incident: payments-room}
    - name: storage
      matchers: ['team="storage"']
"""


async def test_declare_with_a_team_labels_and_a_route(
    make_client: MakeClient, clock: Clock
) -> None:
    from bridge.runtime import rules_runtime
    from bridge.targets.base import TargetDeps

    chat = await start_chat(make_client, clock)
    path = chat.state.settings.db.parent / "routed-rules.yaml"
    path.write_text(ROUTED)
    chat.state.runtime = rules_runtime([path], TargetDeps())
    # the labels choose the route as an alert group's would
    body = await chat.command("declare sev2 team=payments service=checkout Checkout is slow")
    assert body["response_type"] == "in_channel", body
    assert "(sev2, route checkout): Checkout is slow" in body["text"]
    newest = (await _incidents(chat))[0]
    shown = await (await chat.client.get(f"/api/v1/incidents/{newest['id']}", headers=WRITE)).json()
    assert shown["team"] == "payments" and shown["title"] == "Checkout is slow"
    assert ("payments-room", "opened") in rows(
        chat.state.store, "SELECT target, event FROM outbox WHERE incident_id = ?", newest["id"]
    )
    # a route by its name
    body = await chat.command("declare sev3 route=storage Disk full on db-3")
    assert "(sev3, route storage): Disk full on db-3" in body["text"], body
    # an unknown route is refused with nothing written
    count = len(await _incidents(chat))
    for line, says in (
        ("declare sev3 route=nowhere Disk full", "Not declared: route:"),
        ("declare sev3 team=a team=b Disk full", "given twice"),
        ("declare sev3 team=payments", "needs a title"),
    ):
        refused = await chat.command(line)
        assert refused["response_type"] == "ephemeral" and says in refused["text"], refused
    assert len(await _incidents(chat)) == count
