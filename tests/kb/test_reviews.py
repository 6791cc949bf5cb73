"""The weekly review on an injected clock: the last full week's insights written once into the
knowledge base (reviews/<Monday>.md), the index newest first, committed in a Git repository; the
loop (leased, as on one replica) writes it by itself."""

from __future__ import annotations

import asyncio
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Settings
from bridge.kb import reviews
from tests.conftest import Clock, app_state, execute

NS = 10**9


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * NS


def incident(state: Any, iid: int, opened: int, ack_s: int) -> None:
    execute(
        state.store,
        "INSERT INTO incidents (id, key, title, severity, status, route, team, service, "
        "started_at, opened_at, acknowledged_at) VALUES (?, 'k', 't', 'sev2', 'acknowledged', "
        "'default', 'pay', 'api', ?, ?, ?)",
        (iid, opened, opened, opened + ack_s * NS),
    )


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


async def test_the_review_of_last_week_once_and_the_index_newest_first(
    tmp_path: Path, kb: Path
) -> None:
    clock = Clock(at("2026-12-08T10:00:00"))  # a Tuesday
    state = app_state(Settings(db=tmp_path / "b.db", kb_dir=kb), clock=clock)
    try:
        incident(state, 1, at("2026-12-02T03:00:00"), 120)  # last week
        incident(state, 2, at("2026-12-08T09:00:00"), 60)  # this week: not in it
        assert reviews.last_week(clock()) == ("2026-11-30", at("2026-12-07T00:00:00"))
        first = await reviews.write_review(state, clock())
        assert first == "reviews/2026-11-30.md"
        text = (kb / first).read_text()
        assert text.startswith("# Weekly review: week of 2026-11-30")
        assert "| incidents | 1 | 0 |" in text and "| mtta_s | 120.0 |" in text
        assert await reviews.write_review(state, clock() + 3600 * NS) is None  # once a week
        clock.advance(7 * 86400)
        second = await reviews.write_review(state, clock())
        assert second == "reviews/2026-12-07.md"
        assert "| incidents | 1 | 1 |" in (kb / second).read_text()
        index = (kb / "reviews/index.md").read_text()
        assert index.index("2026-12-07") < index.index("2026-11-30")
        done = await asyncio.to_thread(
            subprocess.run,
            ["git", "-C", str(kb), "log", "--format=%s"],
            capture_output=True,
            text=True,
        )
        log = done.stdout.splitlines()
        assert log == ["Weekly review: week of 2026-12-07", "Weekly review: week of 2026-11-30"]
    finally:
        state.store.close()


async def test_the_loop_writes_it_by_itself(tmp_path: Path, kb: Path) -> None:
    clock = Clock(at("2026-12-08T10:00:00"))
    state = app_state(Settings(db=tmp_path / "b.db", kb_dir=kb), clock=clock)
    loop = reviews.WeeklyReview(state, every_s=0.05)
    try:
        loop.start()
        for _ in range(200):
            if (kb / "reviews/2026-11-30.md").exists():
                break
            await asyncio.sleep(0.05)
        assert (kb / "reviews/2026-11-30.md").exists()
    finally:
        await loop.stop()
        state.store.close()


async def test_no_folder_no_review(tmp_path: Path) -> None:
    state = app_state(Settings(db=tmp_path / "b.db", kb_database_only=True))
    try:
        assert await reviews.write_review(state, at("2026-12-08T10:00:00")) is None
    finally:
        state.store.close()


def test_serve_with_weekly_review_writes_last_weeks_review(tmp_path: Path) -> None:
    """``serve --weekly-review``: the loop runs in the real process (the lease taken), last
    week's review appears in the knowledge base; without the flag nothing is written."""
    from tests.integration.procs import running_bridge, wait_for

    kb = tmp_path / "kb"
    with running_bridge(tmp_path / "on", args=["--weekly-review", "--kb-dir", str(kb)]):
        week, _ = reviews.last_week(time.time_ns())
        wait_for("the weekly review", lambda: (kb / f"reviews/{week}.md").exists(), timeout=20)
    other = tmp_path / "kb-off"
    with running_bridge(tmp_path / "off", args=["--kb-dir", str(other)]) as bridge:
        assert bridge.get_json("/api/v1/insights")["tables"]
    assert not (other / "reviews").exists()
