"""What the ticket targets' tests (github, jira) share: the follow-up items, a ``ticket``
message naming some of them, and everything an error shows (where a secret must not be)."""

from __future__ import annotations

import traceback
from typing import Any

import pytest

from bridge.targets import DeliveryError, Notification
from tests.targets.conftest import make_notification

ITEMS = {
    7: ("Add a circuit breaker to checkout-api's calls to payments", "bob"),
    8: ("Alert on the payments error budget burn rate", "alice"),
    9: ("Write the runbook for a payments outage", None),
}


def tickets(
    *ids: int, state: dict[str, Any] | None = None, inc: dict[str, Any] | None = None
) -> Notification:
    events = tuple(
        {
            "kind": "ticket_requested",
            "actor": "carol",
            "at": "2026-11-27T07:00:00Z",
            "text": f"Ticket requested: {ITEMS[i][0]}",
            "data": {"item": i, "text": ITEMS[i][0], "owner": ITEMS[i][1]},
        }
        for i in ids
    )
    return make_notification("ticket", tier="tickets", events=events, state=state, inc=inc)


def describe(err: BaseException) -> str:
    return "\n".join([str(err), repr(err), *traceback.format_exception(err)])


async def failures(fake: Any, target: Any, statuses: tuple[int, ...]) -> list[DeliveryError]:
    """The errors of item 7's ticket sent once against each status (an error body, a
    ``Retry-After``), then of item 8's with the fake closed (no connection)."""
    errors: list[DeliveryError] = []
    for status in statuses:
        fake.fail_next(1, status=status, body="error body", retry_after=1)
        try:
            await target.send(tickets(7))
        except DeliveryError as exc:
            errors.append(exc)
    await fake.close()
    with pytest.raises(DeliveryError) as gone:
        await target.send(tickets(8))
    errors.append(gone.value)
    return errors
