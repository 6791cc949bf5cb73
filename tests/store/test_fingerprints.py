"""A sender's fingerprint is trusted only while it names one label set (secure-by-default, 7)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from bridge.core.alertmanager import fingerprint, parse_webhook
from bridge.core.policy import BuiltinPolicy
from bridge.store import Store
from bridge.store.ingest import IngestItem, WebhookResult, apply_webhooks
from tests.conftest import SECOND, T0, rows

POLICY = BuiltinPolicy()
CHECKOUT = {"alertname": "CheckoutDown", "service": "checkout", "severity": "critical"}
BATCH = {"alertname": "BatchSlow", "service": "batch", "severity": "warning"}


def alert(labels: dict[str, str], fp: str | None = None) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": labels["alertname"]},
        "startsAt": "2026-11-27T04:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": fingerprint(labels) if fp is None else fp,
    }


def body(group: str, *alerts: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "version": "4",
            "groupKey": group,
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "bridge",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": list(alerts),
        }
    ).encode()


def item(raw: bytes, now: int) -> IngestItem:
    payload = parse_webhook(raw)
    return IngestItem(
        payload, POLICY.evaluate(payload, now), hashlib.sha256(raw).hexdigest(), raw, now
    )


async def ingest(store: Store, *raws: bytes, now: int = T0) -> list[WebhookResult]:
    """The webhooks as one writer batch."""
    items = [item(raw, now) for raw in raws]
    return await store.write(lambda conn: apply_webhooks(conn, items, careful=store.careful))


def stored(store: Any) -> tuple[dict[str, dict[str, str]], dict[str, set[str]]]:
    """The alerts' labels by fingerprint, and the fingerprints each incident (by key) holds."""
    labels = {fp: json.loads(t) for fp, t in rows(store, "SELECT fingerprint, labels FROM alerts")}
    held: dict[str, set[str]] = {}
    for key, fp in rows(
        store,
        "SELECT i.key, ia.fingerprint FROM incident_alerts ia "
        "JOIN incidents i ON i.id = ia.incident_id",
    ):
        held.setdefault(key, set()).add(fp)
    counts = dict(
        rows(store, "SELECT incident_id, sum(n) FROM incident_alert_counts GROUP BY incident_id")
    )
    real = dict(
        rows(store, "SELECT incident_id, count(*) FROM incident_alerts GROUP BY incident_id")
    )
    assert counts == real  # the counting triggers followed every move
    return labels, held


EXPECTED = {fingerprint(CHECKOUT): CHECKOUT, fingerprint(BATCH): BATCH}


async def test_a_false_fingerprint_cannot_rewrite_another_incidents_alert(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    (checkout,) = await ingest(store, body("{}:{checkout}", alert(CHECKOUT)))
    with caplog.at_level(logging.WARNING, "bridge.store"):
        (batch,) = await ingest(
            store, body("{}:{batch}", alert(BATCH, fingerprint(CHECKOUT))), now=T0 + SECOND
        )
    # The fast path's upsert refused the row; the batch was redone in the careful mode.
    assert store.careful.active()
    labels, held = stored(store)
    assert labels == EXPECTED
    assert held == {
        checkout.incidents[0].key: {fingerprint(CHECKOUT)},
        batch.incidents[0].key: {fingerprint(BATCH)},
    }
    assert f"fingerprint {fingerprint(CHECKOUT)} does not match its labels" in caplog.text
    assert fingerprint(BATCH) in caplog.text


async def test_a_squatted_fingerprint_is_given_back_to_the_alert_it_belongs_to(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # The false one comes first; the real owner of the fingerprint arrives later.
    (batch,) = await ingest(store, body("{}:{batch}", alert(BATCH, fingerprint(CHECKOUT))))
    with caplog.at_level(logging.WARNING, "bridge.store"):
        (checkout,) = await ingest(store, body("{}:{checkout}", alert(CHECKOUT)), now=T0 + SECOND)
    labels, held = stored(store)
    assert labels == EXPECTED
    assert held == {
        checkout.incidents[0].key: {fingerprint(CHECKOUT)},
        batch.incidents[0].key: {fingerprint(BATCH)},
    }
    assert f"stored alert fingerprint {fingerprint(CHECKOUT)} does not match" in caplog.text
    # The moved alert stays firing in its incident: a resend under its real fingerprint is
    # the same alert, not a new one.
    (again,) = await ingest(store, body("{}:{batch}", alert(BATCH)), now=T0 + 2 * SECOND)
    assert again.incidents[0].id == batch.incidents[0].id
    assert not again.changed


async def test_both_in_one_batch_and_one_payload(store: Store) -> None:
    false = alert(BATCH, fingerprint(CHECKOUT))
    results = await ingest(
        store,
        body("{}:{batch}", false),
        body("{}:{checkout}", alert(CHECKOUT)),
        body("{}:{both}", alert(CHECKOUT), false),
    )
    labels, held = stored(store)
    assert labels == EXPECTED
    batch, checkout, both = (r.incidents[0].key for r in results)
    assert held == {
        batch: {fingerprint(BATCH)},
        checkout: {fingerprint(CHECKOUT)},
        both: {fingerprint(CHECKOUT), fingerprint(BATCH)},
    }


async def test_honest_resends_are_not_checked(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await ingest(store, body("{}:{checkout}", alert(CHECKOUT)))
    reordered = dict(reversed(list(CHECKOUT.items())))
    with caplog.at_level(logging.WARNING, "bridge.store"):
        (again,) = await ingest(store, body("{}:{checkout}", alert(reordered)), now=T0 + SECOND)
    assert not again.changed
    assert "fingerprint" not in caplog.text
    # Labels in another order are a refused upsert too, then found equal in the careful mode,
    # where the row is updated (a later occurrence's annotations are kept).
    assert store.careful.active()
    later = alert(reordered)
    later["startsAt"] = "2026-11-27T05:00:00Z"
    later["annotations"] = {"summary": "again"}
    await ingest(store, body("{}:{checkout}", later), now=T0 + 2 * SECOND)
    ((annotations,),) = rows(store, "SELECT annotations FROM alerts")
    assert json.loads(annotations) == {"summary": "again"}
    assert stored(store)[0] == {fingerprint(CHECKOUT): CHECKOUT}


async def test_the_careful_mode_belongs_to_the_store_that_saw_the_false_fingerprint(
    store: Store, tmp_path: Path
) -> None:
    other = Store(tmp_path / "other.db")
    other.open()
    try:
        await ingest(store, body("{}:{checkout}", alert(CHECKOUT)))
        await ingest(store, body("{}:{batch}", alert(BATCH, fingerprint(CHECKOUT))), now=T0 + 1)
        assert store.careful.active()
        # another database (and a store opened later) starts on the fast path
        assert not other.careful.active()
        assert not Store(tmp_path / "third.db").careful.active()
    finally:
        other.close()
