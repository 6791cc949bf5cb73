"""The SQLite backend's parts of ``interface.StoreInterface``: each method runs one of the SQL
functions of its concern's module, a read on the read pool or a write in the writer thread
(whose batched writes share one call and one commit). ``Store`` holds one of each."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from bridge.core.followup import CheckOutcome
from bridge.core.postmortem import IndexEntry, Version
from bridge.core.reconcile import AmView
from bridge.core.similar import Candidate
from bridge.store import chat as chat_sql
from bridge.store import followup as followup_sql
from bridge.store import ingest as ingest_sql
from bridge.store import metrics as metrics_sql
from bridge.store import outbox as outbox_sql
from bridge.store import postmortem as postmortem_sql
from bridge.store import queries as queries_sql
from bridge.store import reconcile as reconcile_sql
from bridge.store import reminders as reminders_sql
from bridge.store import search as search_sql
from bridge.store import sessions as sessions_sql
from bridge.store.actions import ActionAnswer, ActionRequest, apply_action
from bridge.store.chat import ChannelIncident
from bridge.store.followup import OpenRequest, ValidationJob
from bridge.store.ingest import CarefulMode, IngestItem, WebhookResult
from bridge.store.metrics import Aggregates
from bridge.store.outbox import Attempt, Context, OutboxRow, Stats
from bridge.store.postmortem import PostmortemRead, Publication, PublishRecord, SaveRequest
from bridge.store.postmortem import Recorded as Published
from bridge.store.reconcile import Applied, Candidates
from bridge.store.reminders import FireResult, NextCommander, PolicyFor
from bridge.store.search import Backlog, Indexed, Recorded
from bridge.store.writer import Batched

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]


class Runner(Protocol):
    """What the parts need of ``Store``: its writer and its read pool."""

    def write(self, job: Job[T] | Batched[Any, T]) -> Awaitable[T]: ...
    async def read(self, fn: Job[T]) -> T: ...


class _Part:
    def __init__(self, runner: Runner) -> None:
        self._run = runner


class SqliteIngest(_Part):
    def __init__(self, runner: Runner, careful: CarefulMode) -> None:
        super().__init__(runner)
        # One function object for the store's life: the writer hands over consecutive batched
        # jobs of the same function together (group commit of the webhooks).
        self._many = functools.partial(ingest_sql.apply_webhooks, careful=careful)

    def apply_webhooks(self, item: IngestItem) -> Awaitable[WebhookResult]:
        return self._run.write(Batched(self._many, item))


class SqliteActions(_Part):
    async def apply_action(self, request: ActionRequest) -> ActionAnswer:
        return await self._run.write(functools.partial(apply_action, request=request))


class SqliteReminders(_Part):
    async def fire_due(
        self,
        now: int,
        *,
        policy: PolicyFor,
        next_commander: NextCommander | None = None,
        directory: Mapping[str, Mapping[str, str]] | None = None,
    ) -> FireResult:
        return await self._run.write(
            functools.partial(
                reminders_sql.fire_due,
                now=now,
                policy=policy,
                next_commander=next_commander,
                directory=directory,
            )
        )


class SqliteFollowUps(_Part):
    async def has_work(self, now: int) -> bool:
        return await self._run.read(functools.partial(followup_sql.has_work, now=now))

    async def open_due(self, request: OpenRequest) -> list[int]:
        return await self._run.write(functools.partial(followup_sql.open_due, request=request))

    async def due_validations(self, now: int) -> list[ValidationJob]:
        return await self._run.read(functools.partial(followup_sql.due_validations, now=now))

    async def next_validation_at(self, now: int) -> int | None:
        return await self._run.read(functools.partial(followup_sql.next_validation_at, now=now))

    async def record_validation(
        self, job: ValidationJob, checks: Sequence[CheckOutcome], now: int
    ) -> tuple[range, int]:
        return await self._run.write(
            functools.partial(followup_sql.record_validation, job=job, checks=checks, now=now)
        )

    async def incident_followup(self, incident_id: int) -> tuple[bool, dict[str, Any] | None]:
        return await self._run.read(
            functools.partial(followup_sql.incident_followup, incident_id=incident_id)
        )


def _incident_page(
    conn: sqlite3.Connection, incident_id: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[OutboxRow]]:
    found = queries_sql.get_incident(conn, incident_id)
    if found is None:
        return None, None, []
    return (
        found,
        followup_sql.followup_view(conn, incident_id),
        outbox_sql.incident_rows(conn, incident_id),
    )


class SqliteQueries(_Part):
    async def list_incidents(
        self,
        *,
        statuses: Sequence[str] = (),
        severities: Sequence[str] = (),
        teams: Sequence[str] = (),
        routes: Sequence[str] = (),
        services: Sequence[str] = (),
        since: int | None = None,
        until: int | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        return await self._run.read(
            functools.partial(
                queries_sql.list_incidents,
                statuses=statuses,
                severities=severities,
                teams=teams,
                routes=routes,
                services=services,
                since=since,
                until=until,
                before=before,
                limit=limit,
            )
        )

    async def get_incident(self, incident_id: int) -> dict[str, Any] | None:
        return await self._run.read(
            functools.partial(queries_sql.get_incident, incident_id=incident_id)
        )

    async def incident_page(
        self, incident_id: int
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[OutboxRow]]:
        return await self._run.read(functools.partial(_incident_page, incident_id=incident_id))

    async def incident_summary(self, incident_id: int) -> dict[str, Any] | None:
        return await self._run.read(
            functools.partial(queries_sql.incident_summary, incident_id=incident_id)
        )

    async def timeline_since(self, incident_id: int, after: int) -> list[dict[str, Any]]:
        return await self._run.read(
            functools.partial(queries_sql.timeline_since, incident_id=incident_id, after=after)
        )

    async def last_change(self, incident_id: int) -> tuple[int, str] | None:
        return await self._run.read(
            functools.partial(queries_sql.last_change, incident_id=incident_id)
        )

    async def activity(self) -> tuple[int, int]:
        return await self._run.read(queries_sql.activity)

    async def ready_check(self) -> None:
        await self._run.read(queries_sql.ready_check)

    async def prune_webhook_bodies(self, older_than: int) -> int:
        return await self._run.write(
            functools.partial(queries_sql.prune_webhook_bodies, older_than=older_than)
        )


class SqliteOutbox(_Part):
    async def next_due_at(self, *, after: int) -> int | None:
        return await self._run.read(functools.partial(outbox_sql.next_due_at, after=after))

    async def due(self, *, now: int, limit: int, per_target: int) -> list[OutboxRow]:
        return await self._run.read(
            functools.partial(outbox_sql.due, now=now, limit=limit, per_target=per_target)
        )

    async def claim_groups(
        self, leader_ids: Sequence[int], max_group: int
    ) -> dict[int, list[OutboxRow]]:
        return await self._run.write(
            functools.partial(outbox_sql.claim_groups, leader_ids=leader_ids, max_group=max_group)
        )

    async def contexts(
        self, groups: Sequence[list[OutboxRow]], *, max_alerts: int
    ) -> dict[int, Context]:
        return await self._run.read(
            functools.partial(outbox_sql.contexts, groups=groups, max_alerts=max_alerts)
        )

    def record(self, attempt: Attempt) -> Awaitable[None]:
        return self._run.write(Batched(outbox_sql.record, attempt))

    async def list_rows(
        self, *, state: str | None, before: int | None, limit: int
    ) -> list[OutboxRow]:
        return await self._run.read(
            functools.partial(outbox_sql.list_rows, state=state, before=before, limit=limit)
        )

    async def retry(self, row_id: int, *, now: int) -> bool:
        return await self._run.write(functools.partial(outbox_sql.retry, row_id=row_id, now=now))

    async def get_row(self, row_id: int) -> OutboxRow | None:
        return await self._run.read(functools.partial(outbox_sql.get_row, row_id=row_id))


def _scrape(
    conn: sqlite3.Connection, teams: Collection[str]
) -> tuple[dict[tuple[str, str], int], Stats, Aggregates]:
    return (
        queries_sql.incident_counts(conn),
        outbox_sql.stats(conn),
        metrics_sql.read(conn, teams),
    )


class SqliteMetrics(_Part):
    async def scrape(
        self, teams: Collection[str]
    ) -> tuple[dict[tuple[str, str], int], Stats, Aggregates]:
        return await self._run.read(functools.partial(_scrape, teams=teams))


class SqliteSearch(_Part):
    async def search(self, text: str, *, limit: int = 20) -> list[dict[str, Any]]:
        return await self._run.read(functools.partial(search_sql.search, text=text, limit=limit))

    async def backlog(self) -> Backlog:
        return await self._run.read(search_sql.backlog)

    async def index_pending(self) -> Indexed:
        return await self._run.write(search_sql.index_pending)

    async def pending_similar(self, limit: int) -> tuple[list[int], int]:
        return await self._run.read(functools.partial(search_sql.pending_similar, limit=limit))

    async def look_up_similar(self, ids: Sequence[int]) -> list[tuple[int, list[Candidate]]]:
        return await self._run.read(functools.partial(search_sql.look_up_similar, ids=ids))

    async def record_similar(
        self,
        found: Sequence[tuple[int, Sequence[Candidate]]],
        *,
        upto: int,
        now: int,
        url: Callable[[int], str] | None = None,
    ) -> Recorded:
        return await self._run.write(
            functools.partial(search_sql.record_similar, found=found, upto=upto, now=now, url=url)
        )


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
    async def read(self, incident_id: int, version: int | None = None) -> PostmortemRead | None:
        return await self._run.read(
            functools.partial(
                postmortem_sql.read_postmortem, incident_id=incident_id, version=version
            )
        )

    async def save_version(self, request: SaveRequest) -> ActionAnswer:
        return await self._run.write(
            functools.partial(postmortem_sql.save_version, request=request)
        )

    async def history(self, incident_id: int) -> tuple[list[Version], list[Publication]] | None:
        return await self._run.read(functools.partial(_history, incident_id=incident_id))

    async def versions(self, incident_id: int) -> list[Version] | None:
        return await self._run.read(functools.partial(_versions, incident_id=incident_id))

    async def published_markdown(self, incident_id: int) -> str | None:
        return await self._run.read(
            functools.partial(postmortem_sql.published_markdown, incident_id=incident_id)
        )

    async def published_index(self) -> list[IndexEntry]:
        return await self._run.read(postmortem_sql.published_index)

    async def previous_path(self, incident_id: int) -> str:
        return await self._run.read(
            functools.partial(postmortem_sql.previous_path, incident_id=incident_id)
        )

    async def list_publications(self, incident_id: int) -> list[Publication]:
        return await self._run.read(
            functools.partial(postmortem_sql.list_publications, incident_id=incident_id)
        )

    async def record_publication(self, record: PublishRecord) -> Published | None:
        return await self._run.write(
            functools.partial(postmortem_sql.record_publication, record=record)
        )


class SqliteReconcile(_Part):
    async def candidates(self, receivers: Collection[str]) -> Candidates:
        return await self._run.read(
            functools.partial(reconcile_sql.candidates, receivers=receivers)
        )

    async def apply_view(
        self,
        *,
        incident_ids: Sequence[int],
        view: AmView,
        now: int,
        min_age_ns: int = 0,
        gone_before: Collection[tuple[int, str]] | None = None,
    ) -> Applied:
        return await self._run.write(
            functools.partial(
                reconcile_sql.apply_view,
                incident_ids=incident_ids,
                view=view,
                now=now,
                min_age_ns=min_age_ns,
                gone_before=gone_before,
            )
        )


class SqliteChat(_Part):
    async def incident_of_channel(self, channel: str) -> ChannelIncident | None:
        return await self._run.read(
            functools.partial(chat_sql.incident_of_channel, channel=channel)
        )


class SqliteSessions(_Part):
    async def start(
        self,
        *,
        id_hash: str,
        name: str,
        scope: str,
        fingerprint: str,
        now: int,
        expires_at: int,
        replaces: str | None = None,
    ) -> None:
        await self._run.write(
            functools.partial(
                sessions_sql.start_session,
                id_hash=id_hash,
                name=name,
                scope=scope,
                fingerprint=fingerprint,
                now=now,
                expires_at=expires_at,
                replaces=replaces,
            )
        )

    async def end(self, *, id_hash: str, now: int, why: str) -> bool:
        return await self._run.write(
            functools.partial(sessions_sql.end_session, id_hash=id_hash, now=now, why=why)
        )

    async def end_of(self, *, fingerprints: Collection[str], now: int, why: str) -> int:
        return await self._run.write(
            functools.partial(
                sessions_sql.end_sessions_of, fingerprints=fingerprints, now=now, why=why
            )
        )

    async def is_live(self, *, id_hash: str, now: int) -> bool:
        return await self._run.read(
            functools.partial(sessions_sql.session_is_live, id_hash=id_hash, now=now)
        )
