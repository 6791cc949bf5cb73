"""The store's interface: what everything outside ``bridge/store/`` may ask of the database.

``StoreInterface`` is one object (``AppState.store``) with one typed part per concern
(``store.ingest``, ``store.queries``, ``store.outbox``, ...). Every method is a coroutine, or
returns an awaitable, whose answer comes after the commit that holds its rows (writes) or from
the read pool (reads). Errors are the store's own (``bridge.store.errors``): a backend maps its
driver's errors to them. The records the methods take and give are re-exported here, so that a
caller imports this module and the errors, and nothing else of the store.

``bridge.store.Store`` is the SQLite backend (one writer thread with group commit, a pool of
read-only readers); another backend implements these protocols beside it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from bridge.core.checks import CheckResult
from bridge.core.heartbeats import Seen
from bridge.core.insights import Facts, Rollup
from bridge.core.postmortem import IndexEntry, Version
from bridge.core.reconcile import AmView
from bridge.core.similar import Candidate
from bridge.store.actions import ActionAnswer, ActionRequest, Idempotency
from bridge.store.backup import BackupResult, IntegrityResult
from bridge.store.chat import ChannelIncident
from bridge.store.coordination import Lease, Replica
from bridge.store.declared import DeclareRequest, LinkRequest, MergeRequest
from bridge.store.errors import (
    BackupError,
    DestinationExists,
    QueryError,
    StoreError,
    StoreUnavailable,
)
from bridge.store.escalation import EscalationFor, ReachOf
from bridge.store.followup import OpenRequest, ValidationJob
from bridge.store.ingest import IngestItem, Touched, WebhookResult
from bridge.store.messages import MessageRow
from bridge.store.metrics import Aggregates
from bridge.store.oncall import Handoff, NewOverride, StoredOverride
from bridge.store.outbox import (
    LEASE_NS,
    STATES,
    Attempt,
    Claimed,
    Context,
    OutboxRow,
    Pace,
    Stats,
)
from bridge.store.postmortem import (
    PostmortemRead,
    Publication,
    PublishRecord,
    SaveRequest,
    publication_json,
)
from bridge.store.postmortem import Recorded as Published
from bridge.store.reconcile import Applied, Candidates, TruncatedGroup
from bridge.store.reminders import FireResult, NextCommander, PolicyFor
from bridge.store.search import Backlog, Indexed, Recorded
from bridge.store.sessions import NewSession
from bridge.store.status import StatusRead

__all__ = [
    "LEASE_NS",
    "STATES",
    "ActionAnswer",
    "ActionRequest",
    "Actions",
    "Aggregates",
    "Applied",
    "Attempt",
    "Backlog",
    "BackupError",
    "BackupResult",
    "ChannelIncident",
    "Chat",
    "CheckResult",
    "Claimed",
    "Context",
    "Coordination",
    "DeclareRequest",
    "Declared",
    "DestinationExists",
    "Escalations",
    "FireResult",
    "FollowUps",
    "Handoff",
    "Idempotency",
    "Indexed",
    "Ingest",
    "IngestItem",
    "IntegrityResult",
    "Lease",
    "LinkRequest",
    "MergeRequest",
    "MessageRow",
    "Messages",
    "Metrics",
    "NewOverride",
    "NewSession",
    "OnCall",
    "OpenRequest",
    "Outbox",
    "OutboxRow",
    "Pace",
    "PostmortemRead",
    "Postmortems",
    "Publication",
    "PublishRecord",
    "Published",
    "Queries",
    "QueryError",
    "Reconcile",
    "Recorded",
    "Reminders",
    "Replica",
    "SaveRequest",
    "Search",
    "Seen",
    "Sessions",
    "Stats",
    "StatusRead",
    "StoreError",
    "StoreInterface",
    "StoreUnavailable",
    "StoredOverride",
    "Touched",
    "TruncatedGroup",
    "ValidationJob",
    "WebhookResult",
    "publication_json",
]


class Ingest(Protocol):
    def apply_webhooks(self, item: IngestItem) -> Awaitable[WebhookResult]:
        """One accepted webhook, written with those queued at the same moment (one commit).
        A plain function returning the awaitable, not a coroutine: every webhook awaits it, and
        each coroutine layer between the request and the commit costs a resume."""
        ...


class Actions(Protocol):
    async def apply_action(self, request: ActionRequest) -> ActionAnswer:
        """A person's command in one transaction (the kept answer for a known key)."""
        ...


class Escalations(Protocol):
    async def due_incidents(self, now: int, *, policy: EscalationFor) -> list[int]:
        """The triggered incidents with an escalation step due and not sent (a read)."""
        ...

    async def fire_due(
        self,
        now: int,
        *,
        policy: EscalationFor,
        reach: ReachOf,
        incident_ids: Collection[int] | None = None,
    ) -> FireResult:
        """Send the escalation steps due, each once per (incident, level, repetition, due
        time), in one transaction."""
        ...


