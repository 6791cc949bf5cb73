"""Who is on call through the API (http/oncall.py) on both backends: now and next with the
hand-off, ``?at=``; overrides made (who, why), applied at once (the answer and the commander of
an incident opened), listed, ended; bad input a 400 naming the field; Idempotency-Key; the
iCalendar feeds parsed with the ``icalendar`` package, read-only token in the URL, never
logged."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import icalendar
import pytest

from bridge.core.secrets import Secret
from tests.conftest import WRITE, Clock, RulesService, fixture_body

READ_TOKEN = "calendar-read-token-1234"
RULES = """
targets:
  room: {type: console}
rotations:
  ops:
    members: [amara, bjorn, chen]
    period: daily
    handoff: "09:00"
  db:
    members: [dana, emil]
    period: weekly
    timezone: Europe/Berlin
route:
  tiers: {incident: room}
  roles:
    commander: {rotation: ops}
"""
# The clock: 2026-11-27T04:06:40Z. ops hands off daily at 09:00 UTC from 2026-01-05 (amara):
# 325 hand-offs have passed (the last on 11-26 at 09:00): bjorn holds it, chen is next.


class Service(RulesService):
    """The service over RULES with a read-only token besides the write one (the calendars')."""

    def __init__(self, tmp_path: Path, clock: Clock, make_client: Any, db: dict[str, Any]) -> None:
        super().__init__(tmp_path, clock, make_client, RULES, db)
        self.settings = dataclasses.replace(self.settings, api_read_token=Secret(READ_TOKEN))


@pytest.fixture
async def service(
    tmp_path: Path,
    clock: Clock,
    aiohttp_client: Callable[..., Awaitable[Any]],
    db_settings: dict[str, Any],
) -> AsyncIterator[Service]:
    svc = Service(tmp_path, clock, aiohttp_client, db_settings)
    await svc.serve()
    yield svc
    await svc.close()


async def get(svc: Service, path: str, **kw: Any) -> tuple[int, Any]:
    assert svc.client is not None
    resp = await svc.client.get(path, headers=kw.pop("headers", WRITE), **kw)
    body = await resp.json() if resp.content_type == "application/json" else await resp.text()
    return resp.status, body


async def post(svc: Service, path: str, body: Any, **headers: str) -> tuple[int, Any]:
    assert svc.client is not None
    resp = await svc.client.post(path, json=body, headers={**WRITE, **headers})
    return resp.status, await resp.json()


def holders(answer: dict[str, Any]) -> dict[str, tuple[str, str | None, str]]:
    return {
        r["rotation"]: (r["now"]["person"], (r["next"] or {}).get("person"), r["handoff_at"])
        for r in answer["rotations"]
    }


async def test_who_is_on_call_now_and_next_with_the_hand_off(service: Service) -> None:
    status, answer = await get(service, "/api/v1/oncall")
    assert status == 200, answer
    assert answer["at"] == "2026-11-27T04:06:40Z"
    ops = next(r for r in answer["rotations"] if r["rotation"] == "ops")
    assert ops["now"] == {
        "person": "bjorn", "start": "2026-11-26T09:00:00Z", "end": "2026-11-27T09:00:00Z",
    }  # fmt: skip
    assert ops["next"]["person"] == "chen" and ops["handoff_at"] == "2026-11-27T09:00:00Z"
    db = next(r for r in answer["rotations"] if r["rotation"] == "db")
    assert db["timezone"] == "Europe/Berlin" and db["handoff_at"].endswith("T08:00:00Z")  # CET
    # another instant
    status, answer = await get(service, "/api/v1/oncall", params={"at": "2026-11-27T10:00:00Z"})
    assert status == 200 and holders(answer)["ops"][0] == "chen"
    status, err = await get(service, "/api/v1/oncall", params={"at": "tomorrow"})
    assert status == 400 and err["field"] == "at"
    status, err = await get(service, "/api/v1/oncall", params={"when": "x"})
    assert status == 400 and err["field"] == "when"


async def test_an_override_applies_at_once_to_the_answer_and_the_commander(
    service: Service, clock: Clock
) -> None:
    status, made = await post(
        service,
        "/api/v1/oncall/ops/overrides",
        {"person": "amara", "end": "2026-11-27T08:00:00Z", "reason": "bjorn at the dentist"},
    )
    assert status == 201, made
    assert (made["person"], made["created_by"], made["reason"]) == (
        "amara", "api", "bjorn at the dentist",
    )  # fmt: skip
    assert made["start"] == "2026-11-27T04:06:40Z" and made["ended_at"] is None
    _, answer = await get(service, "/api/v1/oncall")
    assert holders(answer)["ops"] == ("amara", "bjorn", "2026-11-27T08:00:00Z")
    # an incident opened now gets amara as its commander (the rules' role from the rotation)
    assert service.client is not None
    resp = await service.client.post(
        "/api/v1/alerts", json=fixture_body("firing-group-bearer.json")
    )
    incident = (await resp.json())["incidents"][0]["id"]
    ((roles,),) = service.rows("SELECT roles FROM incidents WHERE id = ?", incident)
    assert '"amara"' in roles and '"bjorn"' not in roles
    # listed; ended early: bjorn again, the row kept with who ended it
    _, listed = await get(service, "/api/v1/oncall/ops/overrides")
    assert [o["id"] for o in listed["overrides"]] == [made["id"]]
    clock.advance(600)
    resp = await service.client.delete(f"/api/v1/oncall/ops/overrides/{made['id']}", headers=WRITE)
    ended = await resp.json()
    assert resp.status == 200 and ended["ended_by"] == "api"
    assert ended["ends_at"] == "2026-11-27T04:16:40Z"
    _, answer = await get(service, "/api/v1/oncall")
    assert holders(answer)["ops"][0] == "bjorn"
    _, listed = await get(service, "/api/v1/oncall/ops/overrides")
    assert listed["overrides"] == []
    _, listed = await get(service, "/api/v1/oncall/ops/overrides", params={"all": "true"})
    assert [o["id"] for o in listed["overrides"]] == [made["id"]]
    # who held it at 04:10 stays amara (the past is read from the store)
    _, answer = await get(service, "/api/v1/oncall", params={"at": "2026-11-27T04:10:00Z"})
    assert holders(answer)["ops"][0] == "amara"
    resp = await service.client.delete(
        "/api/v1/oncall/db/overrides/" + str(made["id"]), headers=WRITE
    )
    assert resp.status == 404 and (await resp.json())["field"] == "id"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "ops",
            {"person": "amara", "start": "2026-11-27T08:00:00Z", "end": "2026-11-27T07:00:00Z"},
            "end",
        ),
        ("ops", {"person": "amara", "end": "2026-11-27T04:00:00Z"}, "end"),  # already over
        ("nope", {"person": "amara", "end": "2026-11-27T08:00:00Z"}, "rotation"),
        ("ops", {"person": "zed", "end": "2026-11-27T08:00:00Z"}, "person"),
        ("ops", {"person": "amara", "end": "18:00"}, "end"),
        ("ops", {"person": "amara", "start": "soon", "end": "2026-11-27T08:00:00Z"}, "start"),
        ("ops", {"person": "amara"}, "end"),
        ("ops", {"person": "amara", "end": "2026-11-27T08:00:00Z", "color": "red"}, "color"),
        ("ops", {"person": "amara", "end": "2028-11-27T08:00:00Z"}, "end"),  # over a year
    ],
)
async def test_bad_overrides_are_a_400_naming_the_field_and_write_nothing(
    service: Service, path: str, body: dict[str, Any], field: str
) -> None:
    status, err = await post(service, f"/api/v1/oncall/{path}/overrides", body)
    assert (status, err.get("field")) == (400, field), err
    assert service.rows("SELECT count(*) FROM oncall_overrides") == [(0,)]


