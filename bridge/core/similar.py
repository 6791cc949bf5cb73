"""Seen this before, pure: which past incidents are like a new one, in which order, and the
timeline entry that names them.

The store finds candidates two ways (``store/search.find_similar``): incidents whose alerts had
the same ``alertname`` on the same service (an exact key, looked up in an index), then
incidents whose title and label values share rare words with the new one's (FTS5, ranked by
bm25). ``choose`` merges them: the same alert and service first, those that ended first (they
had a fix), newest first; then the text matches, most relevant first; never the incident itself,
at most ``LIMIT``. ``similar_event`` is the one timeline entry (``similar_incidents``) that
lists them with their links; it maps to the ``timeline`` notification event, so only the
incident's dedicated channel hears of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from bridge.core.incidents import Event
from bridge.core.timeutil import format_ns
from bridge.core.values import immutable

ACTOR = "incident-bridge"
KIND = "similar_incidents"
LIMIT = 5
# Statuses of an incident whose alerts stopped or that people resolved: there was a fix.
ENDED = frozenset({"mitigated", "resolved", "closed"})
# Words of a new incident's title and label values the text lookup asks for, at most.
MAX_TERMS = 16
# Labels that say how bad or where, not what: shared by unrelated incidents, so their values are
# not compared (the alertname, service, instance, job... are).
FACETS = frozenset(
    {"severity", "priority", "env", "environment", "stage", "region", "zone", "cluster",
     "datacenter", "prometheus", "replica", "monitor", "receiver"}
)  # fmt: skip
# A title shown in the entry's text is cut to this many characters.
MAX_TITLE = 80

Reason = Literal["same_alert_and_service", "similar_text"]
REASONS: Mapping[Reason, str] = {
    "same_alert_and_service": "the same alert on the same service",
    "similar_text": "a similar title and labels",
}

_WORD = re.compile(r"\w+")


@immutable
class Candidate:
    """A past incident found for a new one: ``score`` is the text match's relevance (bm25,
    higher is closer), None for the same alert and service."""

    id: int
    title: str
    status: str
    opened_at: int
    reason: Reason
    score: float | None = None


def compared_values(labels: Iterable[tuple[str, str]]) -> list[str]:
    """The label values a new incident is compared by: each once, facets (``FACETS``) left
    out."""
    return list(dict.fromkeys(v for k, v in labels if k not in FACETS))


def query_terms(title: str, values: Iterable[str], max_terms: int = MAX_TERMS) -> list[str]:
    """The words of ``title`` and the label ``values`` worth asking the text index for:
    lowercased, each once, in order, at least two characters with a letter among them (numbers
    alone, such as the parts of an address, tell little), at most ``max_terms``."""
    out: dict[str, None] = {}
    for text in (title, *values):
        for word in _WORD.findall(text.lower()):
            if len(word) >= 2 and not word.isdigit() and any(c.isalpha() for c in word):
                out.setdefault(word)
                if len(out) >= max_terms:
                    return list(out)
    return list(out)


def choose(
    incident_id: int,
    by_key: Sequence[Candidate],
    by_text: Sequence[Candidate],
    limit: int = LIMIT,
) -> list[Candidate]:
    """At most ``limit`` past incidents: the same alert and service first (ended ones first,
    newest first), then the text matches by relevance (newest first among equals); each once,
    never ``incident_id`` itself nor anything newer."""
    keyed = sorted(by_key, key=lambda c: (c.status not in ENDED, -c.id))
    texts = sorted(by_text, key=lambda c: (-(c.score or 0.0), -c.id))
    seen: set[int] = set()
    out: list[Candidate] = []
    for c in (*keyed, *texts):
        if c.id >= incident_id or c.id in seen:
            continue
        seen.add(c.id)
        out.append(c)
        if len(out) >= limit:
            break
    return out


def _short(title: str) -> str:
    title = " ".join(title.split())
    return title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 1] + "…"


def similar_event(
    candidates: Sequence[Candidate],
    *,
    url: Callable[[int], str] | None = None,
    postmortems: Mapping[int, str] | None = None,
) -> Event:
    """The timeline entry that names ``candidates``: a line people read in the dedicated
    channel (each incident with its status, when it opened, its page and its postmortem when
    there is one), and the same as data for pages and tools."""
    postmortems = postmortems or {}
    parts: list[str] = []
    listed: list[dict[str, Any]] = []
    for c in candidates:
        link = url(c.id) if url is not None else None
        postmortem = postmortems.get(c.id)
        opened = format_ns(c.opened_at) or ""
        part = f"#{c.id} {_short(c.title)} ({c.status}, opened {opened[:10]})"
        if link:
            part += f" {link}"
        if postmortem:
            part += f", postmortem {postmortem}"
        parts.append(part)
        listed.append(
            {
                "id": c.id,
                "title": c.title,
                "status": c.status,
                "opened_at": opened or None,
                "reason": c.reason,
                "score": c.score,
                "url": link,
                "postmortem_url": postmortem,
            }
        )
    text = "Seen before: " + "; ".join(parts)
    return Event(KIND, text, {"similar": listed}, ACTOR)