class Reminders(Protocol):
    async def due_incidents(self, now: int, *, policy: PolicyFor) -> list[int]:
        """The incidents with a reminder or escalation due and not sent (a read)."""
        ...

    async def fire_due(
        self,
        now: int,
        *,
        policy: PolicyFor,
        next_commander: NextCommander | None = None,
        directory: Mapping[str, Mapping[str, str]] | None = None,
        incident_ids: Collection[int] | None = None,
    ) -> FireResult: ...


class FollowUps(Protocol):
    async def has_work(self, now: int) -> bool: ...
    async def open_due(self, request: OpenRequest) -> list[int]: ...
    async def due_validations(self, now: int) -> list[ValidationJob]: ...
    async def next_validation_at(self, now: int) -> int | None: ...
    async def record_validation(
        self, job: ValidationJob, checks: Sequence[CheckResult], now: int
    ) -> tuple[range, int]: ...
    async def incident_followup(self, incident_id: int) -> tuple[bool, dict[str, Any] | None]:
        """Whether the incident exists, and its follow-up's view (None before it opens)."""
        ...


class Queries(Protocol):
    async def list_incidents(
        self,
        *,
        statuses: Sequence[str] = ...,
        severities: Sequence[str] = ...,
        teams: Sequence[str] = ...,
        routes: Sequence[str] = ...,
        services: Sequence[str] = ...,
        since: int | None = ...,
        until: int | None = ...,
        before: int | None = ...,
        limit: int = ...,
    ) -> list[dict[str, Any]]:
        """Newest first, each filter one of its values (none: any); keyset pages below
        ``before``."""
        ...

    async def get_incident(self, incident_id: int) -> dict[str, Any] | None: ...
    async def incident_page(
        self, incident_id: int
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[OutboxRow]]:
        """The incident, its follow-up's view and its notifications, in one read (a page)."""
        ...

    async def incident_summary(self, incident_id: int) -> dict[str, Any] | None: ...
    async def timeline_since(self, incident_id: int, after: int) -> list[dict[str, Any]]: ...
    async def last_change(self, incident_id: int) -> tuple[int, str] | None: ...
    async def activity(self) -> tuple[int, int]:
        """The newest webhook's and timeline entry's ids: they move when the service is used."""
        ...

    async def ready_check(self) -> None: ...
    async def prune_webhook_bodies(self, older_than: int) -> int: ...


class Outbox(Protocol):
    """The outbox, worked by one or several replicas (``store/outbox.py``: claims with a
    lease, pauses and pacing kept in the database)."""

    async def next_due_at(self, *, after: int, replica: str = "") -> int | None: ...
    async def due(
        self, *, now: int, limit: int, per_target: int, replica: str = ""
    ) -> list[OutboxRow]: ...
    async def claim_groups(
        self,
        leader_ids: Sequence[int],
        max_group: int,
        *,
        replica: str = "",
        now: int | None = None,
        lease_ns: int = LEASE_NS,
        paces: Sequence[Pace] = (),
        pace_now: int | None = None,
    ) -> Claimed: ...
    async def renew(self, replica: str, leader_ids: Sequence[int], *, until: int) -> None: ...
    async def release(self, replica: str, leader_ids: Sequence[int]) -> None: ...
    async def paused_targets(self, *, now: int) -> dict[str, int]: ...
    async def contexts(
        self, groups: Sequence[list[OutboxRow]], *, max_alerts: int
    ) -> dict[int, Context]: ...
    def record(self, attempt: Attempt) -> Awaitable[None]:
        """An attempt's outcome; outcomes recorded together share one write and one commit."""
        ...

    async def list_rows(
        self, *, state: str | None, before: int | None, limit: int
    ) -> list[OutboxRow]: ...
    async def retry(self, row_id: int, *, now: int) -> bool: ...
    async def get_row(self, row_id: int) -> OutboxRow | None: ...


class Metrics(Protocol):
    async def scrape(
        self, teams: Collection[str]
    ) -> tuple[dict[tuple[str, str], int], Stats, Aggregates]:
        """Everything a scrape reads (open incidents, the outbox, the aggregates), one read."""
        ...


