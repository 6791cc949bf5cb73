"""The outbox never sends faster than its schedule when the store cannot record what happened.

A send succeeds (or fails), then recording it fails because the disk is full: the outcome is
kept in memory, the row is not sent again, and the outcome is recorded once the store takes
writes again. The disk is a real tmpfs of 3 MiB mounted by the test (root only: skipped
otherwise, unless CI=true, where it fails), filled for real while a send is in flight; the
target is the webhook contract fake on a loopback port, counting POSTs.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bridge.delivery.worker import DeliveryPolicy
from bridge.store import Store
from bridge.store import outbox as q
from tests.conftest import fixture_body
from tests.delivery.test_worker import hook_worker, ingest, rows
from tests.fakes.base import serving
from tests.fakes.webhook import WebhookFake

DISK_SIZE = "3m"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _cannot(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this test must run)")
    pytest.skip(reason)


class Disk:
    """A real tmpfs of a few MiB, and a file that fills it up."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def fill(self) -> None:
        chunk = b"\0" * 65536
        with self.filler.open("ab") as f:
            try:
                while True:
                    f.write(chunk)
                    f.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        assert os.statvfs(self.root).f_bavail == 0

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    if os.geteuid() != 0:
        _cannot("mounting a tmpfs needs root")
    root = tmp_path / "disk"
    root.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "tmpfs", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        _cannot(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield Disk(root)
    finally:
        if subprocess.run(["umount", str(root)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(root)], check=True)  # busy: detach it anyway


@pytest.fixture
def small_store(disk: Disk) -> Iterator[Store]:
    s = Store(disk.root / "bridge.db")
    s.open()
    yield s
    s.close()


class FillingFake(WebhookFake):
    """The webhook fake, which can fill the disk while a request is in flight (after it arrived,
    before it is answered), and notes when each request arrived (``time.time_ns``)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[int] = []
        self.on_next_request: Callable[[], None] | None = None
        self.app.middlewares.insert(0, self._before)

    @web.middleware
    async def _before(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.arrived.append(time.time_ns())
        action, self.on_next_request = self.on_next_request, None
        if action is not None:
            action()
        return await handler(request)


@pytest.fixture
async def fake() -> AsyncIterator[FillingFake]:
    async with serving(FillingFake()) as server:
        yield server


async def until(what: str, check: Callable[[], Any], within_s: float = 10.0) -> None:
    """Wait for ``check()`` (awaited when it returns an awaitable) to be true."""
    deadline = time.monotonic() + within_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def refused_records(caplog: pytest.LogCaptureFixture) -> int:
    """How often the worker found that the store would not take an outcome."""
    return sum(
        1
        for r in caplog.records
        if r.name == "bridge.delivery.worker" and "cannot be recorded" in r.getMessage()
    )


POLICY = DeliveryPolicy(
    quick_attempts=1, backoff_base_s=1.0, record_retry_s=0.05, record_retry_cap_s=0.2
)


async def the_row(store: Store) -> q.OutboxRow:
    [row] = await rows(store)
    return row


async def test_a_delivery_the_full_disk_cannot_record_is_not_sent_again_and_is_recorded_later(
    disk: Disk,
    small_store: Store,
    fake: FillingFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = small_store
    await ingest(store, fixture_body("ha-slow-receiver/01.json"), time.time_ns())
    fake.on_next_request = disk.fill  # the send goes out, then the disk is full
    caplog.set_level(logging.DEBUG, logger="bridge.delivery.worker")
    async with hook_worker(store, fake.hook_url, time.time_ns, POLICY) as worker:
        worker.start()
        try:
            # Before: the row went out again at once, 2,171 times in 42.7 s.
            await until(
                "three refused records (or a second POST)",
                lambda: refused_records(caplog) >= 3 or len(fake.requests) >= 2,
            )
            assert len(fake.requests) == 1
            assert (await the_row(store)).state == "pending"  # the store has not heard yet
            disk.free()

            async def delivered() -> bool:
                return (await the_row(store)).state == "delivered"

            await until("the delivery recorded", delivered)
            assert len(fake.requests) == 1  # sent once, recorded once the disk had room
        finally:
            await worker.stop()
    row = await the_row(store)
    assert (row.state, row.attempts, row.last_error) == ("delivered", 1, None)
    assert row.delivered_at is not None and row.delivered_at <= fake.arrived[0] + 10**9
    assert len(fake.deliveries) == 1


async def test_a_failed_send_the_full_disk_cannot_record_keeps_its_retry_schedule(
    disk: Disk,
    small_store: Store,
    fake: FillingFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = small_store
    await ingest(store, fixture_body("ha-slow-receiver/01.json"), time.time_ns())
    fake.on_next_request = disk.fill
    fake.fail_next(1, status=503)  # the send fails, and the failure cannot be recorded either
    caplog.set_level(logging.DEBUG, logger="bridge.delivery.worker")
    async with hook_worker(store, fake.hook_url, time.time_ns, POLICY) as worker:
        worker.start()
        try:
            await until(
                "three refused records (or a second POST)",
                lambda: refused_records(caplog) >= 3 or len(fake.requests) >= 2,
            )
            assert len(fake.requests) == 1  # not again before its retry is even recorded
            disk.free()

            async def delivered() -> bool:
                return (await the_row(store)).state == "delivered"

            await until("the retry delivered", delivered)
        finally:
            await worker.stop()
    row = await the_row(store)
    # The failed attempt was recorded with its schedule, and the retry kept to it.
    assert (row.state, row.attempts) == ("delivered", 2)
    assert row.next_attempt_at >= fake.arrived[0] + POLICY.backoff_base_s / 2 * 10**9
    assert len(fake.requests) == 2
    assert fake.arrived[1] >= row.next_attempt_at
    assert len(fake.deliveries) == 1
