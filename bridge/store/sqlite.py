"""The SQLite backend's parts of ``interface.StoreInterface``: each method runs one of the SQL
functions of its concern's module (a function of a connection, then the method's arguments),
a read on the read pool or a write in the writer thread (whose batched writes share one call
and one commit). ``Store`` holds one of each."""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from bridge.core.postmortem import Version
from bridge.store import actions as actions_sql
from bridge.store import chat as chat_sql
from bridge.store import coordination as coordination_sql
from bridge.store import declared as declared_sql
from bridge.store import drills as drills_sql
from bridge.store import escalation as escalation_sql
from bridge.store import followup as followup_sql
from bridge.store import heartbeats as heartbeats_sql
from bridge.store import ingest as ingest_sql
from bridge.store import insights as insights_sql
from bridge.store import messages as messages_sql
from bridge.store import metrics as metrics_sql
from bridge.store import oncall as oncall_sql
from bridge.store import outbox as outbox_sql
from bridge.store import postmortem as postmortem_sql
from bridge.store import queries as queries_sql
from bridge.store import reconcile as reconcile_sql
from bridge.store import reminders as reminders_sql
from bridge.store import search as search_sql
from bridge.store import sessions as sessions_sql
from bridge.store import status as status_sql
from bridge.store.ingest import CarefulMode, IngestItem, WebhookResult
from bridge.store.metrics import Aggregates
from bridge.store.outbox import Attempt, OutboxRow, Stats
from bridge.store.postmortem import Publication
from bridge.store.writer import Batched

T = TypeVar("T")
P = ParamSpec("P")
Job = Callable[[sqlite3.Connection], T]
Method = Callable[Concatenate["_Part", P], Coroutine[Any, Any, T]]


class Runner(Protocol):
    """What the parts need of ``Store``: its writer and its read pool."""

    def write(self, job: Job[T] | Batched[Any, T]) -> Awaitable[T]: ...
    async def read(self, fn: Job[T]) -> T: ...


class _Part:
    def __init__(self, runner: Runner) -> None:
        self._run = runner


def _job(
    fn: Callable[..., T], names: list[str], args: tuple[Any, ...], kwargs: Any
) -> functools.partial[T]:
    """``fn`` with a method's arguments, waiting for the connection: a ``functools.partial``
    of ``fn`` itself (what the writer and the readers, and tests watching them, are given),
    the positional arguments passed by name since the connection comes first."""
    return functools.partial(fn, **dict(zip(names, args, strict=False)), **kwargs)


def _names(fn: Callable[..., Any]) -> list[str]:
    """The names of ``fn``'s parameters after the connection."""
    return list(inspect.signature(fn).parameters)[1:]


