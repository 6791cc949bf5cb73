"""A group linked into a declared incident, through the real Alertmanager: the incident is
declared by hand, the group's first alert opens an incident of its own (whose key is the group's
``groupKey`` under the built-in policy), the group is linked into the declared incident, and
from then on Alertmanager's webhooks of that group update the declared incident, to its
mitigation; merging the group's own incident into it closes the duplicate."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from bridge.config import api_token_path
from tests.conftest import BOTH_BACKENDS
from tests.integration.procs import (
    Bridge,
    alertmanager_config,
    http,
    running_alertmanagers,
    wait_for,
)
from tests.integration.test_alertmanager import TIMEOUT, alert, now_rfc3339

pytestmark = pytest.mark.integration


def post(bridge: Bridge, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    """A write through the API with the token the service generated (or was given)."""
    token = bridge.api_token or api_token_path(bridge.db).read_text().strip()
    answer = http(
        "POST",
        bridge.url + path,
        json.dumps(body).encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    return answer.status, answer.json()


def declared_when(bridge: Bridge, incident_id: int, check: Any) -> Any:
    """The incident once ``check`` holds for it."""

    def probe() -> dict[str, Any] | None:
        incident: dict[str, Any] = bridge.incident(incident_id)
        return incident if check(incident) else None

    return wait_for(f"incident {incident_id} to change", probe, TIMEOUT, interval=0.2)


def states(incident: dict[str, Any]) -> dict[str, str]:
    return {a["labels"]["instance"]: a["status"] for a in incident["alerts"]}


@BOTH_BACKENDS
def test_a_linked_group_updates_the_declared_incident(
    alertmanager_binary: str, bridge: Bridge, tmp_path: Path
) -> None:
    status, body = post(
        bridge,
        "/api/v1/incidents",
        {"title": "Checkout is slow", "severity": "sev2", "team": "payments"},
    )
    assert status == 201, body
    declared = body["incident"]["id"]
    name = f"IntegrationDeclared{uuid.uuid4().hex[:6]}"
    config = alertmanager_config(bridge.url, bridge.token)
    with running_alertmanagers(tmp_path, config, binary=alertmanager_binary) as [am]:
        started = now_rfc3339()
        am.post_alerts([alert(name, "web-1", started)])
        own = wait_for(
            "the group's own incident",
            lambda: [i for i in bridge.incidents() if i["id"] != declared] or None,
            TIMEOUT,
            interval=0.2,
        )[0]
        group_key = own["key"]  # the built-in policy keys an incident by its groupKey
        assert group_key.endswith(f'{{alertname="{name}", service="checkout"}}'), group_key
        status, body = post(bridge, f"/api/v1/incidents/{declared}/link", {"group_key": group_key})
        assert status == 200 and body["changed"], body

        # a second alert of the group: Alertmanager sends the group again, to the declared one
        am.post_alerts([alert(name, "web-1", started), alert(name, "web-2", started)])
        incident = declared_when(bridge, declared, lambda i: len(i["alerts"]) == 2)
        assert states(incident) == {"web-1": "firing", "web-2": "firing"}
        assert len(bridge.incidents()) == 2, "no third incident"

        am.post_alerts(
            [
                alert(name, "web-1", started, now_rfc3339()),
                alert(name, "web-2", started, now_rfc3339()),
            ]
        )
        incident = declared_when(bridge, declared, lambda i: i["status"] == "mitigated")
    kinds = [e["kind"] for e in incident["timeline"]]
    assert kinds[:2] == ["opened", "linked"], kinds
    assert kinds.count("alert_fired") == 2 and kinds.count("alert_resolved") == 2
    assert incident["source"]["source"] == "declared"

    status, body = post(bridge, f"/api/v1/incidents/{own['id']}/merge", {"into": declared})
    assert status == 200 and body["incident"]["status"] == "closed", body
    assert bridge.incident(own["id"])["source"]["merged_into"] == declared
