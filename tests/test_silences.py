"""The ``@alertmanager`` sender: the silence of an acknowledged incident, made, adopted and
expired in the real Alertmanager 0.25; the matchers it builds; how failures are classified."""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from bridge.alertmanager_api import AlertmanagerClient, AmError, AmSilence
from bridge.core.alertmanager import fingerprint
from bridge.core.timeutil import NS, parse_rfc3339
from bridge.delivery.protocol import Notification, PermanentError, RetryableError
from bridge.silences import MARKER, SENDER, SilenceSender, silence_matchers

# the real Alertmanager of the client tests (one per module) and their waiting helper
from tests import test_alertmanager_api as client_tests
from tests.integration.procs import (
    Alertmanager,
    free_port,
)

# --- silence_matchers, pure -----------------------------------------------------------------


def test_common_labels_are_equality_matchers_sorted_by_name() -> None:
    alerts = [{"service": "db", "alertname": "Down"}, {"alertname": "Down", "service": "db"}]
    assert silence_matchers(alerts) == [
        {"name": "alertname", "value": "Down", "isRegex": False, "isEqual": True},
        {"name": "service", "value": "db", "isRegex": False, "isEqual": True},
    ]


def test_varying_values_are_one_regex_and_partial_labels_are_left_out() -> None:
    alerts = [
        {"alertname": "Down", "instance": "b", "zone": "eu"},
        {"alertname": "Down", "instance": "a"},
        {"alertname": "Down", "instance": "b"},
    ]
    assert silence_matchers(alerts) == [
        {"name": "alertname", "value": "Down", "isRegex": False, "isEqual": True},
        {"name": "instance", "value": "a|b", "isRegex": True, "isEqual": True},
    ]


def test_regex_metacharacters_are_escaped() -> None:
    alerts = [{"path": "a.b|c"}, {"path": "(x)*"}, {"path": "plain"}]
    (matcher,) = silence_matchers(alerts)
    assert matcher["isRegex"] is True
    pattern = re.compile(matcher["value"])  # Alertmanager anchors it: fullmatch
    for value in ("a.b|c", "(x)*", "plain"):
        assert pattern.fullmatch(value)
    for value in ("aXb|c", "a.b", "c", "x", "(x)", "plainer", ""):
        assert not pattern.fullmatch(value)


def test_no_alerts_no_matchers() -> None:
    assert silence_matchers([]) == []
    assert silence_matchers([{"a": "1"}, {"b": "2"}]) == []


# --- the sender against the real Alertmanager ------------------------------------------------


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


real_am = client_tests.real_am  # the client tests' Alertmanager fixture (one per module)
until = client_tests.until


@pytest.fixture
def client(real_am: Alertmanager, session: aiohttp.ClientSession) -> AlertmanagerClient:
    return AlertmanagerClient([real_am.url], session=session)


def firing_labels(name: str) -> list[dict[str, str]]:
    run = uuid.uuid4().hex[:8]
    # instance values with regex metacharacters: Alertmanager's (Go) regexes must read the
    # escaping as Python writes it
    return [
        {"alertname": name, "run": run, "instance": "db-1.example:9100"},
        {"alertname": name, "run": run, "instance": "a.b|c(2)"},
    ]


def incident(
    labels: list[dict[str, str]], status: str = "acknowledged", route: str = "db"
) -> dict[str, Any]:
    number = random.randrange(10**6, 10**7)
    alerts = [{"labels": lb, "status": "firing", "fingerprint": fingerprint(lb)} for lb in labels]
    resolved = {"alertname": "Other", "instance": "gone"}
    alerts.append({"labels": resolved, "status": "resolved", "fingerprint": fingerprint(resolved)})
    return {
        "id": number,
        "status": status,
        "url": f"http://bridge.test/incidents/{number}",
        "route": route,
        "alerts": alerts,
    }


ACK = {"kind": "acknowledged", "actor": "alice", "text": "Acknowledged", "data": {}}


