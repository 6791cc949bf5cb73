"""A drill's report over the running service (docs/drills.md): read from the store, judged
against the severity's targets of the active rules (core/drills.report), and written as Markdown
into the knowledge base (``drills/<id>.md``, committed when the folder is a Git repository)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bridge.core import drills
from bridge.kb import files, git
from bridge.service import AppState

log = logging.getLogger(__name__)


class NotADrill(Exception):
    """No such incident, or not a drill: 404."""


async def build(state: AppState, incident_id: int) -> dict[str, Any]:
    """The drill's report with its Markdown; raises ``NotADrill``."""
    facts = await state.store.drills.report_facts(incident_id)
    if facts is None:
        raise NotADrill(f"incident {incident_id} is not a drill (or does not exist)")
    incident = facts["incident"]
    policy = state.runtime.reminder_policy(incident["route"], incident["severity"])
    out = drills.report(
        facts,
        acknowledge_within_s=policy.acknowledge_within_s,
        update_every_s=policy.update_every_s,
        now_ns=state.clock(),
    )
    out["markdown"] = drills.report_markdown(out)
    return out


def kb_path(incident_id: int) -> str:
    return f"drills/{incident_id}.md"


async def write(state: AppState, report: dict[str, Any]) -> dict[str, Any]:
    """Write the report into the knowledge base (--kb-dir); where, and the commit when the
    folder is a Git repository; None with --kb-database-only (no folder). Raises
    ``OSError``/``files.UnsafePath`` when it cannot."""
    root = state.settings.kb_folder
    if root is None:
        return {"path": None, "commit": None}
    rel = kb_path(int(report["incident"]["id"]))
    await asyncio.to_thread(files.write_files, root, {rel: report["markdown"]})
    sha: str | None = None
    if await git.is_repository(root):
        try:
            sha, _ = await git.commit(
                root,
                [rel],
                f"Drill report: incident {report['incident']['id']}",
                state.settings.kb_author,
            )
        except git.GitError as exc:  # the file is written; the commit is the repository's
            log.error("knowledge base %s: %s", root, exc)
    return {"path": rel, "commit": sha or None}
