from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from bridge.delivery.templates import SAMPLE_INCIDENT
from bridge.targets import REGISTRY, Notification, Target, TargetDeps
from tests.fakes.base import FakeServer, serving
from tests.fakes.chat import DiscordFake, MattermostFake, TeamsFake, TelegramFake
from tests.fakes.paging import OpsgenieFake, PagerDutyFake
from tests.fakes.slack import SlackWebhookFake
from tests.fakes.webhook import WebhookFake

NOW = 1_795_752_400.0  # 2026-11-27T04:06:40Z


class FixedClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def incident(**overrides: Any) -> dict[str, Any]:
    data = copy.deepcopy(SAMPLE_INCIDENT)
    data.update(overrides)
    return data


def make_notification(
    event: str = "opened",
    *,
    tier: str = "general",
    target: str = "t",
    inc: dict[str, Any] | None = None,
    events: tuple[dict[str, Any], ...] = (),
    state: dict[str, Any] | None = None,
    sequence: int = 1,
) -> Notification:
    inc = inc or incident()
    return Notification(
        id=sequence,
        idempotency_key=f"{inc['id']}:{event}:{target}:{sequence}",
        target=target,
        tier=tier,  # type: ignore[arg-type]
        event=event,  # type: ignore[arg-type]
        incident=inc,
        events=events,
        state=state or {},
        sequence=sequence,
    )


@pytest.fixture
def fixed_clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def deps(session: aiohttp.ClientSession, fixed_clock: FixedClock) -> TargetDeps:
    return TargetDeps(
        session=session, clock=fixed_clock, logger=logging.getLogger("bridge.targets.test")
    )


MakeTarget = Callable[..., Target]


@pytest.fixture
def make_target(deps: TargetDeps) -> MakeTarget:
    def make(type_name: str, name: str = "t", **settings: Any) -> Target:
        return REGISTRY[type_name].from_settings(name, settings, deps)

    return make


StartFake = Callable[[type[FakeServer]], Awaitable[Any]]


@pytest.fixture
async def start_fake(fixed_clock: FixedClock) -> AsyncIterator[StartFake]:
    """Start a fake by class inside a test (async fixtures cannot be looked up by name)."""
    started: list[FakeServer] = []

    async def start(cls: type[FakeServer]) -> Any:
        fake = cls(now=fixed_clock) if cls is WebhookFake else cls()  # type: ignore[call-arg]
        await fake.start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        await fake.close()


@pytest.fixture
async def slack_hook() -> AsyncIterator[SlackWebhookFake]:
    async with serving(SlackWebhookFake()) as f:
        yield f


@pytest.fixture
async def teams() -> AsyncIterator[TeamsFake]:
    async with serving(TeamsFake()) as f:
        yield f


@pytest.fixture
async def mattermost() -> AsyncIterator[MattermostFake]:
    async with serving(MattermostFake()) as f:
        yield f


@pytest.fixture
async def discord() -> AsyncIterator[DiscordFake]:
    async with serving(DiscordFake()) as f:
        yield f


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramFake]:
    async with serving(TelegramFake()) as f:
        yield f


@pytest.fixture
async def pagerduty() -> AsyncIterator[PagerDutyFake]:
    async with serving(PagerDutyFake()) as f:
        yield f


@pytest.fixture
async def opsgenie() -> AsyncIterator[OpsgenieFake]:
    async with serving(OpsgenieFake()) as f:
        yield f


@pytest.fixture
async def webhook(fixed_clock: FixedClock) -> AsyncIterator[WebhookFake]:
    async with serving(WebhookFake(now=fixed_clock)) as f:
        yield f
