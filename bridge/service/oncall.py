"""On call over the running service (docs/oncall.md): overrides made and ended (the API, the
CLI through it, the pages and chat all come here), the snapshot of stored overrides the active
runtime merges (refreshed at once on this replica's changes and every few seconds from the
database for the others'), the answers about who is on call, and the scheduler's hand-off
messages.

The pure rotation code never reads the store: ``Runtime.with_overrides`` takes the snapshot."""

from __future__ import annotations

import asyncio
import logging

from bridge.core.actions import MAX_TEXT
from bridge.core.oncall import OverrideSpan, RotationNow, ShiftRecord
from bridge.service import AppState, BackgroundLoop
from bridge.store.interface import NewOverride, StoredOverride, StoreUnavailable

log = logging.getLogger("bridge.service")

S = 10**9
# Every replica reads the stored overrides this often (one small read): an override made on
# another replica counts here within this time; on the replica that made it, at once.
REFRESH_EVERY_S = 10.0
# An override is at most this long: time-bounded, not a second schedule beside the rules file.
MAX_OVERRIDE_NS = 366 * 86400 * S
# The snapshot keeps overrides that ended this long ago too: an alert evaluated a little late
# (a webhook for a group that started a moment before) still sees who held the rotation then.
SNAPSHOT_BACK_NS = 3600 * S


class OnCallError(Exception):
    """A refused override, naming the input to blame (``field``); a 400 in the API."""

    def __init__(self, field: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


def spans(rows: list[StoredOverride]) -> tuple[OverrideSpan, ...]:
    """Stored rows as the runtime merges them: the newest first (the latest word wins where
    two stored overrides overlap), each over its effective span."""
    ordered = sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)
    return tuple(OverrideSpan(r.rotation, r.person, r.start_at, r.effective_end) for r in ordered)


async def refresh(state: AppState) -> None:
    """Read the stored overrides still holding and make the active runtime merge them."""
    rows = await state.store.oncall.list_overrides(after=state.clock() - SNAPSHOT_BACK_NS)
    snapshot = spans(rows)
    if snapshot != state.oncall_overrides:
        state.oncall_overrides = snapshot
        state.runtime = state.runtime.with_overrides(snapshot)


async def all_spans(state: AppState) -> tuple[OverrideSpan, ...]:
    """Every stored override ever made (for an answer about another instant than now)."""
    return spans(await state.store.oncall.list_overrides())


class OverridesRefresh(BackgroundLoop):
    """``refresh`` every ``every_s`` seconds on every replica (no lease: each one's runtime
    needs the overrides); a store error waits for the next turn with the snapshot it has."""

    NAME = "oncall-overrides"

    def __init__(self, state: AppState, every_s: float = REFRESH_EVERY_S) -> None:
        self.state = state
        self.every_s = every_s

    async def _run(self) -> None:
        while True:
            try:
                await refresh(self.state)
            except StoreUnavailable as exc:
                log.warning("on-call overrides: store unavailable: %s; trying again", exc)
            except Exception:
                log.exception("on-call overrides: unexpected error; trying again")
            await asyncio.sleep(self.every_s)


def _check(state: AppState, rotation: str, person: str, start: int, end: int, reason: str) -> None:
    runtime = state.runtime
    if rotation not in (runtime.yaml_rotations or runtime.rotations):
        known = ", ".join(sorted(runtime.yaml_rotations or runtime.rotations)) or "none"
        raise OnCallError("rotation", f"unknown rotation {rotation!r}; known: {known}")
    if not person or not runtime.known_person(person):
        raise OnCallError("person", f"unknown person {person!r}: not a member of any rotation")
    if end <= start:
        raise OnCallError("end", "must be after start")
    if end <= state.clock():
        raise OnCallError("end", "is in the past: an override must still hold")
    if end - start > MAX_OVERRIDE_NS:
        raise OnCallError("end", "an override lasts at most 366 days")
    if len(reason) > MAX_TEXT:
        raise OnCallError("reason", f"at most {MAX_TEXT} characters")


async def add_override(
    state: AppState,
    *,
    rotation: str,
    person: str,
    start: int,
    end: int,
    reason: str,
    by: str,
    idempotency_key: str | None = None,
) -> tuple[StoredOverride, bool]:
    """Store an override (checked first: an OnCallError names the input) and apply it at
    once; the row and whether it was made now (False: a retry with the same key)."""
    _check(state, rotation, person, start, end, reason)
    row, made = await state.store.oncall.add_override(
        NewOverride(
            rotation=rotation,
            person=person,
            start_at=start,
            end_at=end,
            reason=reason,
            created_by=by,
            now=state.clock(),
            idempotency_key=idempotency_key,
        )
    )
    await refresh(state)
    if made:
        log.info("on call: %s holds %s by %s's override %d", person, rotation, by, row.id)
    return row, made


async def end_override(state: AppState, *, override_id: int, by: str) -> StoredOverride:
    """End an override now (one not begun is cancelled), applied at once; 404 when unknown."""
    row = await state.store.oncall.end_override(override_id=override_id, now=state.clock(), by=by)
    if row is None:
        raise OnCallError("id", f"no override {override_id}", status=404)
    await refresh(state)
    return row


async def now_and_next(state: AppState, at: int | None = None) -> list[RotationNow]:
    """Every rotation's holder at ``at`` (default: now) and the next, overrides applied."""
    runtime = state.runtime
    if at is None:
        return runtime.oncall_now(state.clock())
    return runtime.oncall_now(at, await all_spans(state))


async def shifts(
    state: AppState, start: int, end: int, *, rotation: str | None = None, person: str | None = None
) -> list[ShiftRecord]:
    """The shifts of a rotation or a person over ``[start, end)``, every stored override
    applied (past ones too: a calendar shows who really held it)."""
    return state.runtime.oncall_shifts(
        start, end, rotation=rotation, person=person, spans=await all_spans(state)
    )


# A hand-off this long ago is still announced (a service stopped over it says it when back);
# an older one is not. The scheduler looks every --scheduler-interval, far less than this.
HANDOFF_LOOKBACK_NS = 3600 * S


async def announce_handoffs(state: AppState) -> int:
    """The scheduler's step: each hand-off of a rotation in the last hour, overrides applied,
    announced once (``store.oncall.record_handoff``) on the open incidents of the routes whose
    commander comes from that rotation (what the new holder inherits), and in one channel
    message to the rotation's ``handoff_to`` targets (who hands to whom, the incidents
    inherited), written in the same transaction. Returns how many hand-offs were announced
    now."""
    runtime = state.runtime
    now = state.clock()
    routes: dict[str, list[str]] = {}
    for route, rotation in runtime.commander_rotations.items():
        routes.setdefault(rotation.name, []).append(route)
    announced = 0
    for name in sorted(runtime.rotations):
        for giver, taker, at in runtime.handoffs(name, now - HANDOFF_LOOKBACK_NS, now):
            done = await state.store.oncall.record_handoff(
                rotation=name,
                at=at,
                giver=giver,
                taker=taker,
                routes=routes.get(name, ()),
                now=now,
                targets=runtime.rotations[name].handoff_to,
                people={m.name: m.handles for m in runtime.rotations[name].members},
            )
            if not done.recorded:
                continue
            announced += 1
            state.committed(notifications=done.notifications + done.messages)
            log.info(
                "on call: %s hands %s to %s (%d open incident(s) inherited)",
                giver,
                name,
                taker,
                len(done.incidents),
            )
    return announced