async def test_a_retry_with_the_same_idempotency_key_makes_one_override(service: Service) -> None:
    body = {"person": "chen", "end": "2026-11-27T08:00:00Z"}
    first = await post(service, "/api/v1/oncall/ops/overrides", body, **{"Idempotency-Key": "k"})
    again = await post(service, "/api/v1/oncall/ops/overrides", body, **{"Idempotency-Key": "k"})
    assert first[0] == 201 and again[0] == 200 and again[1]["id"] == first[1]["id"]
    assert service.rows("SELECT count(*) FROM oncall_overrides") == [(1,)]
    other = {"person": "amara", "end": "2026-11-27T08:00:00Z"}
    status, err = await post(
        service, "/api/v1/oncall/ops/overrides", other, **{"Idempotency-Key": "k"}
    )
    assert (status, err["field"]) == (422, "Idempotency-Key")


async def test_a_read_token_cannot_make_an_override(service: Service) -> None:
    assert service.client is not None
    resp = await service.client.post(
        "/api/v1/oncall/ops/overrides",
        json={"person": "chen", "end": "2026-11-27T08:00:00Z"},
        headers={"Authorization": f"Bearer {READ_TOKEN}"},
    )
    assert resp.status == 403


def events(text: str) -> list[Any]:
    cal = icalendar.Calendar.from_ical(text)
    assert cal["VERSION"] == "2.0" and cal["PRODID"]
    return [c for c in cal.walk("VEVENT")]


