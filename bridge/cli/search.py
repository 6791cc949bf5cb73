"""``incident-bridge search TEXT...``: full-text search through the running service's API
(``GET /api/v1/search``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bridge.cli import apiclient

TITLE_WIDTH = 60


def _clean(value: Any) -> str:
    """One line of text as the API gave it, safe for a terminal."""
    return apiclient.printable(str(value if value is not None else "-")).replace("\n", " ")


def _where(hit: dict[str, Any]) -> str:
    kind = _clean(hit["kind"])
    if kind == "incident":
        return "incident"
    if kind == "postmortem":
        return "postmortem"
    return f"{kind.replace('_', ' ')} #{_clean(hit['ref'])}"


@apiclient.guarded
def _search(args: argparse.Namespace) -> int:
    query = {"q": " ".join(args.text), "limit": str(args.limit)}
    answer = apiclient.Client.from_args(args).get("/api/v1/search", query)
    if not answer.ok:
        return apiclient.fail(answer.error())
    if args.output == "json":
        print(json.dumps(answer.body, indent=2, ensure_ascii=False))
        return 0
    results = answer.body["results"]
    if not results:
        print("no incidents match")
        return 0
    for hit in results:
        title = _clean(hit["title"])
        if len(title) > TITLE_WIDTH:
            title = title[: TITLE_WIDTH - 1] + "…"
        opened = _clean(hit["opened_at"])[:10]
        print(
            f"#{hit['incident_id']}  {_clean(hit['status'])}  {_clean(hit['severity'])}  "
            f"{opened}  {title}"
        )
        print(f"    {_where(hit)}: {_clean(hit['snippet'])}")
    return 0


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "search",
        help="full-text search over incidents, their timelines and postmortems",
        description="Incidents whose title, labels, timeline or postmortem match TEXT, best "
        'first: every word in one document; "a phrase", -word (or NOT word) to exclude, OR '
        "between two words for either, word* for a prefix.",
    )
    apiclient.add_flags(parser)
    parser.add_argument("text", nargs="+", metavar="TEXT", help="the words to look for")
    parser.add_argument(
        "--limit", type=int, default=20, help="how many incidents at most (1-100, default 20)"
    )
    apiclient.add_output(parser)
    parser.set_defaults(func=_search)
