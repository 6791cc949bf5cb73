"""The running service as its handlers and its lifecycle share it: settings, store, metrics,
the clock, the active rules (``Runtime``) and the outbox worker, and the one way to swap the
rules while it runs (``reload``), used by SIGHUP, ``POST /-/reload`` and ``--watch-rules``; the
scheduler of reminders and escalations (``fire_reminders``, ``ReminderScheduler``)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from aiohttp import web

from bridge.config import (
    ApiToken,
    ConfigError,
    Settings,
    api_token_path,
    is_loopback,
    reread_tokens,
)
from bridge.core.actions import Command
from bridge.core.followup import CheckOutcome, FollowUpCommand
from bridge.core.secrets import Secret
from bridge.core.timeutil import Clock, format_ns
from bridge.delivery.worker import OutboxWorker
from bridge.metrics import Metrics
from bridge.private_files import UnsafeFile, read_private, write_private
from bridge.runtime import RulesError, Runtime, builtin_runtime, rules_runtime
from bridge.store.interface import (
    ActionAnswer,
    ActionRequest,
    FireResult,
    Idempotency,
    OpenRequest,
    StoreError,
    StoreInterface,
    StoreUnavailable,
    ValidationJob,
)
from bridge.targets.base import TargetDeps

log = logging.getLogger("bridge.service")


@dataclass(frozen=True)
class ApiAccess:
    """Who may use the API. Writes (anything that changes state) need ``write``; reads need a
    token too unless ``open_reads``. Health, readiness and /metrics are always open."""

    write: Secret | None = None  # None: nothing can be written through the API
    read: tuple[Secret, ...] = ()
    open_reads: bool = True
    token_file: Path | None = None  # where a generated write token is kept
    named: tuple[ApiToken, ...] = ()  # --api-tokens-file


def token_fingerprint(secret: Secret | str) -> str:
    """What a session keeps of the token it was made with: enough to tell that the token was
    removed or changed, nothing to find it back by."""
    raw = secret.reveal() if isinstance(secret, Secret) else secret
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def access_fingerprints(access: ApiAccess) -> set[str]:
    secrets_ = [access.write, *access.read, *(n.secret for n in access.named)]
    return {token_fingerprint(s) for s in secrets_ if s is not None}


def api_access(settings: Settings, generated: Secret | None = None) -> ApiAccess:
    """Reads are open only on a loopback listener with no token configured, or when the
    operator says so (``--insecure-open-read-api``)."""
    configured = (
        settings.api_token is not None
        or settings.api_read_token is not None
        or bool(settings.api_tokens)
    )
    open_reads = settings.insecure_open_read_api or (is_loopback(settings.host) and not configured)
    read = (settings.api_read_token,) if settings.api_read_token is not None else ()
    write = settings.api_token or generated
    return ApiAccess(
        write=write,
        read=read,
        open_reads=open_reads,
        token_file=api_token_path(settings.db) if settings.api_token is None else None,
        named=settings.api_tokens,
    )


def ensure_api_token(settings: Settings) -> Secret | None:
    """The generated write token when none is configured: read from ``<db>.api-token``, or
    made (32 random bytes) and written there readable by its owner only."""
    if settings.api_token is not None:
        return None
    path = api_token_path(settings.db)
    # Trusted only as the service's own private file: a token planted by another user, or a
    # symbolic link to a file anyone can read, would be a write token others know.
    try:
        text = read_private(path) or ""
        if not text:
            text = secrets.token_urlsafe(32)
            write_private(path, text)
            log.info("API token generated in %s (readable by this user only)", path)
    except UnsafeFile as exc:  # planted after the start-up check: one line, not a traceback
        raise StoreError(str(exc)) from None
    return Secret(text)


@dataclass
class AppState:
    KEY: ClassVar[web.AppKey[AppState]]

    settings: Settings
    store: StoreInterface
    metrics: Metrics
    runtime: Runtime  # swapped whole on reload; a handler reads it once per request
    clock: Clock = field(default=time.time_ns)
    worker: OutboxWorker | None = None
    # what the targets of a reloaded runtime get injected (HTTP session, renderer)
    deps: TargetDeps = field(default_factory=TargetDeps)
    api: ApiAccess = field(default_factory=ApiAccess)
    # the receiver's budget of webhook bodies held at once (http/receiver.BodyBudget; this
    # layer, below http, holds it without its type), made at the first webhook
    bodies: object = field(default=None, init=False)
    # set by a change that calls for the scheduler before its next tick (a mitigated incident's
    # follow-up opens at once); the scheduler waits on it between ticks
    scheduler_due: asyncio.Event = field(default_factory=asyncio.Event)
    # the reconciler's line for /-/ready (with --alertmanager-url; bridge/reconciler.py)
    reconcile_detail: Callable[[], str] | None = None

    def wake_scheduler(self) -> None:
        self.scheduler_due.set()


AppState.KEY = web.AppKey("state", AppState)


def load_runtime(settings: Settings, deps: TargetDeps) -> Runtime:
    """The rules named in the settings, or the built-in policy when there are none."""
    if not settings.rules:
        return builtin_runtime(settings.reopen_window_s, deps)
    return rules_runtime(settings.rules, deps)


# How long loading new rules may take before the reload gives up (the old rules stay). The
# loader bounds each file's size, nodes and nesting (bridge/rules/source.py), so real rules load
# in well under a second; this is the last guard, for SIGHUP, /-/reload and --watch-rules.
RELOAD_TIMEOUT_S = 30.0


async def reload(state: AppState) -> list[str]:
    """Load the rules aside and swap them in whole; on errors keep the old ones. Returns errors.

    Never raises: a reload runs from SIGHUP (a task nobody awaits), /-/reload (a 422) and the
    file watcher, and a bad file must leave the service as it was, the metric at 0."""
    token_errors = await reload_tokens(state)  # first: a removed token stops working at once
    loading = asyncio.to_thread(load_runtime, state.settings, state.deps)
    try:
        runtime = await asyncio.wait_for(loading, RELOAD_TIMEOUT_S)
    except RulesError as exc:
        errors = list(exc.errors)
    except TimeoutError:
        # The loading thread cannot be stopped; it ends on its own and its result is dropped.
        errors = [f"{_rule_paths(state)}: loading took longer than {RELOAD_TIMEOUT_S:g} s"]
    except Exception as exc:  # a loader bug (RecursionError, MemoryError...): not the service's end
        log.error("rules reload: the loader failed", exc_info=exc)
        # The type only: an exception's message may quote the file.
        errors = [f"{_rule_paths(state)}: the rules could not be loaded ({type(exc).__name__})"]
    else:
        activate(state, runtime)
        log.info(
            "rules reloaded: %s (%s)",
            ", ".join(runtime.files) or "built-in",
            runtime.config_hash[:12],
        )
        return token_errors
    state.metrics.rules_reload_ok.set(0)
    for line in errors:
        log.error("rules reload failed: %s", line)
    log.error(
        "rules reload failed: keeping the rules loaded before (%s)",
        state.runtime.config_hash[:12],
    )
    return token_errors + errors


async def reload_tokens(state: AppState) -> list[str]:
    """Read the API tokens again from their files (``--api-token-file``,
    ``--api-read-token-file``, ``--api-tokens-file``) and use them from the next request: a
    token removed or changed there no longer reads or writes through the API, and the web
    sessions made with it end, in the database too (every process on it, and after a restart).
    A file that cannot be read keeps the tokens as they were; its error is returned."""
    if not state.settings.token_files:
        return []
    try:
        settings = await asyncio.to_thread(reread_tokens, state.settings)
    except ConfigError as exc:
        log.error("API tokens reload failed: %s; keeping the tokens loaded before", exc)
        return [str(exc)]
    generated = state.api.write if state.settings.api_token is None else None
    before = access_fingerprints(state.api)
    state.settings = settings
    state.api = api_access(settings, generated)
    gone = before - access_fingerprints(state.api)
    if not gone:
        return []
    try:
        ended = await state.store.sessions.end_of(
            fingerprints=sorted(gone), now=time.time_ns(), why="token removed"
        )
    except StoreUnavailable as exc:
        # This process refuses those sessions anyway (their token is not configured any more).
        log.error(
            "API tokens reloaded, but their sessions could not be ended in the store: %s", exc
        )
        return []
    log.info(
        "API tokens reloaded: %d removed or changed; %d web session(s) made with them ended",
        len(gone),
        ended,
    )
    return []


def _rule_paths(state: AppState) -> str:
    return ", ".join(str(p) for p in state.settings.rules) or "<rules>"


def activate(state: AppState, runtime: Runtime) -> None:
    """Make ``runtime`` the active one: for the next webhook, the worker and the metrics."""
    state.runtime = runtime
    if state.worker is not None:
        state.worker.set_targets(runtime.targets)
    state.metrics.rules_reload_ok.set(1)
    state.metrics.rules_reload_time.set(time.time())
    state.metrics.rules_hash.set(int(runtime.config_hash[:12] or "0", 16))


async def act(
    state: AppState,
    incident_id: int,
    command: Command | FollowUpCommand,
    *,
    idempotency: Idempotency | None = None,
) -> ActionAnswer:
    """A person's command on an incident: the one way in for the API, the CLI (through the
    API), the web page and chat commands. One transaction with its timeline events, its outbox
    rows and the answer kept for its Idempotency-Key; the outbox is woken after the commit."""
    request = ActionRequest(
        incident_id=incident_id,
        command=command,
        now=state.clock(),
        idempotency=idempotency,
        directory=state.runtime.people,
        postmortem_policy=state.runtime.postmortem_policy,
        # a silence on acknowledge needs an Alertmanager to make it in
        silence_on_ack=state.runtime.silence_on_ack if state.settings.alertmanager_urls else None,
    )
    answer = await state.store.actions.apply_action(request)
    if answer.notifications and state.worker is not None:
        state.worker.notify()
    incident = answer.body.get("incident") if answer.changed else None
    if isinstance(incident, dict) and incident.get("status") == "mitigated":
        state.wake_scheduler()  # its follow-up opens now, not at the next tick
    return answer


# Seconds between two looks for due reminders and escalations.
REMIND_EVERY_S = 15.0


async def fire_reminders(state: AppState) -> FireResult:
    """One tick of the scheduler: send the reminders and escalations due now under the active
    rules (read now, so a change of the rules applies to the incidents already open), in one
    transaction; the outbox is woken after the commit when it has rows to send."""
    runtime = state.runtime
    result = await state.store.reminders.fire_due(
        state.clock(),
        policy=runtime.reminder_policy,
        next_commander=runtime.next_commander,
        directory=runtime.people,
    )
    if result.notifications and state.worker is not None:
        state.worker.notify()
    for fired in result.fired:
        log.info(
            "incident %d: %s sent (due %s)",
            fired.incident_id,
            fired.kind,
            format_ns(fired.due_at),
        )
    return result


class BackgroundLoop:
    """A task the service runs from start to stop (the scheduler, the indexer, the
    reconciler): ``start`` creates it, ``stop`` cancels it and waits for it to end."""

    NAME = "loop"
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.NAME)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        raise NotImplementedError


class ReminderScheduler(BackgroundLoop):
    """Runs ``fire_reminders`` every ``every_s`` seconds while the service runs, the first time
    at start (what fell due while it was stopped goes out then). A store error is logged and
    the next tick tries again: the service does not stop for it."""

    NAME = "reminders"

    def __init__(self, state: AppState, every_s: float = REMIND_EVERY_S) -> None:
        self.state = state
        self.every_s = every_s

    async def _run(self) -> None:
        while True:
            for name, step in (("reminders", fire_reminders), ("follow-up", advance_followups)):
                try:
                    await step(self.state)
                except StoreUnavailable as exc:
                    log.warning("%s: store unavailable: %s; trying again next tick", name, exc)
                except Exception:
                    log.exception("%s: unexpected error; trying again next tick", name)
            pause = await self._pause()  # first: a stop while it reads leaves no coroutine behind
            due = self.state.scheduler_due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(due.wait(), pause)
            due.clear()

    async def _pause(self) -> float:
        """Seconds to the next tick: ``every_s``, or less when a stabilization window ends
        sooner (its validation runs then)."""
        try:
            now = self.state.clock()
            at = await self.state.store.followups.next_validation_at(now)
        except StoreUnavailable:
            return self.every_s
        if at is None:
            return self.every_s
        return min(self.every_s, max(0.05, (at - now) / 1e9))


async def run_checks(state: AppState, job: ValidationJob) -> list[CheckOutcome]:
    """The job's PromQL checks against the configured Prometheus, at the window's end: the
    service's settings and HTTP session given to ``promql.run_checks`` (through
    ``check_outcomes``), which runs them; the validation's records come back."""
    if not job.checks:
        return []
    from bridge import promql  # loaded only when a route has checks

    return await promql.check_outcomes(
        state.deps.session,
        state.settings.prometheus_url,
        state.settings.prometheus_token,
        job.checks,
        job.at,
    )


