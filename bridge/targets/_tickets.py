"""What the ticket targets (``jira``, ``github``) share: one ticket per follow-up item, never two.

A ``ticket`` message carries one or more ``ticket_requested`` events (several when they were
coalesced), each naming a follow-up item (``data.item``). For each item, in order:

1. in the saved state (``state["tickets"][str(item)]``): nothing to do;
2. found by the remote's search on the item's marker label (``<label_prefix>-<incident>-<item>``,
   put on every ticket the target opens): recorded, not opened again -- an earlier attempt
   opened it but its answer was lost;
3. otherwise opened, and recorded.

Progress goes back in the error's state too, so a retry after a failure on the third item does
not redo the first two. A create whose outcome is unknown (a timeout, a dropped connection, a
5xx: the remote may have opened the ticket) leaves the item "unsettled" since that time: until
``settle_s`` has passed, a retry that does not find the ticket waits instead of opening one,
because a remote's search may lag behind its writes (Jira's is eventually consistent).

The worker's quick retries send the same notification again (with the state it had when the
attempt began), so the target also remembers in memory, per (incident, item), the tickets it
opened or found and the creates left unsettled: a quick retry never opens a second ticket either.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from bridge.core.events import event_kind
from bridge.core.text import escape_controls
from bridge.delivery.classify import classify
from bridge.delivery.protocol import (
    DeliveryError,
    DeliveryResult,
    Notification,
    PermanentError,
    RetryableError,
)
from bridge.targets import _http
from bridge.targets.base import Target, TargetConfig, TargetDeps

# The marker label's prefix: short enough that a whole marker fits GitHub's 50 characters.
LABEL_PREFIX = r"^[a-z0-9][a-z0-9_.-]{0,23}$"
# Tickets and unsettled creates remembered in memory per target (the oldest are forgotten).
MEMORY = 4096


class TicketConfig(TargetConfig):
    labels: list[str] = Field(default_factory=list)
    assignees: dict[str, str] = Field(default_factory=dict)
    label_prefix: str = Field(default="incident-bridge", pattern=LABEL_PREFIX)
    settle_s: float = Field(default=30.0, ge=0, le=3600)


@dataclass(frozen=True)
class Item:
    """One follow-up item to open as a ticket, from its ``ticket_requested`` event."""

    id: str
    text: str
    owner: str | None
    event: Mapping[str, Any]


@dataclass(frozen=True)
class Ticket:
    key: str  # "OPS-12", "#17"
    url: str

    def as_state(self) -> dict[str, str]:
        return {"key": self.key, "url": self.url}


def item_id(value: Any) -> str | None:
    """The item id as the state keys it (``"7"``), or None when it is not an id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value >= 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return str(int(value))
    return None


def items_of(n: Notification) -> tuple[list[Item], int]:
    """The message's follow-up items, in order, each once; and how many ticket events named
    no usable item id."""
    out: list[Item] = []
    seen: set[str] = set()
    bad = 0
    for e in n.events:
        data = e.get("data")
        if event_kind(str(e.get("kind", "")), data) != "ticket":
            continue
        data = data if isinstance(data, Mapping) else {}
        ident = item_id(data.get("item"))
        if ident is None:
            bad += 1
            continue
        if ident in seen:
            continue
        seen.add(ident)
        owner = data.get("owner")
        text = str(data.get("text") or e.get("text") or "")
        out.append(Item(ident, text, str(owner) if owner else None, e))
    return out, bad


def marker(prefix: str, incident_id: Any, item: str) -> str:
    """The label that finds an item's ticket again: ``incident-bridge-42-7``."""
    return f"{prefix}-{incident_id}-{item}"


