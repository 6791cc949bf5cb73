"""The postmortem over the running service: what the API's handlers call (``http/postmortem.py``)
to show one (the newest narrative over facts regenerated now, rendered), save a version of its
narrative, list the versions, diff two, and publish it.

Publishing, in the knowledge base's turn (``git.repo_lock``: one publication of a folder at a
time):

1. the incident must be resolved or closed, and something must have been written (409);
2. the Markdown is rendered (a template error: 422, nothing written);
3. into the knowledge base's folder (``--kb-dir``, else ``kb`` beside the database):
   ``<kb>/<year>/<id>-<slug>.md`` (the file it was published to before, if any) and the index
   page ``<kb>/README.md`` are written atomically (a path that would leave the folder: 409,
   nothing written), then committed when the folder is a Git repository (a folder made by
   this first publication is made one: ``git init``);
4. the publication is recorded in one transaction: its timeline entry, the notifications of
   the incident's tiers, the push of the knowledge base (``--kb-remote``: an outbox row for
   the built-in sender ``@knowledge-base``) and the postmortem's search document;
5. the incident is closed by the publisher (``service.act``, the same way as any close) unless
   it already is.

With ``--kb-database-only`` only steps 1, 2, 4 and 5 happen: the publication is recorded (its
file empty) and the Markdown is served by the API, so a route that requires a postmortem can
close.
Publishing the same version again with nothing changed records nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.core.actions import Transition
from bridge.core.postmortem import (
    EMPTY,
    diff,
    document,
    facts_dict,
    index_entry,
    index_page,
    kb_path,
    merge,
    searchable_text,
)
from bridge.core.timeutil import format_ns
from bridge.delivery.templates import TemplateError
from bridge.kb import files, git, render
from bridge.service import AppState, act
from bridge.store.interface import (
    ActionAnswer,
    Idempotency,
    PublishRecord,
    SaveRequest,
    publication_json,
)

log = logging.getLogger("bridge.kb")

INDEX = "README.md"
PUBLISHABLE = ("resolved", "closed")


class PostmortemError(Exception):
    """An answer other than 200: the status, what to tell, the field to blame."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def _no_incident(incident_id: int) -> PostmortemError:
    return PostmortemError(404, f"no incident {incident_id}")


async def _render(state: AppState, doc: Mapping[str, Any], route: str) -> render.Rendered:
    try:
        return await asyncio.to_thread(
            functools.partial(
                render.render,
                doc,
                route,
                user_dir=state.settings.templates,
                raw_html=state.settings.kb_allow_raw_html,
            )
        )
    except TemplateError as exc:
        log.error("postmortem template: %s", exc)
        raise PostmortemError(422, f"the postmortem template does not render: {exc}") from None


def _template_name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name == "postmortem" else path.name


async def show(state: AppState, incident_id: int, version: int | None = None) -> dict[str, Any]:
    """The postmortem as ``GET .../postmortem`` answers it: the version asked for (the newest by
    default) over the facts now, its sections, the facts and the rendered Markdown."""
    read = await state.store.postmortems.read(incident_id, version)
    if read is None:
        raise _no_incident(incident_id)
    if version is not None and read.version is None:
        raise PostmortemError(404, f"incident {incident_id} has no postmortem version {version}")
    pm = merge(read.facts, read.version)
    rendered = await _render(state, document(pm), read.facts.route)
    facts = read.facts
    return {
        "incident_id": incident_id,
        "version": pm.version,
        "newest_version": read.newest,
        "author": pm.author,
        "saved_at": format_ns(pm.saved_at),
        "sections": pm.narrative.as_dict(),
        "facts": facts_dict(facts),
        "markdown": rendered.markdown,
        "template": _template_name(rendered.template),
        "policy": state.runtime.postmortem_policy(facts.route, facts.severity),
        "published": publication_json(read.publication) if read.publication else None,
    }


