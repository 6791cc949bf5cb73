"""GET /api/v1/insights, the CSV tables and the page: the numbers of the incidents served, a 400
naming the parameter for a bad one (never a 500), read access like the other reads."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from typing import Any

import pytest

from bridge.core.secrets import Secret
from bridge.http.insights import InsightsAnswer
from tests.conftest import BOTH_BACKENDS, WRITE, MakeClient, fixture_bytes
from tests.integration.procs import metric_value

pytestmark = BOTH_BACKENDS


async def acknowledged(client: Any, clock: Any) -> int:
    hook = await client.post("/api/v1/alerts", data=fixture_bytes("firing-group-bearer.json"))
    assert hook.status == 200
    incident_id: int = (await hook.json())["incidents"][0]["id"]
    clock.advance(120)
    ack = await client.post(f"/api/v1/incidents/{incident_id}/acknowledge", json={}, headers=WRITE)
    assert ack.status == 200, await ack.text()
    return incident_id


async def test_the_answer_has_the_incident_in_its_tables(
    make_client: MakeClient, clock: Any
) -> None:
    client: Any = await make_client()
    incident_id = await acknowledged(client, clock)
    detail = await (await client.get(f"/api/v1/incidents/{incident_id}")).json()
    clock.advance(60)
    resp = await client.get("/api/v1/insights", params={"since": "3650d"})
    assert resp.status == 200, await resp.text()
    answer = InsightsAnswer.model_validate(await resp.json())
    trend = {r[0]: r for r in answer.tables["trend"].rows}
    assert trend["incidents"][1] == 1
    assert detail["acknowledged_at"] is not None
    noisy = answer.tables["noisiest"]
    row = dict(zip(noisy.columns, noisy.rows[0], strict=True))
    assert row["incidents"] == 1 and row["alertname"]
    assert (row["flapping"], row["reopenings"], row["pages"]) == (0, 0, 0)  # fired once each
    people = answer.tables["interruptions"]
    assert [r[people.columns.index("acknowledgements")] for r in people.rows] == [1]
    # a label the incident's alerts do not carry: nothing
    none = await (await client.get("/api/v1/insights?since=3650d&label=alertname=Nope")).json()
    assert {r[0]: r[1] for r in none["tables"]["trend"]["rows"]}["incidents"] == 0


@pytest.mark.parametrize(
    "query,field",
    [
        ("since=30", "since"),
        ("since=0d", "since"),
        ("since=1d&since=2d", "since"),
        ("since=99999999d", "since"),
        ("label=nolabel", "label"),
        ("label=bad-name=x", "label"),
        ("sincee=3d", "sincee"),
    ],
)
async def test_a_bad_parameter_is_a_400_naming_it(
    make_client: MakeClient, query: str, field: str
) -> None:
    client: Any = await make_client()
    resp = await client.get(f"/api/v1/insights?{query}")
    assert resp.status == 400
    assert (await resp.json())["field"] == field
    page = await client.get(f"/insights?{query}")
    assert page.status == 400 and field in await page.text()
    table = await client.get(f"/insights/trend.csv?{query}")
    assert table.status == 400


async def test_every_table_downloads_as_csv(make_client: MakeClient, clock: Any) -> None:
    client: Any = await make_client()
    await acknowledged(client, clock)
    answer = await (await client.get("/api/v1/insights?since=3650d")).json()
    for name, table in answer["tables"].items():
        resp = await client.get(f"/insights/{name}.csv?since=3650d")
        assert resp.status == 200 and resp.content_type == "text/csv"
        assert "attachment" in resp.headers["Content-Disposition"]
        got = list(csv.reader(io.StringIO(await resp.text())))
        assert got[0] == table["columns"]
        assert len(got) - 1 == len(table["rows"])
    missing = await client.get("/insights/nosuch.csv")
    assert missing.status == 404


async def test_the_page_draws_charts_as_svg(make_client: MakeClient, clock: Any) -> None:
    client: Any = await make_client()
    await acknowledged(client, clock)
    page = await client.get("/insights?since=3650d")
    assert page.status == 200
    text = await page.text()
    assert text.count("<svg") == 5 and 'role="img"' in text and "<title id=" in text
    assert text.count("<script") == 1  # the base layout's app.js only: the charts need none
    assert 'href="/insights/noisiest.csv?since=3650d"' in text


async def test_reads_need_a_reader_when_reads_are_closed(make_client: MakeClient) -> None:
    client: Any = await make_client(
        api_token=Secret("writer-token"), api_read_token=Secret("reader-token")
    )
    assert (await client.get("/api/v1/insights")).status == 401
    csv_anon = await client.get("/insights/trend.csv", allow_redirects=False)
    assert csv_anon.status in (302, 303) and "/login" in csv_anon.headers["Location"]
    page = await client.get("/insights", allow_redirects=False)
    assert page.status in (302, 303)
    reader = {"Authorization": "Bearer reader-token"}
    assert (await client.get("/api/v1/insights", headers=reader)).status == 200
    assert (await client.get("/insights/trend.csv", headers=reader)).status == 200


async def test_a_kept_answer_is_served_while_the_next_is_computed(
    make_client: MakeClient, clock: Any
) -> None:
    """Fresh within its 30 s step; stale by up to 10 minutes: served at once, the new answer
    computed behind it for the next ask; older: computed while the request waits."""
    client: Any = await make_client()

    async def incidents() -> int:
        body = await (await client.get("/api/v1/insights?since=3650d")).json()
        return int({r[0]: r[1] for r in body["tables"]["trend"]["rows"]}["incidents"])

    await acknowledged(client, clock)
    assert await incidents() == 1
    second = json.loads(fixture_bytes("firing-group-bearer.json"))
    second["groupKey"] = "another-group"
    for alert in second["alerts"]:
        alert["labels"]["instance"] = "another"
    assert (await client.post("/api/v1/alerts", json=second)).status == 200
    assert await incidents() == 1  # the same step: the kept answer
    clock.advance(60)
    assert await incidents() == 1  # stale: served at once, refreshed behind it
    for _ in range(100):
        await asyncio.sleep(0.02)
        if await incidents() == 2:
            break
    assert await incidents() == 2
    third = json.loads(fixture_bytes("firing-group-bearer.json"))
    third["groupKey"] = "a-third-group"
    for alert in third["alerts"]:
        alert["labels"]["instance"] = "third"
    assert (await client.post("/api/v1/alerts", json=third)).status == 200
    clock.advance(11 * 60)
    assert await incidents() == 3  # too old to serve: computed while the request waits


async def test_the_numbers_equal_the_scraped_mttx_histograms(
    make_client: MakeClient, clock: Any
) -> None:
    """MTTA/MTTM/MTTR of the insights against /metrics' _sum / _count over the same incidents
    (three groups, acknowledged, mitigated and resolved at different delays)."""
    client: Any = await make_client()
    for n in range(3):
        body = json.loads(fixture_bytes("firing-group-bearer.json"))
        body["groupKey"] = f"scraped-{n}"
        for alert in body["alerts"]:
            alert["labels"]["instance"] = f"scraped-{n}"
        hook = await client.post("/api/v1/alerts", json=body)
        incident_id = (await hook.json())["incidents"][0]["id"]
        for action, wait in (("acknowledge", 40 + n * 30), ("mitigate", 300), ("resolve", 90)):
            if n == 2 and action == "resolve":
                continue  # one left mitigated: MTTR over two, MTTM over three
            clock.advance(wait)
            done = await client.post(
                f"/api/v1/incidents/{incident_id}/{action}", json={}, headers=WRITE
            )
            assert done.status == 200, await done.text()
    scraped = await (await client.get("/metrics")).text()
    answer = await (await client.get("/api/v1/insights?since=3650d")).json()
    ours = {r[0]: r[1] for r in answer["tables"]["trend"]["rows"]}
    for measure, family in (
        ("mtta_s", "acknowledge"),
        ("mttm_s", "mitigate"),
        ("mttr_s", "resolve"),
    ):
        name = f"incident_bridge_time_to_{family}_seconds"
        total, count = metric_value(scraped, f"{name}_sum"), metric_value(scraped, f"{name}_count")
        assert count > 0, name
        assert ours[measure] == pytest.approx(total / count, abs=1e-3), measure