def note(
    inc: Mapping[str, Any],
    state: Mapping[str, Any] | None = None,
    events: tuple[Mapping[str, Any], ...] = (ACK,),
) -> Notification:
    event = "resolved" if inc["status"] in ("resolved", "closed") else "acknowledged"
    return Notification(
        id=1,
        idempotency_key=f"k-{inc['id']}-{event}",
        target=SENDER,
        tier="alertmanager",  # type: ignore[arg-type]
        event=event,  # type: ignore[arg-type]
        incident=inc,
        events=events,
        state=dict(state or {}),
    )


def sender(client: AlertmanagerClient, minutes: float | None = 30) -> SilenceSender:
    return SilenceSender(
        client, lambda route: None if minutes is None or route != "db" else minutes * 60
    )


async def marked(client: AlertmanagerClient, inc: Mapping[str, Any]) -> list[AmSilence]:
    return [
        s
        for s in await client.silences()
        if f"{MARKER} #{inc['id']}:" in s.comment and s.state in ("active", "pending")
    ]


@pytest.mark.integration
async def test_acknowledge_creates_a_silence_once_and_resolve_expires_it(
    real_am: Alertmanager, client: AlertmanagerClient
) -> None:
    labels = firing_labels("AckDown")
    real_am.post_alerts([{"labels": lb, "startsAt": now_rfc3339()} for lb in labels])
    inc = incident(labels)
    before = time.time_ns()
    result = await sender(client).send(note(inc))

    (sid,) = result.state["silences"]
    assert result.provider_ids == {"silence_id": sid} and not result.skipped
    (created,) = result.timeline
    assert created.kind == "silence" and created.data["action"] == "created"
    assert created.data["ids"] == [sid] and created.data["created_by"] == "alice"
    assert created.text.startswith(f"Silence {sid} created in Alertmanager for 2 alert(s) until ")
    assert created.text.endswith(", by alice")
    ends_at = parse_rfc3339(created.data["ends_at"])
    assert ends_at is not None and before + 1800 * NS <= ends_at <= time.time_ns() + 1800 * NS

    (silence,) = await marked(client, inc)
    assert silence.id == sid and silence.created_by == "alice"
    assert silence.comment == (f"{MARKER} #{inc['id']}: {inc['url']} (acknowledged by alice)")
    fps = {fingerprint(lb) for lb in labels}

    async def both_silenced() -> bool:
        view = (await client.fetch(grace_s=0)).view
        assert view is not None
        return all(view.alerts[fp].silenced_by == (sid,) for fp in fps)

    await until("both alerts to be silenced", both_silenced)

    again = await sender(client).send(note(inc, result.state))
    assert again.skipped and again.state == result.state and again.timeline == ()
    assert [s.id for s in await marked(client, inc)] == [sid]  # not a second one

    closed = {**inc, "status": "resolved"}
    done = await sender(client).send(note(closed, result.state))
    assert done.state == {"silences": [], "expired": [sid]}
    (expired,) = done.timeline
    assert expired.data == {"action": "expired", "ids": [sid]}
    assert expired.text == (f"Silence {sid[:8]} expired in Alertmanager (the incident is resolved)")
    assert await marked(client, inc) == []
    # once more (a retried row): nothing left to expire, no note
    twice = await sender(client).send(note(closed, done.state))
    assert twice.state == {"silences": [], "expired": []} and twice.timeline == ()


@pytest.mark.integration
async def test_a_silence_whose_answer_was_lost_is_adopted_not_doubled(
    real_am: Alertmanager, client: AlertmanagerClient
) -> None:
    labels = firing_labels("LostDown")
    inc = incident(labels)
    now = time.time_ns()
    lost = await client.create_silence(
        silence_matchers(labels), now, now + 600 * NS, "alice", f"{MARKER} #{inc['id']}: x"
    )
    result = await sender(client).send(note(inc))
    assert result.state == {"silences": [lost]}
    (adopted,) = result.timeline
    assert adopted.data == {"action": "adopted", "ids": [lost]}
    assert [s.id for s in await marked(client, inc)] == [lost]


