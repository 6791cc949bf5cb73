"""``incident-bridge search TEXT...``: full-text search through the running service's API
(``GET /api/v1/search``)."""

from __future__ import annotations

import argparse
from typing import Any

from bridge.cli import apiclient
from bridge.cli.fmt import cut, fetch, shown_text

TITLE_WIDTH = 60


def _where(hit: dict[str, Any]) -> str:
    kind = shown_text(hit["kind"])
    if kind == "incident":
        return "incident"
    if kind == "postmortem":
        return "postmortem"
    return f"{kind.replace('_', ' ')} #{shown_text(hit['ref'])}"


# This command's own flags (those that take a value): after ``--`` they are still flags. ``--``
# is needed for a first word like ``-staging``, and argparse takes everything after it as TEXT,
# so ``search -- -staging disk --limit 5`` would search for "--limit 5" and ignore the limit.
_FLAGS = ("--limit", "-o", "--output", "--url", "--token", "--token-file", "--db")


def _flags_in_text(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with this command's flags that stood among the words taken out of TEXT and
    parsed as flags (their values checked as anywhere else: a bad one is a usage error)."""
    words, flags = list(args.text), []
    i = 0
    while i < len(words):
        name = words[i].split("=", 1)[0] if words[i].startswith("--") else words[i]
        if name in _FLAGS:
            inline = name != words[i]
            taken = words[i : i + (1 if inline else 2)]
            flags += taken
            del words[i : i + len(taken)]
        else:
            i += 1
    if not flags:
        return args
    if not words:
        args.parser.error("the following arguments are required: TEXT")
    parsed: argparse.Namespace = args.parser.parse_args([*flags, "--", *words])
    # Flags given before "--" stay unless given again after it.
    for name, value in vars(args).items():
        if name != "text" and vars(parsed).get(name) == args.parser.get_default(name):
            setattr(parsed, name, value)
    return parsed


@apiclient.guarded
def _search(args: argparse.Namespace) -> int:
    args = _flags_in_text(args)
    query = {"q": " ".join(args.text), "limit": str(args.limit)}
    body = fetch(args, "/api/v1/search", query)
    if body is not None:
        print("\n".join(_hits(body["results"])) or "no incidents match")
    return 0


def _hits(results: list[dict[str, Any]]) -> list[str]:
    """Two lines a hit: the incident, and where it matched with the snippet."""
    lines = []
    for hit in results:
        title = cut(shown_text(hit["title"]), TITLE_WIDTH)
        opened = shown_text(hit["opened_at"])[:10]
        lines.append(
            f"#{hit['incident_id']}  {shown_text(hit['status'])}  {shown_text(hit['severity'])}  "
            f"{opened}  {title}"
        )
        lines.append(f"    {_where(hit)}: {shown_text(hit['snippet'])}")
    return lines


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
    parser.set_defaults(func=_search, parser=parser)