async def save(
    state: AppState,
    incident_id: int,
    sections: Mapping[str, str],
    actor: str,
    *,
    idempotency: Idempotency | None = None,
) -> ActionAnswer:
    """Save the sections given over the newest version: a new version, or nothing when they
    read the same."""
    request = SaveRequest(incident_id, dict(sections), actor, state.clock(), idempotency)
    answer = await state.store.postmortems.save_version(request)
    state.committed(notifications=answer.notifications)
    return answer


async def versions(state: AppState, incident_id: int) -> dict[str, Any]:
    found = await state.store.postmortems.history(incident_id)
    if found is None:
        raise _no_incident(incident_id)
    saved, publications = found
    return {
        "incident_id": incident_id,
        "versions": [
            {
                "version": v.version,
                "author": v.author,
                "saved_at": format_ns(v.saved_at),
                "sections": list(v.narrative.written),
            }
            for v in saved
        ],
        "publications": [publication_json(p) for p in publications],
    }


async def difference(
    state: AppState, incident_id: int, from_version: int | None, to_version: int | None
) -> dict[str, Any]:
    """The unified diff of two versions' narratives (``to``: the newest by default; ``from``:
    the one before it; version 0 is the empty narrative)."""
    saved = await state.store.postmortems.versions(incident_id)
    if saved is None:
        raise _no_incident(incident_id)
    by_number = {v.version: v for v in saved}
    to = to_version if to_version is not None else (saved[-1].version if saved else 0)
    start = from_version if from_version is not None else max(to - 1, 0)
    for name, number in (("to", to), ("from", start)):
        if number != 0 and number not in by_number:
            raise PostmortemError(
                404, f"incident {incident_id} has no postmortem version {number}", name
            )
    before = by_number[start].narrative if start else EMPTY
    after = by_number[to].narrative if to else EMPTY
    return {
        "incident_id": incident_id,
        "from_version": start,
        "to_version": to,
        "diff": diff(before, after, f"v{start}", f"v{to}"),
    }


async def published(state: AppState, incident_id: int) -> str:
    """The Markdown last published (404 when never)."""
    text = await state.store.postmortems.published_markdown(incident_id)
    if text is None:
        raise PostmortemError(404, f"incident {incident_id} has no published postmortem")
    return text


@dataclass(frozen=True)
class _Written:
    path: str
    commit: str | None
    committed: bool


async def _initialise(root: Path) -> None:
    """The folder this publication made becomes a Git repository of its own, so that the
    defaults (``kb`` beside the database) keep every version from the first; without git the
    files are written all the same, uncommitted (logged)."""
    try:
        done = await git.run(root, "init", "--quiet")
    except git.GitError as exc:
        log.warning("knowledge base %s: %s; publishing without commits", root, exc)
        return
    if done.code != 0:
        log.warning("knowledge base %s: git init failed: %s", root, done.err.strip()[-300:])
    else:
        log.info("knowledge base %s: made a Git repository (git init)", root)


async def _write_kb(
    state: AppState, root: Path, rel: str, markdown: str, entry: Any, message: str
) -> _Written:
    listed = await state.store.postmortems.published_index()
    index = index_page([*(e for e in listed if e.incident_id != entry.incident_id), entry])
    fresh = not await asyncio.to_thread(os.path.lexists, root)
    try:
        await asyncio.to_thread(files.write_files, root, {rel: markdown, INDEX: index})
    except files.UnsafePath as exc:
        raise PostmortemError(409, f"cannot publish: {exc}") from None
    except OSError as exc:
        raise PostmortemError(
            409, f"cannot publish into the knowledge base {root}: {exc.strerror or exc}"
        ) from None
    if fresh:
        await _initialise(root)
    if not await git.is_repository(root):
        if state.settings.kb_remote:
            log.warning(
                "knowledge base %s is not a Git repository: nothing committed, nothing pushed to "
                "--kb-remote %s",
                root,
                state.settings.kb_remote,
            )
        return _Written(rel, None, False)
    try:
        sha, committed = await git.commit(root, [rel, INDEX], message, state.settings.kb_author)
    except git.GitError as exc:
        log.error("knowledge base %s: %s", root, exc)
        raise PostmortemError(
            409,
            f"the postmortem is written to {root / rel} but not committed ({exc}); fix the "
            "repository and publish again",
        ) from None
    return _Written(rel, sha or None, committed)


