"""The follow-up in the store: an upgrade does not open checklists for incidents mitigated
before it, and a mitigated incident's follow-up opens once, its items and timeline together."""

from __future__ import annotations

from typing import Any

from bridge.core.followup import DEFAULT_POLICY
from bridge.store.followup import OpenRequest, followup_view, open_due
from tests.conftest import T0
from tests.store.conftest import Databases


def _request() -> OpenRequest:
    return OpenRequest(now=T0, policy=lambda _: DEFAULT_POLICY, acknowledge_within=lambda *_: None)


def _incident(conn: Any, incident_id: int, status: str) -> None:
    conn.execute(
        "INSERT INTO incidents (id, key, title, severity, status, started_at, opened_at, "
        "mitigated_at) VALUES (?, ?, 't', 'sev3', ?, 1, 2, 3)",
        (incident_id, f"k{incident_id}", status),
    )


def test_incidents_mitigated_before_the_upgrade_get_no_checklist(databases: Databases) -> None:
    conn = databases.new(upto="0009")
    _incident(conn, 1, "mitigated")
    _incident(conn, 2, "resolved")
    databases.upgrade(conn)
    view = followup_view(conn, 1)
    assert view is not None and view["items"] == []
    assert view["validation"] == {"skipped": "mitigated before the follow-up phase existed"}
    assert followup_view(conn, 2) is None
    _incident(conn, 3, "mitigated")  # mitigated after the upgrade
    conn.execute("BEGIN")  # a write transaction on SQLite (PostgreSQL's: each statement's)
    assert open_due(conn, _request()) == [3]
    conn.execute("COMMIT")
    assert open_due(conn, _request()) == []  # once
    opened = followup_view(conn, 3)
    assert opened is not None and [i["kind"] for i in opened["items"]] == [
        "check",
        "validate",
        "review",
    ]
    kinds = [k for (k,) in conn.execute("SELECT kind FROM timeline WHERE incident_id = 3")]
    assert kinds == ["followup_opened"]