async def advance_followups(state: AppState) -> int:
    """One tick of the follow-up phase: open the follow-up of every newly mitigated incident
    (the checklist from the active rules, the findings), then validate those whose
    stabilization window has ended (quiet, and the PromQL checks run outside the writer), each
    in its own transaction; a follow-up done resolves its incident. Returns the changes."""
    runtime = state.runtime

    def acknowledge_within(route: str, severity: str) -> float | None:
        return runtime.reminder_policy(route, severity).acknowledge_within_s

    request = OpenRequest(
        now=state.clock(),
        policy=runtime.followup_policy,
        acknowledge_within=acknowledge_within,
        base_url=state.settings.base_url,
    )
    opened: list[int] = []
    if await state.store.followups.has_work(request.now):
        opened = await state.store.followups.open_due(request)
    changes = len(opened)
    for incident_id in opened:
        log.info("incident %d: follow-up opened", incident_id)
    jobs = await state.store.followups.due_validations(state.clock())
    for job in jobs:
        outcomes = await run_checks(state, job)
        ids, _ = await state.store.followups.record_validation(job, outcomes, state.clock())
        if ids:
            changes += 1
            log.info("incident %d: follow-up validated", job.incident_id)
    if changes and state.worker is not None:
        state.worker.notify()
    return changes
