"""The Alertmanager API client: against a loopback server that misbehaves in every way the
client must survive, and against the real Alertmanager 0.25 (one peer, and an HA pair)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import bridge.alertmanager_api as am_api
from bridge.alertmanager_api import AlertmanagerClient, AmError, Fetched
from bridge.core.alertmanager import fingerprint
from bridge.core.secrets import Secret
from bridge.core.timeutil import NS, format_ns, parse_rfc3339
from tests.integration.procs import (
    ALERTMANAGER,
    Alertmanager,
    alertmanager_config,
    free_port,
    require_binary,
    running_alertmanagers,
)

# timing bounds: run after the parallel run, alone (make test)
pytestmark = pytest.mark.serial

TOKEN = "s3cret-bearer-token-value"
PASSWORD = "url-pa55word-value"
HOUR_AGO = format_ns(time.time_ns() - 3600 * NS)


def am_alert(fp: str, **extra: Any) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "fingerprint": fp,
        "labels": {"alertname": "Down", "instance": fp},
        "annotations": {"summary": "down", "n": 3},
        "startsAt": "2026-11-28T10:00:00.123456789Z",
        "endsAt": "2026-11-28T11:00:00Z",
        "updatedAt": "2026-11-28T10:00:01Z",
        "generatorURL": "http://prometheus.test/graph",
        "receivers": [{"name": "incident-bridge"}],
        "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
        "somethingNew": True,
    }
    alert.update(extra)
    return alert


SILENCE = {
    "id": "5b2c-good",
    "status": {"state": "active"},
    "createdBy": "alice",
    "comment": "db maintenance",
    "startsAt": "2026-11-28T10:00:00Z",
    "endsAt": "2026-11-28T12:00:00Z",
    "matchers": [
        {"name": "alertname", "value": "Down", "isRegex": False, "isEqual": True},
        {"name": "instance", "value": "a|b", "isRegex": True, "isEqual": False},
    ],
}


class FakeAlertmanager:
    """A loopback server; the first path segment picks how it (mis)behaves, so one server is
    many peers: ``<url>/good``, ``<url>/html500``... (a path prefix, as behind a proxy)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # (scenario, path, headers)
        self.app = web.Application()
        self.app.router.add_route("*", "/{scenario}/api/v2/{what:.*}", self.handle)
        self.runner = web.AppRunner(self.app)
        self.url = ""

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    def hits(self, scenario: str) -> int:
        return sum(1 for s, _p, _h in self.seen if s == scenario)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        scenario, what = request.match_info["scenario"], request.match_info["what"]
        self.seen.append((scenario, what, dict(request.headers)))
        uptime = format_ns(time.time_ns() - 10 * NS) if scenario == "young" else HOUR_AGO
        if what == "status":
            if scenario == "html500":
                return web.Response(
                    status=500,
                    text="<html><body><h1>Internal error</h1>" + "x" * 5000 + "</body></html>",
                    content_type="text/html",
                )
            if scenario == "503":
                return web.Response(
                    status=503, text="upstream\x1b[31m down", content_type="text/plain"
                )
            if scenario in ("echo", "echo500"):  # a proxy that echoes the request's credentials
                text = f"denied: {request.headers.get('Authorization')}"
                status = 403 if scenario == "echo" else 500
                return web.Response(status=status, text=text, content_type="text/plain")
            if scenario == "slow":
                await asyncio.sleep(2)
            return web.json_response({"uptime": uptime, "cluster": {}, "versionInfo": {}})
        if what == "receivers":
            return web.json_response([{"name": "incident-bridge"}, {"name": "null"}, "junk"])
        if what == "alerts":
            return await self.alerts(scenario, request)
        if what == "silences" and request.method == "GET":
            broken = {"id": "broken", "status": {"state": "active"}, "startsAt": "yesterday"}
            return web.json_response([SILENCE, broken, 42])
        if what == "silences" and request.method == "POST":
            if scenario == "slow":
                await asyncio.sleep(2)
            body = await request.json()
            if not body["matchers"]:
                return web.json_response("silence invalid: at least one matcher", status=400)
            return web.json_response({"silenceID": "new-silence-id"})
        return web.Response(status=404)

    async def alerts(self, scenario: str, request: web.Request) -> web.StreamResponse:
        if scenario == "truncated":
            return web.Response(
                body=json.dumps([am_alert("aa")])[:60].encode(), content_type="application/json"
            )
        if scenario == "notjson":
            return web.Response(body=b"Service Unavailable", content_type="text/plain")
        if scenario == "object":
            return web.json_response({"alerts": [am_alert("aa")]})
        if scenario == "nostart":
            no_start = am_alert("bb")
            del no_start["startsAt"]
            return web.json_response([am_alert("aa"), no_start])
        if scenario == "badlabels":
            return web.json_response([am_alert("aa", labels={"alertname": 7})])
        if scenario == "huge":
            # Content-Length says it all: refused before reading
            return web.Response(
                body=b" " * (am_api.MAX_ANSWER_BYTES + 1), content_type="application/json"
            )
        if scenario == "hugestream":  # no Content-Length: refused while reading
            resp = web.StreamResponse()
            resp.content_type = "application/json"
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            chunk = b" " * (1024 * 1024)
            try:
                for _ in range(am_api.MAX_ANSWER_BYTES // len(chunk) + 2):
                    await resp.write(chunk)
            except (ConnectionError, RuntimeError):
                pass  # the client hung up, as it should
            return resp
        if scenario == "cut":  # the connection closes before Content-Length bytes came
            resp = web.StreamResponse(headers={"Content-Length": "1000"})
            resp.content_type = "application/json"
            await resp.prepare(request)
            await resp.write(b'[{"fingerprint": ')
            assert request.transport is not None
            request.transport.close()
            return resp
        unknown_state = am_alert("cc", status={"state": "somethingNew", "silencedBy": ["s1"]})
        return web.json_response([am_alert("aa"), am_alert("bb"), unknown_state])


@pytest.fixture
async def fake() -> AsyncIterator[FakeAlertmanager]:
    server = FakeAlertmanager()
    await server.start()
    yield server
    await server.runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def fetch(session: aiohttp.ClientSession, *urls: str, **kw: Any) -> Fetched:
    client = AlertmanagerClient(list(urls), session=session, **kw)
    return await client.fetch(grace_s=300)


async def test_a_good_answer_is_read_completely(
    fake: FakeAlertmanager, session: aiohttp.ClientSession
) -> None:
    before = time.time_ns()
    got = await fetch(session, fake.url + "/good/")
    assert got.errors == () and got.young == ()
    view = got.view
    assert view is not None
    assert view.peer == fake.url + "/good"
    assert view.up_since == parse_rfc3339(HOUR_AGO)
    assert before <= view.fetched_at <= time.time_ns()
    assert set(view.alerts) == {"aa", "bb", "cc"}
    aa = view.alerts["aa"]
    assert aa.labels == {"alertname": "Down", "instance": "aa"}
    assert aa.starts_at == parse_rfc3339("2026-11-28T10:00:00.123456789Z")
    assert aa.ends_at == parse_rfc3339("2026-11-28T11:00:00Z")
    assert aa.annotations == {"summary": "down"}  # the number is not an annotation
    assert aa.receivers == ("incident-bridge",)
    assert aa.state == "active"
    # a state this client does not know: the alert is listed, so it counts as active
    assert view.alerts["cc"].state == "active"
    assert view.alerts["cc"].silenced_by == ("s1",)
    assert view.receivers == frozenset({"incident-bridge", "null"})
    # the malformed silences are skipped, the good one is kept
    assert list(view.silences) == ["5b2c-good"]
    silence = view.silences["5b2c-good"]
    assert silence.matchers == ('alertname="Down"', 'instance!~"a|b"')
    assert silence.created_by == "alice" and silence.state == "active"


@pytest.mark.parametrize(
    ("scenario", "reason", "says"),
    [
        ("html500", "http_error", "GET /api/v2/status: HTTP 500"),
        ("503", "http_error", "HTTP 503: upstream\\x1b[31m down"),
        ("truncated", "bad_answer", "truncated JSON"),
        ("notjson", "bad_answer", "not JSON"),
        ("object", "bad_answer", "GET /api/v2/alerts: not a list"),
        ("nostart", "bad_answer", "alerts[1].startsAt: not a time"),
        ("badlabels", "bad_answer", "alerts[0].labels: not an object of strings"),
        ("huge", "too_large", "larger than 32 MiB"),
        ("hugestream", "too_large", "larger than 32 MiB"),
        ("cut", "bad_answer", "truncated answer"),
        ("slow", "timeout", "no answer within 0.3 s"),
    ],
)
async def test_a_misbehaving_peer_is_an_error_not_an_exception(
    fake: FakeAlertmanager, session: aiohttp.ClientSession, scenario: str, reason: str, says: str
) -> None:
    # only the slow peer is about the timeout: the others get time to answer on a busy machine
    # (two test workers on two cores: 32 MiB written by the fake took over 0.3 s in a CI run)
    timeout_s = 0.3 if scenario == "slow" else 10.0
    got = await fetch(session, f"{fake.url}/{scenario}", timeout_s=timeout_s)
    assert got.view is None and got.young == ()
    (err,) = got.errors
    assert err.reason == reason, str(err)
    assert err.peer == f"{fake.url}/{scenario}"
    assert says in str(err)
    assert str(err).startswith(f"Alertmanager at {fake.url}/{scenario}: ")
    assert "\n" not in str(err) and "\x1b" not in str(err)
    assert len(str(err)) <= am_api.MAX_MESSAGE
    assert "<html" not in str(err) and "xxxx" not in str(err)  # no error page echoed


async def test_a_closed_port_is_unreachable(session: aiohttp.ClientSession) -> None:
    url = closed_port_url()
    got = await fetch(session, url)
    assert got.view is None
    (err,) = got.errors
    assert err.reason == "unreachable" and err.peer == url
    assert "cannot connect" in str(err)


async def test_every_peer_is_asked_and_their_answers_merged(
    fake: FakeAlertmanager, session: aiohttp.ClientSession
) -> None:
    """An alert is gone only when no peer that answers lists it: every peer is asked, the
    trusted answers merged, and a young peer's alerts count as listed (never as gone)."""
    dead = closed_port_url()
    client = AlertmanagerClient(
        [dead, fake.url + "/nostart", fake.url + "/young", fake.url + "/good"], session=session
    )
    got = await client.fetch(grace_s=300)
    assert got.view is not None and got.view.peer == fake.url + "/good"
    assert got.view.peers == (fake.url + "/good", fake.url + "/young")
    assert [e.reason for e in got.errors] == ["unreachable", "bad_answer"]
    assert got.young == (fake.url + "/young",)
    young_alerts = fake.hits("young")
    again = await client.fetch(grace_s=300)
    assert again.view is not None and [e.reason for e in again.errors] == [
        "unreachable",
        "bad_answer",
    ]
    assert fake.hits("young") > young_alerts, "every peer is asked each time"


async def test_a_young_peer_is_not_trusted(
    fake: FakeAlertmanager, session: aiohttp.ClientSession
) -> None:
    got = await fetch(session, fake.url + "/young")
    assert got.view is None and got.errors == ()
    assert got.young == (fake.url + "/young",)
    assert fake.hits("young") == 1  # its alerts were not even asked for
    # with a short grace period, the same peer is trusted
    client = AlertmanagerClient([fake.url + "/young"], session=session)
    assert (await client.fetch(grace_s=5)).view is not None


async def test_bearer_and_basic_auth_arrive(
    fake: FakeAlertmanager, session: aiohttp.ClientSession
) -> None:
    await fetch(session, fake.url + "/good", token=Secret(TOKEN))
    await fetch(session, fake.url + "/good", basic_user="bob", basic_password=Secret("pw"))
    host = fake.url.removeprefix("http://")
    await fetch(session, f"http://carol:{PASSWORD}@{host}/good")
    sent = [h for s, p, h in fake.seen if p == "status"]
    assert [h.get("Authorization") for h in sent] == [
        f"Bearer {TOKEN}",
        aiohttp.encode_basic_auth("bob", "pw"),
        aiohttp.encode_basic_auth("carol", PASSWORD),
    ]
    assert all(h["Accept"] == "application/json" for _s, _p, h in fake.seen)


async def test_secrets_never_show(
    fake: FakeAlertmanager, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    host = fake.url.removeprefix("http://")
    dead_host = closed_port_url().removeprefix("http://")
    client = AlertmanagerClient(
        [f"http://carol:{PASSWORD}@{dead_host}", f"http://carol:{PASSWORD}@{host}/echo"],
        session=session,
    )
    assert PASSWORD not in " ".join(client.peers)
    got = await client.fetch(grace_s=0)
    bearer = AlertmanagerClient(
        [f"{fake.url}/echo", f"{fake.url}/echo500"], session=session, token=Secret(TOKEN)
    )
    got_bearer = await bearer.fetch(grace_s=0)
    basic = AlertmanagerClient(
        [f"{fake.url}/echo500"], session=session, basic_user="dave", basic_password=Secret(PASSWORD)
    )
    got_basic = await basic.fetch(grace_s=0)
    errors = [*got.errors, *got_bearer.errors, *got_basic.errors]
    assert [e.reason for e in errors] == ["unreachable", *["http_error"] * 4]
    # A refusal's body is not kept at all; another error's echo is shown with the token masked.
    assert str(errors[1]).endswith("HTTP 403") and str(errors[2]).endswith("HTTP 403")
    assert "HTTP 500: denied: Bearer ***" in str(errors[3])
    assert "HTTP 500: denied: Basic ***" in str(errors[4])
    text = " ".join([*map(str, errors), *map(repr, errors), caplog.text])
    assert "HTTP 403" in caplog.text  # the failures were logged
    for secret in (
        TOKEN,
        PASSWORD,
        aiohttp.encode_basic_auth("carol", PASSWORD).removeprefix("Basic "),
        aiohttp.encode_basic_auth("dave", PASSWORD).removeprefix("Basic "),
    ):
        assert secret not in text


async def test_create_silence_and_a_refusal(
    fake: FakeAlertmanager, session: aiohttp.ClientSession
) -> None:
    client = AlertmanagerClient([closed_port_url(), fake.url + "/good"], session=session)
    matcher = {"name": "alertname", "value": "Down", "isRegex": False, "isEqual": True}
    sid = await client.create_silence([matcher], 0, NS, "alice", "why")
    assert sid == "new-silence-id"
    assert [p for s, p, h in fake.seen if s == "good"] == ["silences"]
    with pytest.raises(AmError) as refused:
        await client.create_silence([], 0, NS, "alice", "why")
    assert refused.value.reason == "http_error" and refused.value.status == 400
    assert "at least one matcher" in str(refused.value)
    assert [p for s, p, h in fake.seen if s == "good"] == ["silences", "silences"]


async def test_a_create_that_may_have_succeeded_is_not_tried_on_another_peer(
    fake: FakeAlertmanager, session: aiohttp.ClientSession
) -> None:
    # a timeout: the slow peer may have made the silence; the next peer would make a second
    client = AlertmanagerClient(
        [fake.url + "/slow", fake.url + "/good"], session=session, timeout_s=0.3
    )
    matcher = {"name": "alertname", "value": "Down", "isRegex": False, "isEqual": True}
    with pytest.raises(AmError) as err:
        await client.create_silence([matcher], 0, NS, "alice", "why")
    assert err.value.reason == "timeout"
    assert fake.hits("good") == 0


# --- the real Alertmanager 0.25 -------------------------------------------------------------


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def posted(name: str) -> list[dict[str, Any]]:
    run = uuid.uuid4().hex[:8]
    return [
        {
            "labels": {"alertname": name, "run": run, "instance": f"host-{n}"},
            "annotations": {"summary": f"{name} on host-{n}"},
            "startsAt": now_rfc3339(),
            "generatorURL": "http://prometheus.test/graph",
        }
        for n in (1, 2)
    ]


@pytest.fixture(scope="module")
def real_am(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    require_binary(ALERTMANAGER)
    config = alertmanager_config("http://127.0.0.1:9", None)
    with running_alertmanagers(tmp_path_factory.mktemp("am"), config) as (am,):
        yield am


async def until(what: str, probe: Any, within: float = 8.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.integration
async def test_real_alertmanager_alerts_silence_and_expiry(
    real_am: Alertmanager, session: aiohttp.ClientSession
) -> None:
    alerts = posted("RealDown")
    real_am.post_alerts(alerts)
    client = AlertmanagerClient([real_am.url], session=session)
    got = await client.fetch(grace_s=0)
    assert got.errors == () and got.view is not None
    fps = {fingerprint(a["labels"]): a for a in alerts}
    assert set(fps) <= set(got.view.alerts)
    for fp, sent in fps.items():
        seen = got.view.alerts[fp]
        assert seen.labels == sent["labels"]
        assert seen.starts_at == parse_rfc3339(sent["startsAt"])
        assert seen.state in ("active", "unprocessed")
        assert seen.receivers == ("incident-bridge",)
        # Alertmanager lists an alert without an end with endsAt = its resolve_timeout ahead
        assert seen.ends_at is not None and seen.ends_at > time.time_ns()
    assert "incident-bridge" in got.view.receivers
    assert got.view.up_since < got.view.fetched_at

    first = alerts[0]["labels"]
    matchers = [
        {"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in first.items()
    ]
    now = time.time_ns()
    sid = await client.create_silence(matchers, now, now + 600 * NS, "alice", "a test")
    fp = fingerprint(first)

    async def silenced() -> Any:
        view = (await client.fetch(grace_s=0)).view
        return view if view and view.alerts[fp].state == "suppressed" else None

    view = await until("the alert to be silenced", silenced)
    assert view.alerts[fp].silenced_by == (sid,)
    other = fingerprint(alerts[1]["labels"])
    assert view.alerts[other].state == "active"
    silence = view.silences[sid]
    assert (silence.state, silence.created_by, silence.comment) == ("active", "alice", "a test")
    assert set(silence.matchers) == {f'{k}="{v}"' for k, v in first.items()}
    assert sid in {s.id for s in await client.silences()}

    assert await client.expire_silence(sid) is True

    async def active() -> Any:
        view = (await client.fetch(grace_s=0)).view
        return view if view and view.alerts[fp].state == "active" else None

    view = await until("the alert to be active again", active)
    assert view.alerts[fp].silenced_by == ()
    assert view.silences[sid].state == "expired"
    # Alertmanager 0.25 answers a second expiry 200 as well, an unknown id with 500
    # "silence not found" and an id that is not a UUID with 422: True, then False, no error.
    assert await client.expire_silence(sid) is True
    assert await client.expire_silence(str(uuid.uuid4())) is False
    assert await client.expire_silence("not-a-uuid") is False
    # a silence Alertmanager refuses: its words, status 400
    bad = [{"name": "instance", "value": "(", "isRegex": True, "isEqual": True}]
    with pytest.raises(AmError) as refused:
        await client.create_silence(bad, now, now + NS, "alice", "bad")
    assert refused.value.status == 400 and "invalid regular expression" in str(refused.value)


@pytest.mark.integration
async def test_real_ha_pair(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    require_binary(ALERTMANAGER)
    config = alertmanager_config("http://127.0.0.1:9", None)
    with running_alertmanagers(tmp_path, config, peers=2) as (am0, am1):
        alerts = posted("PairDown")
        for am in (am0, am1):  # as Prometheus does: every alert to every peer
            am.post_alerts(alerts)
        on0 = AlertmanagerClient([am0.url], session=session)
        on1 = AlertmanagerClient([am1.url], session=session)
        now = time.time_ns()
        matcher = {"name": "alertname", "value": "PairDown", "isRegex": False, "isEqual": True}
        sid = await on0.create_silence([matcher], now, now + 600 * NS, "alice", "gossip")

        async def gossiped() -> bool:
            return sid in {s.id for s in await on1.silences()}

        await until("the silence to reach the other peer", gossiped)

        both = AlertmanagerClient([am0.url, am1.url], session=session)
        got = await both.fetch(grace_s=0)
        assert got.view is not None and got.view.peer == am0.url
        am0.stop()
        got = await both.fetch(grace_s=0)
        assert got.view is not None and got.view.peer == am1.url
        assert [e.reason for e in got.errors] == ["unreachable"]
        assert {fingerprint(a["labels"]) for a in alerts} <= set(got.view.alerts)
        assert sid in got.view.silences


async def test_peers_are_asked_at_once_so_a_silent_one_costs_its_timeout_once(
    fake: FakeAlertmanager, session: aiohttp.ClientSession
) -> None:
    slow = [f"{fake.url}/slow" for _ in range(3)]
    # 1 s each: asked one after another they take 3 s; at once, 1 s and whatever a loaded
    # machine adds (two test workers on two cores), far from 3 s
    client = AlertmanagerClient([*slow, fake.url + "/good"], session=session, timeout_s=1.0)
    started = time.monotonic()
    got = await client.fetch(grace_s=300)
    took = time.monotonic() - started
    assert got.view is not None and [e.reason for e in got.errors] == ["timeout"] * 3
    assert took < 2.0, f"{took:.2f} s: the peers were asked one after another"
