"""The weekly review (docs/insights.md): each week's insights written into the knowledge base as
``reviews/<Monday>.md`` with ``reviews/index.md`` listing them newest first, committed when the
folder is a Git repository. With ``--weekly-review``, ``WeeklyReview`` (a loop on one replica at
a time: its lease) looks every hour and writes the review of the last full week (Monday 00:00
UTC to Monday 00:00 UTC) once: a week whose file exists is done."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bridge.core.insights import NS, markdown_text
from bridge.kb import files, git
from bridge.service import AppState, BackgroundLoop
from bridge.service.insights import insights

log = logging.getLogger("bridge.kb")

FOLDER = "reviews"
WEEK_NS = 7 * 86_400 * NS
# An hour between looks: the review of a week is due once, any time after its Monday.
EVERY_S = 3600.0


def last_week(now: int) -> tuple[str, int]:
    """The Monday (UTC, YYYY-MM-DD) starting the last full week before ``now``, and the
    instant that week ends (the next Monday 00:00 UTC), in ns."""
    today = datetime.fromtimestamp(now / NS, tz=UTC).date()
    this_monday = today - timedelta(days=today.weekday())
    end = datetime(this_monday.year, this_monday.month, this_monday.day, tzinfo=UTC)
    return (this_monday - timedelta(days=7)).isoformat(), int(end.timestamp()) * NS


def index_text(weeks: list[str]) -> str:
    lines = ["# Weekly reviews", "", "Newest first.", ""]
    lines += [f"- [Week of {week}]({week}.md)" for week in sorted(weeks, reverse=True)]
    return "\n".join(lines) + "\n"


def _weeks(root: Path) -> list[str]:
    folder = root / FOLDER
    if not folder.is_dir():
        return []
    return [p.stem for p in folder.glob("*.md") if p.name != "index.md"]


async def write_review(state: AppState, now: int) -> str | None:
    """The review of the last full week before ``now`` written (its path in the knowledge
    base), or None: already written, or no folder (``--kb-database-only``)."""
    root = state.settings.kb_folder
    if root is None:
        return None
    week, end = last_week(now)
    rel = f"{FOLDER}/{week}.md"
    if (root / rel).exists():
        return None
    found = await insights(state, until=end, span=WEEK_NS)
    text = (
        f"# Weekly review: week of {week}\n\n"
        f"Insights of {week} to the next Monday (UTC), against the week before; each person's "
        f"working hours in their rotation's time zone ({found.working_hours} unless it says "
        "otherwise); drills left out.\n\n" + markdown_text(found)
    )
    weeks = sorted({*await asyncio.to_thread(_weeks, root), week})
    written = {rel: text, f"{FOLDER}/index.md": index_text(weeks)}
    async with git.repo_lock(root):
        await asyncio.to_thread(files.write_files, root, written)
        if await git.is_repository(root):
            await git.commit(
                root, sorted(written), f"Weekly review: week of {week}", state.settings.kb_author
            )
    log.info("weekly review written: %s", rel)
    return rel


class WeeklyReview(BackgroundLoop):
    """``write_review`` every ``every_s`` seconds on the injected clock's time (at start too);
    an error is logged and the next look tries again."""

    NAME = "weekly-review"
    LEASE = "weekly-review"

    def __init__(self, state: AppState, every_s: float = EVERY_S) -> None:
        self.state = state
        self.every_s = every_s

    @property
    def lease_tick_s(self) -> float:
        return min(self.every_s, 15.0)

    async def _run(self) -> None:
        while True:
            try:
                await write_review(self.state, self.state.clock())
            except Exception:
                log.exception("weekly review: not written; trying again in %gs", self.every_s)
            await asyncio.sleep(self.every_s)
