"""What the API commands share: the arguments they read (ids, ``Idempotency-Key`` values) and
how an answer reads in a terminal (times, one line of text, a table)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bridge.cli import apiclient
from bridge.core.timeutil import NS, parse_rfc3339

MAX_KEY = 255


def parse_id(text: str) -> int:
    """An incident or entry id: ``12`` or ``#12``, as the output shows them."""
    digits = text.removeprefix("#")
    if not (digits.isascii() and digits.isdigit()) or int(digits) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (a positive number)")
    return int(digits)


def parse_key(text: str) -> str:
    if not (0 < len(text) <= MAX_KEY and text.isascii() and text.isprintable()):
        raise argparse.ArgumentTypeError(f"1 to {MAX_KEY} printable ASCII characters")
    return text


def ns_or_none(value: Any) -> int | None:
    """An RFC 3339 time from the API in ns; None for none or one that does not parse."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


def shown_time(value: Any) -> str:
    """An RFC 3339 time as ``2026-11-28 09:31:22Z``; ``-`` for none."""
    ns = ns_or_none(value)
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns // NS, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def shown_text(value: Any) -> str:
    """One line of text as the API gave it, safe for a terminal."""
    return apiclient.printable(str(value if value is not None else "-")).replace("\n", " ")


def table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def cut(text: str, width: int) -> str:
    """A title cut to ``width`` characters, an ellipsis showing where."""
    return text if len(text) <= width else text[: width - 1] + "…"


def print_json(body: Any) -> int:
    """``-o json``: the API's answer as it came, for scripts."""
    print(json.dumps(body, indent=2, ensure_ascii=False))
    return 0


def fetch(
    args: argparse.Namespace, path: str, query: Mapping[str, str | Sequence[str]] | None = None
) -> Any:
    """A read for a command to show: the API's answer; None once ``-o json`` printed it as it
    came. An error answer is a ``Failure``: one line on stderr, exit 1 (``guarded``)."""
    answer = apiclient.Client.from_args(args).get(path, query)
    if not answer.ok:
        raise apiclient.Failure(answer.error())
    if args.output == "json":
        print_json(answer.body)
        return None
    return answer.body


def api_parents() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The flags every API command takes (where the service is, its token, ``-o``), and those
    of a change besides them (who acts): parents for the commands' parsers."""
    common = argparse.ArgumentParser(add_help=False)
    apiclient.add_flags(common)
    apiclient.add_output(common)
    write = argparse.ArgumentParser(add_help=False, parents=[common])
    apiclient.add_actor(write)
    return common, write