async def test_calendar_feeds_are_valid_icalendar_with_stable_uids(
    service: Service, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await post(
        service,
        "/api/v1/oncall/ops/overrides",
        {"person": "amara", "end": "2026-11-27T08:00:00Z", "reason": "swap; with, commas"},
    )
    assert service.client is not None
    resp = await service.client.get(f"/api/v1/oncall/ops.ics?token={READ_TOKEN}")
    assert resp.status == 200 and resp.content_type == "text/calendar"
    text = await resp.text()
    assert "\r\n" in text and all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    found = events(text)
    # 8 weeks back and 26 ahead of daily shifts, one more for the override's cut
    assert 34 * 7 - 2 <= len(found) <= 34 * 7 + 3
    for e in found:
        assert e["UID"] and e.get("DTSTAMP") is not None
        assert e.decoded("DTSTART").tzinfo is not None and e.decoded("DTEND") > e.decoded("DTSTART")
    starts = {e.decoded("DTSTART"): str(e["SUMMARY"]) for e in found}
    at = datetime(2026, 11, 27, 4, 6, 40, tzinfo=UTC)
    assert "amara" in starts[at]
    # the same shifts keep their UIDs a day later (a calendar updates, never duplicates)
    clock.advance(86400)
    later = events(
        await (await service.client.get(f"/api/v1/oncall/ops.ics?token={READ_TOKEN}")).text()
    )
    uids = {str(e["UID"]): e.decoded("DTSTART") for e in found}
    assert len(uids) == len(found)
    again = {str(e["UID"]): e.decoded("DTSTART") for e in later}
    shared = set(uids) & set(again)
    assert len(shared) >= len(found) - 3 and all(uids[u] == again[u] for u in shared)
    # a person's feed: their shifts in every rotation
    resp = await service.client.get(f"/api/v1/oncall/people/dana.ics?token={READ_TOKEN}")
    assert resp.status == 200
    assert all("dana" in str(e["SUMMARY"]) for e in events(await resp.text()))
    resp = await service.client.get(f"/api/v1/oncall/people/zed.ics?token={READ_TOKEN}")
    assert resp.status == 404
    # a token that can write is refused in a URL; a wrong one is a 401; none of them is logged
    write_token = WRITE["Authorization"].split()[1]
    resp = await service.client.get(f"/api/v1/oncall/ops.ics?token={write_token}")
    assert resp.status == 403 and write_token not in await resp.text()
    resp = await service.client.get("/api/v1/oncall/ops.ics?token=wrong-token-xyz")
    assert resp.status == 401
    resp = await service.client.get("/api/v1/oncall/ops.ics")
    assert resp.status == 401
    logged = caplog.text
    assert (
        READ_TOKEN not in logged and write_token not in logged and "wrong-token-xyz" not in logged
    )