def _reads(fn: Callable[Concatenate[sqlite3.Connection, P], T]) -> Method[P, T]:
    """A method that runs ``fn`` with its arguments on the read pool."""

    names = _names(fn)

    async def read(self: _Part, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run.read(_job(fn, names, args, kwargs))

    read.__doc__ = fn.__doc__
    return read


def _writes(fn: Callable[Concatenate[sqlite3.Connection, P], T]) -> Method[P, T]:
    """A method that runs ``fn`` with its arguments in the writer; answered after the commit."""

    names = _names(fn)

    async def write(self: _Part, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run.write(_job(fn, names, args, kwargs))

    write.__doc__ = fn.__doc__
    return write


class SqliteIngest(_Part):
    def __init__(self, runner: Runner, careful: CarefulMode) -> None:
        super().__init__(runner)
        # One function object for the store's life: the writer hands over consecutive batched
        # jobs of the same function together (group commit of the webhooks).
        self._many = functools.partial(ingest_sql.apply_webhooks, careful=careful)

    def apply_webhooks(self, item: IngestItem) -> Awaitable[WebhookResult]:
        return self._run.write(Batched(self._many, item))


class SqliteActions(_Part):
    apply_action = _writes(actions_sql.apply_action)


class SqliteReminders(_Part):
    due_incidents = _reads(reminders_sql.due_incidents)
    fire_due = _writes(reminders_sql.fire_due)


class SqliteEscalations(_Part):
    due_incidents = _reads(escalation_sql.due_incidents)
    fire_due = _writes(escalation_sql.fire_due)


class SqliteFollowUps(_Part):
    has_work = _reads(followup_sql.has_work)
    open_due = _writes(followup_sql.open_due)
    due_validations = _reads(followup_sql.due_validations)
    next_validation_at = _reads(followup_sql.next_validation_at)
    record_validation = _writes(followup_sql.record_validation)
    incident_followup = _reads(followup_sql.incident_followup)


def _incident_page(
    conn: sqlite3.Connection, incident_id: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[OutboxRow]]:
    """The incident, its follow-up's view and its notifications (a page's one read)."""
    found = queries_sql.get_incident(conn, incident_id)
    if found is None:
        return None, None, []
    return (
        found,
        followup_sql.followup_view(conn, incident_id),
        outbox_sql.incident_rows(conn, incident_id),
    )


class SqliteQueries(_Part):
    list_incidents = _reads(queries_sql.list_incidents)
    get_incident = _reads(queries_sql.get_incident)
    incident_page = _reads(_incident_page)
    incident_summary = _reads(queries_sql.incident_summary)
    timeline_since = _reads(queries_sql.timeline_since)
    last_change = _reads(queries_sql.last_change)
    activity = _reads(queries_sql.activity)
    ready_check = _reads(queries_sql.ready_check)
    prune_webhook_bodies = _writes(queries_sql.prune_webhook_bodies)


class SqliteOutbox(_Part):
    next_due_at = _reads(outbox_sql.next_due_at)
    due = _reads(outbox_sql.due)
    claim_groups = _writes(outbox_sql.claim_groups)
    renew = _writes(outbox_sql.renew)
    release = _writes(outbox_sql.release)
    paused_targets = _reads(outbox_sql.paused_targets)
    contexts = _reads(outbox_sql.contexts)
    list_rows = _reads(outbox_sql.list_rows)
    retry = _writes(outbox_sql.retry)
    get_row = _reads(outbox_sql.get_row)

    def record(self, attempt: Attempt) -> Awaitable[None]:
        return self._run.write(Batched(outbox_sql.record, attempt))


def _scrape(
    conn: sqlite3.Connection, teams: Collection[str]
) -> tuple[dict[tuple[str, str], int], Stats, Aggregates]:
    """Everything a scrape reads, in one trip to the read pool."""
    outbox, messages = outbox_sql.stats(conn), messages_sql.stats(conn)
    # the outbox's gauges count channel messages too: one place to see what waits or died
    oldest = [t for t in (outbox.oldest_pending_at, messages.oldest_pending_at) if t is not None]
    both = Stats(
        outbox.pending + messages.pending, outbox.dead + messages.dead, min(oldest, default=None)
    )
    return (queries_sql.incident_counts(conn), both, metrics_sql.read(conn, teams))


class SqliteMetrics(_Part):
    scrape = _reads(_scrape)


class SqliteSearch(_Part):
    search = _reads(search_sql.search)
    backlog = _reads(search_sql.backlog)
    index_pending = _writes(search_sql.index_pending)
    pending_similar = _reads(search_sql.pending_similar)
    look_up_similar = _reads(search_sql.look_up_similar)
    record_similar = _writes(search_sql.record_similar)


def _history(
    conn: sqlite3.Connection, incident_id: int
) -> tuple[list[Version], list[Publication]] | None:
    if queries_sql.incident_summary(conn, incident_id) is None:
        return None
    return (
        postmortem_sql.list_versions(conn, incident_id),
        postmortem_sql.list_publications(conn, incident_id),
    )


def _versions(conn: sqlite3.Connection, incident_id: int) -> list[Version] | None:
    if queries_sql.incident_summary(conn, incident_id) is None:
        return None
    return postmortem_sql.list_versions(conn, incident_id)


class SqlitePostmortems(_Part):
    read = _reads(postmortem_sql.read_postmortem)
    save_version = _writes(postmortem_sql.save_version)
    history = _reads(_history)
    versions = _reads(_versions)
    published_markdown = _reads(postmortem_sql.published_markdown)
    published_index = _reads(postmortem_sql.published_index)
    previous_path = _reads(postmortem_sql.previous_path)
    list_publications = _reads(postmortem_sql.list_publications)
    record_publication = _writes(postmortem_sql.record_publication)


class SqliteReconcile(_Part):
    candidates = _reads(reconcile_sql.candidates)
    apply_view = _writes(reconcile_sql.apply_view)


class SqliteChat(_Part):
    incident_of_channel = _reads(chat_sql.incident_of_channel)


class SqliteSessions(_Part):
    start = _writes(sessions_sql.start_session)
    end = _writes(sessions_sql.end_session)
    end_of = _writes(sessions_sql.end_sessions_of)
    is_live = _reads(sessions_sql.session_is_live)


class SqliteCoordination(_Part):
    take_lease = _writes(coordination_sql.take_lease)
    lease = _reads(coordination_sql.read_lease)
    release_lease = _writes(coordination_sql.release_lease)
    heartbeat = _writes(coordination_sql.heartbeat)
    replicas = _reads(coordination_sql.live_replicas)
    leave = _writes(coordination_sql.leave)
    shared_secret = _writes(coordination_sql.shared_secret)


class SqliteOnCall(_Part):
    add_override = _writes(oncall_sql.add_override)
    end_override = _writes(oncall_sql.end_override)
    list_overrides = _reads(oncall_sql.list_overrides)
    record_handoff = _writes(oncall_sql.record_handoff)


class SqliteHeartbeats(_Part):
    register = _writes(heartbeats_sql.register)
    beat = _writes(heartbeats_sql.beat)
    read = _reads(heartbeats_sql.read)
    mark = _writes(heartbeats_sql.mark)


class SqliteStatus(_Part):
    read = _reads(status_sql.read_status)


class SqliteDrills(_Part):
    find = _reads(drills_sql.find)
    report_facts = _reads(drills_sql.report_facts)
    claim_run = _writes(drills_sql.claim_run)
    claimed_runs = _reads(drills_sql.claimed_runs)
    announce = _writes(drills_sql.announce)


class SqliteMessages(_Part):
    due = _reads(messages_sql.due)
    next_due_at = _reads(messages_sql.next_due_at)
    claim = _writes(messages_sql.claim)
    renew = _writes(messages_sql.renew)
    release = _writes(messages_sql.release)
    list_rows = _reads(messages_sql.list_rows)
    get_row = _reads(messages_sql.get_row)
    retry = _writes(messages_sql.retry)


class SqliteDeclared(_Part):
    declare = _writes(declared_sql.declare)
    link = _writes(declared_sql.link)
    merge = _writes(declared_sql.merge_incidents)


class SqliteInsights(_Part):
    read = _reads(insights_sql.read)
    read_rollup = _reads(insights_sql.read_rollup)
    refresh = _writes(insights_sql.refresh)


class Parts:
    """The interface's parts, each over a runner's writer and read pool: the two backends'
    stores (``Store``, ``postgres.PgStore``) are both made of these, over the same SQL."""

    def attach_parts(self, runner: Runner, careful: CarefulMode) -> None:
        self.ingest = SqliteIngest(runner, careful)
        self.actions = SqliteActions(runner)
        self.reminders = SqliteReminders(runner)
        self.escalations = SqliteEscalations(runner)
        self.followups = SqliteFollowUps(runner)
        self.queries = SqliteQueries(runner)
        self.outbox = SqliteOutbox(runner)
        self.metrics = SqliteMetrics(runner)
        self.search = SqliteSearch(runner)
        self.postmortems = SqlitePostmortems(runner)
        self.reconcile = SqliteReconcile(runner)
        self.chat = SqliteChat(runner)
        self.sessions = SqliteSessions(runner)
        self.coordination = SqliteCoordination(runner)
        self.declared = SqliteDeclared(runner)
        self.drills = SqliteDrills(runner)
        self.heartbeats = SqliteHeartbeats(runner)
        self.oncall = SqliteOnCall(runner)
        self.messages = SqliteMessages(runner)
        self.insights = SqliteInsights(runner)
        self.status = SqliteStatus(runner)