class Search(Protocol):
    async def search(self, text: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """Raises ``QueryError`` when what was typed cannot be searched for."""
        ...

    async def backlog(self) -> Backlog: ...
    async def index_pending(self) -> Indexed: ...
    async def pending_similar(self, limit: int) -> tuple[list[int], int]: ...
    async def look_up_similar(self, ids: Sequence[int]) -> list[tuple[int, list[Candidate]]]: ...
    async def record_similar(
        self,
        found: Sequence[tuple[int, Sequence[Candidate]]],
        *,
        upto: int,
        now: int,
        url: Callable[[int], str] | None = None,
    ) -> Recorded: ...


class Postmortems(Protocol):
    async def read(self, incident_id: int, version: int | None = None) -> PostmortemRead | None: ...
    async def save_version(self, request: SaveRequest) -> ActionAnswer: ...
    async def history(self, incident_id: int) -> tuple[list[Version], list[Publication]] | None:
        """The versions and the publications, in one read; None when there is no incident."""
        ...

    async def versions(self, incident_id: int) -> list[Version] | None:
        """The versions, in one read; None when there is no incident."""
        ...

    async def published_markdown(self, incident_id: int) -> str | None: ...
    async def published_index(self) -> list[IndexEntry]: ...
    async def previous_path(self, incident_id: int) -> str: ...
    async def list_publications(self, incident_id: int) -> list[Publication]: ...
    async def record_publication(self, record: PublishRecord) -> Published | None: ...


class Reconcile(Protocol):
    async def candidates(self, receivers: Collection[str]) -> Candidates: ...
    async def apply_view(
        self,
        *,
        incident_ids: Sequence[int],
        view: AmView,
        now: int,
        min_age_ns: int = 0,
        gone_before: Collection[tuple[int, str]] | None = None,
    ) -> Applied: ...


class Chat(Protocol):
    async def incident_of_channel(self, channel: str) -> ChannelIncident | None: ...


class Sessions(Protocol):
    async def start(self, new: NewSession) -> None:
        """A new session; the one it replaces ends with it."""
        ...

    async def end(self, *, id_hash: str, now: int, why: str) -> bool: ...
    async def end_of(self, *, fingerprints: Collection[str], now: int, why: str) -> int:
        """End every live session made with one of these tokens; how many."""
        ...

    async def is_live(self, *, id_hash: str, now: int) -> bool: ...


class OnCall(Protocol):
    """On-call overrides made at run time (``store/oncall.py``)."""

    async def add_override(self, new: NewOverride) -> tuple[StoredOverride, bool]:
        """The row and True; or the row of an earlier request with its key and False."""
        ...

    async def end_override(
        self, *, override_id: int, now: int, by: str
    ) -> StoredOverride | None: ...
    async def list_overrides(
        self, *, rotation: str | None = None, after: int = 0
    ) -> list[StoredOverride]: ...
    async def record_handoff(
        self,
        *,
        rotation: str,
        at: int,
        giver: str,
        taker: str,
        routes: Collection[str],
        now: int,
        targets: Collection[str] = (),
        people: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Handoff:
        """Announce a hand-off once: the inherited open incidents' timeline entries, and a
        channel message to ``targets`` (the rotation's ``handoff_to``)."""
        ...


class InsightsReads(Protocol):
    """The facts the insights aggregate (``store/insights.py``, docs/insights.md)."""

    async def read(self, *, until: int, span: int, labels: Sequence[tuple[str, str]] = ()) -> Facts:
        """Incidents of [until - span, until) and of the period before, people's pages and
        acknowledgements, open action items; drills left out."""
        ...

    async def read_rollup(
        self, *, until: int, span: int, required: Callable[[str, str], bool]
    ) -> Rollup:
        """The same as ``read`` (without labels) summed per day and group by the write path:
        whole days from the kept sums, the periods' partial days incident by incident;
        ``required(route, severity)``: whether a postmortem is required."""
        ...

    async def refresh(self, limit: int | None = None) -> int:
        """Bring the kept aggregates up to every write committed so far (the incidents the
        write path marked), in one write transaction; at most ``limit`` incidents when given
        (the rest stay marked); how many were refreshed. Run before ``read_rollup`` so that
        its answer is never behind."""
        ...


class Heartbeats(Protocol):
    """The dead man's switch (``store/heartbeats.py``): first sight, last beat, the episode
    raised, per heartbeat."""

    async def register(self, *, names: Collection[str], now: int) -> list[Seen]:
        """A row for each of ``names`` not seen before (first seen ``now``); the rows after."""
        ...

    async def beat(self, *, names: Collection[str], at: int) -> None: ...
    async def read(self, *, names: Collection[str] | None = None) -> list[Seen]: ...
    async def mark(
        self, *, name: str, late_since: int | None, key: str | None = None, now: int = 0
    ) -> bool:
        """The episode raised or cleared; raised with the incident's ``key``, its source kept
        as ``heartbeat``."""
        ...


class Status(Protocol):
    """The public status page (``store/status.py``): public updates and the incidents that
    decide the components' states, in one read."""

    async def read(self, *, limit: int) -> StatusRead: ...


class Drills(Protocol):
    """Drills (``store/drills.py``): a drill's incident found by its name, its report's facts,
    a scheduled drill's slot claimed once."""

    async def find(self, name: str) -> int | None: ...
    async def report_facts(self, incident_id: int) -> dict[str, Any] | None:
        """None: no such incident, or not a drill."""
        ...

    async def claim_run(self, route: str, slot: int, kind: str, now: int) -> bool: ...
    async def claimed_runs(self, route: str) -> list[tuple[int, str]]: ...
    async def announce(
        self, route: str, slot: int, now: int, data: Mapping[str, Any], targets: Collection[str]
    ) -> bool:
        """Claim a scheduled drill's announcement and write its channel message to
        ``targets`` in one transaction; False once it was claimed."""
        ...


class Messages(Protocol):
    """Channel messages, tied to no incident (``store/messages.py``): sent by the outbox
    worker through the same targets and retry schedule, claimed with a lease."""

    async def due(self, *, now: int, limit: int, replica: str = "") -> list[MessageRow]: ...
    async def next_due_at(self, *, after: int, replica: str = "") -> int | None: ...
    async def claim(
        self, ids: Sequence[int], *, replica: str, now: int, lease_ns: int
    ) -> list[MessageRow]: ...
    async def renew(self, replica: str, ids: Sequence[int], *, until: int) -> None: ...
    async def release(self, replica: str, ids: Sequence[int]) -> None: ...
    async def list_rows(
        self, *, state: str | None, before: int | None, limit: int
    ) -> list[MessageRow]: ...
    async def get_row(self, row_id: int) -> MessageRow | None: ...
    async def retry(self, row_id: int, *, now: int) -> bool: ...


class Declared(Protocol):
    """Incidents people start (``store/declared.py``): declared, a group linked in, merged.
    Each is one transaction with its entries, outbox rows and Idempotency-Key's answer."""

    async def declare(self, request: DeclareRequest) -> ActionAnswer: ...
    async def link(self, request: LinkRequest) -> ActionAnswer: ...
    async def merge(self, request: MergeRequest) -> ActionAnswer: ...


class Coordination(Protocol):
    """Replicas on one database (``store/coordination.py``): leases, the replicas seen, the
    secrets they share. Every method but ``lease`` and ``replicas`` is a write."""

    async def take_lease(self, *, name: str, holder: str, now: int, until: int) -> Lease:
        """Take or renew ``name`` when it is free, expired or ``holder``'s already; the lease
        after (its ``holder`` says who won)."""
        ...

    async def lease(self, *, name: str) -> Lease | None: ...
    async def release_lease(self, *, name: str, holder: str) -> bool: ...
    async def heartbeat(
        self,
        *,
        replica: str,
        rules_hash: str,
        started_at: int,
        now: int,
        live_after: int,
        prune_before: int,
    ) -> list[Replica]:
        """This replica seen now; the long-gone pruned; the live ones (this one too)."""
        ...

    async def replicas(self, *, live_after: int) -> list[Replica]: ...
    async def leave(self, *, replica: str) -> None: ...
    async def shared_secret(self, *, name: str, candidate: str, now: int) -> str:
        """``name``'s value for every replica: ``candidate`` when first, else the first's."""
        ...


class StoreInterface(Protocol):
    """The database as the service uses it: one part per concern, and its life."""

    @property
    def ingest(self) -> Ingest: ...
    @property
    def actions(self) -> Actions: ...
    @property
    def reminders(self) -> Reminders: ...
    @property
    def escalations(self) -> Escalations: ...
    @property
    def followups(self) -> FollowUps: ...
    @property
    def queries(self) -> Queries: ...
    @property
    def outbox(self) -> Outbox: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def search(self) -> Search: ...
    @property
    def postmortems(self) -> Postmortems: ...
    @property
    def reconcile(self) -> Reconcile: ...
    @property
    def chat(self) -> Chat: ...
    @property
    def sessions(self) -> Sessions: ...
    @property
    def coordination(self) -> Coordination: ...
    @property
    def declared(self) -> Declared: ...
    @property
    def drills(self) -> Drills: ...
    @property
    def heartbeats(self) -> Heartbeats: ...
    @property
    def oncall(self) -> OnCall: ...
    @property
    def messages(self) -> Messages: ...
    @property
    def insights(self) -> InsightsReads: ...
    @property
    def status(self) -> Status: ...
    @property
    def fault(self) -> str | None:
        """What made the database fail while serving (a damaged file), or None."""
        ...

    def open(self) -> list[str]:
        """Lock, check, migrate, start; the migrations run. Raises ``StoreError``."""
        ...

    def close(self) -> None:
        """Finish queued writes (they commit), then let the database go."""
        ...