@pytest.mark.integration
async def test_resolve_expires_a_marked_silence_the_state_does_not_know(
    real_am: Alertmanager, client: AlertmanagerClient
) -> None:
    labels = firing_labels("ClosedDown")
    inc = incident(labels, status="closed")
    other = incident(labels)  # another incident's silence stays
    now = time.time_ns()
    ours = await client.create_silence(
        silence_matchers(labels), now, now + 600 * NS, "alice", f"{MARKER} #{inc['id']}: x"
    )
    theirs = await client.create_silence(
        silence_matchers(labels), now, now + 600 * NS, "bob", f"{MARKER} #{other['id']}: y"
    )
    result = await sender(client).send(note(inc, {}))
    assert result.state == {"silences": [], "expired": [ours]}
    assert result.timeline[0].text.endswith("(the incident is closed)")
    assert await marked(client, inc) == []
    assert [s.id for s in await marked(client, other)] == [theirs]


@pytest.mark.integration
async def test_nothing_is_made_when_the_rules_say_no_or_nothing_fires(
    real_am: Alertmanager, client: AlertmanagerClient
) -> None:
    labels = firing_labels("OffDown")
    off = await sender(client, minutes=None).send(note(incident(labels)))
    other_route = await sender(client).send(note(incident(labels, route="web")))
    zero = await sender(client, minutes=0).send(note(incident(labels)))
    quiet = incident(labels)
    quiet["alerts"] = [a for a in quiet["alerts"] if a["status"] != "firing"]
    nothing_fires = await sender(client).send(note(quiet))
    for result in (off, other_route, zero, nothing_fires):
        assert result.skipped and result.state == {} and result.timeline == ()
    assert not [s for s in await client.silences() if labels[0]["run"] in str(s.matchers)]


@pytest.mark.integration
async def test_the_acknowledger_is_the_newest_acknowledgement(
    real_am: Alertmanager, client: AlertmanagerClient
) -> None:
    labels = firing_labels("WhoDown")
    events = (
        ACK,
        {"kind": "note", "actor": "carol", "text": "looking", "data": {}},
        {"kind": "status_changed", "actor": "dave", "data": {"to": "acknowledged"}},
        {"kind": "status_changed", "actor": "erin", "data": {"to": "mitigated"}},
    )
    result = await sender(client).send(note(incident(labels), events=events))
    assert result.timeline[0].data["created_by"] == "dave"
    nobody = await sender(client).send(note(incident(labels), events=()))
    assert nobody.timeline[0].data["created_by"] == "incident-bridge"
    (silence,) = [s for s in await client.silences() if s.id == nobody.state["silences"][0]]
    assert silence.created_by == "incident-bridge"
    assert silence.comment.endswith("(acknowledged by incident-bridge)")


# --- failures ---------------------------------------------------------------------------------


async def test_an_unreachable_alertmanager_is_retryable(session: aiohttp.ClientSession) -> None:
    client = AlertmanagerClient([f"http://127.0.0.1:{free_port()}"], session=session)
    with pytest.raises(RetryableError) as err:
        await sender(client).send(note(incident(firing_labels("X"))))
    assert err.value.reason == "unreachable"
    with pytest.raises(RetryableError):
        await sender(client).send(note(incident(firing_labels("X"), status="resolved")))


class Refusing(AlertmanagerClient):
    """A client whose create fails with a given HTTP status (Alertmanager answers 400 only to
    a silence it cannot parse, which the sender does not build)."""

    def __init__(self, status: int) -> None:
        self.status = status

    async def silences(self) -> list[AmSilence]:
        return []

    async def create_silence(self, *args: Any, **kwargs: Any) -> str:
        raise AmError(
            "http_error", "http://am.test", "POST /api/v2/silences", "no", status=self.status
        )


@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [
        (400, PermanentError, "rejected"),
        (422, PermanentError, "rejected"),
        (429, RetryableError, "http_error"),
        (500, RetryableError, "http_error"),
        (503, RetryableError, "http_error"),
    ],
)
async def test_a_refusal_is_permanent_a_server_error_retryable(
    status: int, error: type[Exception], reason: str
) -> None:
    with pytest.raises(error) as err:
        await sender(Refusing(status)).send(note(incident(firing_labels("X"))))
    assert type(err.value) is error and getattr(err.value, "reason", None) == reason