def _tickets(state: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    raw = state.get("tickets")
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            if isinstance(value, Mapping) and value.get("key"):
                out[str(key)] = {"key": str(value["key"]), "url": str(value.get("url") or "")}
    return out


def _unsettled(state: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    raw = state.get("unsettled")
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[str(key)] = float(value)
    return out


class TicketTarget(Target):
    """The per-item loop; a subclass says how to find and how to open one item's ticket."""

    config: TicketConfig
    # The handle in ``incident.people`` that names a person's account (``jira``, ``github``).
    handle: ClassVar[str] = ""

    def __init__(self, name: str, config: TargetConfig, deps: TargetDeps | None = None) -> None:
        super().__init__(name, config, deps)
        self._known: OrderedDict[tuple[str, str], dict[str, str]] = OrderedDict()
        self._pending: OrderedDict[tuple[str, str], float] = OrderedDict()

    # -- what a subclass provides ------------------------------------------------------------

    async def find(self, n: Notification, item: Item) -> Ticket | None:
        """The item's ticket, found by its marker label, or None."""
        raise NotImplementedError

    async def create(self, n: Notification, item: Item) -> Ticket:
        """Open the item's ticket. Raises ``RetryableError`` when the outcome is unknown."""
        raise NotImplementedError

    def search_request(self, n: Notification, item: Item) -> dict[str, Any]:
        """The search that finds the item's ticket by its marker label."""
        raise NotImplementedError

    def issue(self, n: Notification, item: Item) -> dict[str, Any]:
        """The create request of one item's ticket."""
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _check(self, resp: _http.Response) -> None:
        """Raise for an answer that is not a success (``judge`` does most of it)."""
        raise NotImplementedError

    def _refusal(self, resp: _http.Response, fallback: str) -> str:
        """A bounded reason for a refused request; the remote's own words go to the log."""
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------

    def marker(self, n: Notification, item: Item) -> str:
        return marker(self.config.label_prefix, n.incident.get("id"), item.id)

    def labels(self, n: Notification, item: Item) -> list[str]:
        """The target's labels and the item's marker, each once."""
        return list(dict.fromkeys([*self.config.labels, self.marker(n, item)]))

    def requests(self, n: Notification) -> list[dict[str, Any]]:
        """What goes on the wire for ``n``: per item, the search and the create (tests)."""
        items, _ = items_of(n)
        return [{"search": self.search_request(n, i), "create": self.issue(n, i)} for i in items]

    def first_found(self, n: Notification, item: Item, found: list[Ticket]) -> Ticket | None:
        """The oldest of the tickets that carry the item's marker; more than one is logged."""
        if not found:
            return None
        if len(found) > 1:
            self.deps.logger.warning(
                "%s target %s: %d issues carry the label %s; keeping %s",
                self.type_name,
                self.name,
                len(found),
                self.marker(n, item),
                found[0].key,
            )
        return found[0]

    async def post_json(self, url: str, body: dict[str, Any]) -> Any:
        """POST ``body``; the answer checked, its JSON."""
        resp = await _http.post(
            self.deps, url, json=body, headers=self._headers(), timeout_s=self.config.timeout_s
        )
        self._check(resp)
        return resp.json()

    async def create_assigned(
        self,
        item: Item,
        body: dict[str, Any],
        post: Callable[[dict[str, Any]], Awaitable[Any]],
        *,
        refused: str,
        holder: dict[str, Any],
        key: str,
    ) -> Any:
        """``post(body)``; when the remote refuses the assignee (reason ``refused``), the
        assignee (``holder[key]``) is dropped and the ticket opened unassigned: a person the
        remote cannot assign must not keep the ticket from being opened."""
        try:
            return await post(body)
        except PermanentError as exc:
            if exc.reason != refused or key not in holder:
                raise
            self.deps.logger.warning(
                "%s target %s: %s cannot be assigned; the issue is opened unassigned",
                self.type_name,
                self.name,
                escape_controls(item.owner or ""),
            )
            del holder[key]
            return await post(body)

    def judge(self, resp: _http.Response, now: float) -> None:
        """The shared classifier's verdict: a success passes, a retryable answer raises its
        error, anything else is permanent with the target's own bounded reason."""
        verdict = classify(resp.status, resp.headers, resp.body, vendor=self.type_name, now=now)
        if verdict.ok or verdict.retryable:
            verdict.raise_for()
            return
        raise PermanentError(self._refusal(resp, verdict.reason))

    def assignee(self, n: Notification, owner: str | None) -> str | None:
        """The owner's account: the target's ``assignees`` map first, then the handle the
        rotations give (``handles: {jira: ...}``); None when neither knows them."""
        if not owner:
            return None
        if owner in self.config.assignees:
            return self.config.assignees[owner] or None
        people = n.incident.get("people") or {}
        handles = people.get(owner) if isinstance(people, Mapping) else None
        if isinstance(handles, Mapping) and handles.get(self.handle):
            return str(handles[self.handle])
        return None

    def single(self, n: Notification, item: Item) -> Notification:
        """``n`` narrowed to one item's event: what its ticket's template renders."""
        return dataclasses.replace(n, event="ticket", events=(item.event,))

    async def send(self, notification: Notification) -> DeliveryResult:
        n = notification
        items, bad = items_of(n)
        if bad:
            self.deps.logger.warning(
                "%s target %s: %d ticket event(s) without an item id, skipped",
                self.type_name,
                self.name,
                bad,
            )
        if not items:  # only ticket events are meant for a ticket target
            return DeliveryResult(state=dict(n.state), skipped=True)
        incident = str(n.incident.get("id"))
        tickets, unsettled = _tickets(n.state), _unsettled(n.state)
        for item in items:  # what this process did beyond the state it was given
            known = self._known.get((incident, item.id))
            if known is not None:
                tickets.setdefault(item.id, dict(known))
            since = self._pending.get((incident, item.id))
            if since is not None and item.id not in tickets:
                unsettled[item.id] = max(since, unsettled.get(item.id, since))
        for settled in [i for i in unsettled if i in tickets]:
            del unsettled[settled]
        try:
            for item in items:
                if item.id not in tickets:
                    ticket = await self._one(n, item, unsettled)
                    tickets[item.id] = ticket.as_state()
                    unsettled.pop(item.id, None)
                    self._remember(incident, item.id, ticket)
        except DeliveryError as exc:
            exc.state = self._state(n, tickets, unsettled)
            raise
        keys = " ".join(tickets[i.id]["key"] for i in items)
        return DeliveryResult(
            state=self._state(n, tickets, unsettled), provider_ids={"tickets": keys}
        )

    async def _one(self, n: Notification, item: Item, unsettled: dict[str, float]) -> Ticket:
        found = await self.find(n, item)
        if found is not None:
            return found
        now = self.deps.clock()
        since = unsettled.get(item.id)
        if since is not None and now < since + self.config.settle_s:
            # An earlier create may have opened it and the search may not show it yet.
            raise RetryableError("ticket_unconfirmed", since + self.config.settle_s - now)
        try:
            return await self.create(n, item)
        except RetryableError as exc:
            if exc.reason == "rate_limited":  # refused before anything was created
                raise
            unsettled[item.id] = now
            self._pending[(str(n.incident.get("id")), item.id)] = now
            self._trim(self._pending)
            wait = max(exc.retry_after or 0.0, self.config.settle_s)
            raise RetryableError(exc.reason, wait or None) from None

    def _remember(self, incident: str, item: str, ticket: Ticket) -> None:
        self._known[(incident, item)] = ticket.as_state()
        self._known.move_to_end((incident, item))
        self._pending.pop((incident, item), None)
        self._trim(self._known)

    @staticmethod
    def _trim(memory: OrderedDict[Any, Any]) -> None:
        while len(memory) > MEMORY:
            memory.popitem(last=False)

    @staticmethod
    def _state(
        n: Notification, tickets: dict[str, dict[str, str]], unsettled: dict[str, float]
    ) -> dict[str, Any]:
        state: dict[str, Any] = {**n.state, "tickets": tickets}
        state.pop("unsettled", None)
        if unsettled:
            state["unsettled"] = unsettled
        return state