async def publish(state: AppState, incident_id: int, actor: str) -> dict[str, Any]:
    """Publish the newest version (the module's docstring says how); the answer says what
    changed, the publication, the incident after it, and the timeline entries written."""
    settings = state.settings
    root = settings.kb_folder
    events: list[Any] = []
    changed = False
    pushed = False
    async with git.repo_lock(root):
        read = await state.store.postmortems.read(incident_id, None)
        if read is None:
            raise _no_incident(incident_id)
        facts = read.facts
        if facts.status not in PUBLISHABLE:
            raise PostmortemError(
                409,
                f"cannot publish: the incident is {facts.status}; a postmortem is published "
                "once the incident is resolved",
            )
        if read.version is None or not read.version.narrative.written:
            raise PostmortemError(
                409,
                "cannot publish: nothing is written yet; save the narrative first "
                f"(incident-bridge postmortem edit {incident_id} --section summary --text ...)",
            )
        pm = merge(facts, read.version)
        rendered = await _render(state, document(pm), facts.route)
        markdown = rendered.markdown
        written = _Written("", None, False)
        if root is not None:
            opened = facts.at("opened_at") or 0
            rel = await state.store.postmortems.previous_path(incident_id) or kb_path(
                incident_id, facts.title, opened
            )
            message = (
                f"Postmortem #{incident_id}: {facts.title} (v{pm.version})\n\n"
                f"Published by {actor} through incident-bridge."
            )
            written = await _write_kb(state, root, rel, markdown, index_entry(facts, rel), message)
        last = read.publication
        same = (
            last is not None
            and last.version == pm.version
            and last.path == written.path
            and not written.committed
            and await state.store.postmortems.published_markdown(incident_id) == markdown
        )
        if not same:
            push = git.SENDER if settings.kb_remote and written.committed else None
            record = PublishRecord(
                incident_id=incident_id,
                version=pm.version or 0,
                path=written.path,
                commit_sha=written.commit,
                actor=actor,
                now=state.clock(),
                markdown=markdown,
                search_text=searchable_text(pm),
                push_target=push,
            )
            recorded = await state.store.postmortems.record_publication(record)
            if recorded is None:
                raise _no_incident(incident_id)
            changed, pushed = True, recorded.pushed
            events += recorded.events
            state.committed(notifications=recorded.notifications)
            log.info(
                "incident %d: postmortem v%s published by %s%s",
                incident_id,
                pm.version,
                actor,
                f" to {written.path}" if written.path else "",
            )
    incident: Any = None
    if facts.status != "closed":
        answer = await act(state, incident_id, Transition(actor, "close"))
        if answer.status == 200:
            events += answer.body.get("events") or []
            changed = changed or answer.changed
            incident = answer.body.get("incident")
        else:
            log.warning(
                "incident %d: published, but not closed: %s",
                incident_id,
                answer.body.get("error"),
            )
    if incident is None:
        incident = await state.store.queries.incident_summary(incident_id)
    publications = await state.store.postmortems.list_publications(incident_id)
    publication = publication_json(publications[-1]) if publications else None
    return {
        "changed": changed,
        "publication": {**publication, "pushed": pushed} if publication else None,
        "incident": incident,
        "events": events,
    }


def install(state: AppState) -> None:
    """With a knowledge base folder and ``--kb-remote``: the built-in sender that pushes the knowledge base
    (``git.GitPush``, named ``@knowledge-base``), among the outbox worker's targets now and
    after every reload of the rules (which swaps the targets)."""
    worker, settings = state.worker, state.settings
    root = settings.kb_folder
    if worker is None or root is None or not settings.kb_remote:
        return
    worker.add_builtin(git.GitPush(root, settings.kb_remote))
