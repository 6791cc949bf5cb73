"""``incident-bridge postmortem ...``: show, edit, list, diff and publish an incident's postmortem
through the running service's API (``/api/v1/incidents/{id}/postmortem``, docs/postmortems.md);
nothing here touches the database or the knowledge base.

``show`` prints the rendered Markdown (redirect it to a file to read it in an editor), ``-o
json`` the API's answer. ``edit`` saves one section (``--text``, or ``--file``, ``-`` for
stdin) with an ``Idempotency-Key``, so a retry after a lost connection saves it once.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

from bridge.cli import apiclient, fmt
from bridge.core.postmortem import MAX_SECTION, SECTIONS


def _path(args: argparse.Namespace, tail: str = "") -> str:
    return f"/api/v1/incidents/{args.id}/postmortem{tail}"


def _version(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a version (a number, 0 for none)")
    return int(text)


@apiclient.guarded
def _show(args: argparse.Namespace) -> int:
    query = {"version": str(args.version)} if args.version is not None else None
    body = fmt.fetch(args, _path(args), query)
    if body is not None:
        sys.stdout.write(apiclient.printable(str(body["markdown"])))
    return 0


def _section_text(args: argparse.Namespace) -> str:
    if args.text is not None:
        return str(args.text)
    try:
        if args.file == "-":
            return sys.stdin.read()
        return Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise apiclient.Usage(f"--file {args.file}: {reason}") from None


@apiclient.guarded
def _edit(args: argparse.Namespace) -> int:
    text = _section_text(args)
    if len(text) > MAX_SECTION:
        raise apiclient.Usage(f"the section has {len(text)} characters; at most {MAX_SECTION}")
    body: dict[str, Any] = {"sections": {args.section: text}}
    if args.actor is not None:
        body["actor"] = args.actor
    key = args.idempotency_key or f"incident-bridge-cli-{uuid.uuid4()}"
    answer = apiclient.Client.from_args(args).post(_path(args), body, idempotency_key=key)
    if not answer.ok:
        return apiclient.fail(answer.error())
    if args.output == "json":
        return fmt.print_json(answer.body)
    if not answer.body["changed"]:
        print(f"#{args.id}: nothing to change (the {args.section} already reads so)")
    for event in answer.body["events"]:
        print(f"#{args.id} {fmt.shown_text(event.get('text'))}")
    return 0


@apiclient.guarded
def _versions(args: argparse.Namespace) -> int:
    body = fmt.fetch(args, _path(args, "/versions"))
    if body is None:
        return 0
    versions = body["versions"]
    if not versions:
        print(f"#{args.id}: no version saved yet")
    else:
        rows = [["VERSION", "SAVED", "AUTHOR", "SECTIONS"]]
        for v in versions:
            rows.append(
                [
                    f"v{v['version']}",
                    fmt.shown_time(v.get("saved_at")),
                    fmt.shown_text(v.get("author")),
                    ", ".join(fmt.shown_text(s) for s in v.get("sections") or []) or "-",
                ]
            )
        print("\n".join(fmt.table(rows)))
    for p in body["publications"]:
        where = fmt.shown_text(p.get("path")) or "(recorded only)"
        commit = f" commit {fmt.shown_text(p['commit'])[:12]}" if p.get("commit") else ""
        print(
            f"published v{p['version']} {fmt.shown_time(p.get('published_at'))} by "
            f"{fmt.shown_text(p.get('published_by'))}: {where}{commit}"
        )
    return 0


@apiclient.guarded
def _diff(args: argparse.Namespace) -> int:
    query = {"from": str(args.a), "to": str(args.b)}
    body = fmt.fetch(args, _path(args, "/diff"), query)
    if body is None:
        return 0
    text = str(body["diff"])
    if not text:
        print(f"#{args.id}: v{args.a} and v{args.b} read the same")
        return 0
    sys.stdout.write(apiclient.printable(text))
    return 0


@apiclient.guarded
def _publish(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.actor is not None:
        body["actor"] = args.actor
    # Sent once: publishing again is harmless (nothing changed: nothing recorded), but it is
    # the person's call, not a retry's.
    answer = apiclient.Client.from_args(args).post(
        _path(args, "/publish"), body, idempotency_key=None
    )
    if not answer.ok:
        return apiclient.fail(answer.error())
    if args.output == "json":
        return fmt.print_json(answer.body)
    body = answer.body
    publication = body["publication"]
    if not body["changed"]:
        print(f"#{args.id}: nothing to change (v{publication['version']} is published as it is)")
    for event in body["events"]:
        text = fmt.shown_text(event.get("text"))
        if event.get("kind") == "status_changed":
            text = text[:1].lower() + text[1:]  # "closed by alice"
        print(f"#{args.id} {text}")
    if publication.get("pushed"):
        print(f"#{args.id} the knowledge base will be pushed (see incident-bridge notifications)")
    return 0


def register(commands: Any) -> None:
    group = commands.add_parser(
        "postmortem",
        help="show, edit, diff and publish an incident's postmortem (through the service's API)",
    )
    sub = group.add_subparsers(dest="postmortem_command", metavar="COMMAND", required=True)
    common, write = fmt.api_parents()

    def command(name: str, summary: str, func: Any, *, writes: bool) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, parents=[write if writes else common], help=summary
        )
        parser.set_defaults(func=func, parser=parser)
        parser.add_argument("id", type=fmt.parse_id, metavar="ID", help="the incident (12 or #12)")
        return parser

    show = command("show", "the postmortem as Markdown (the newest version)", _show, writes=False)
    show.add_argument("--version", type=_version, metavar="N", help="a saved version instead")

    edit = command("edit", "save one section of the narrative (a new version)", _edit,
                   writes=True)  # fmt: skip
    edit.add_argument("--section", required=True, choices=SECTIONS, metavar="NAME",
                      help=", ".join(SECTIONS))  # fmt: skip
    text = edit.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", metavar="T", help="the section's Markdown ('' clears it)")
    text.add_argument("--file", metavar="F", help="read it from a file (- for stdin)")
    edit.add_argument(
        "--idempotency-key",
        type=fmt.parse_key,
        metavar="KEY",
        help="the save's Idempotency-Key (default: a new one per invocation)",
    )

    command("versions", "the saved versions and the publications", _versions, writes=False)
    diff = command("diff", "what changed between two versions (0: nothing written)", _diff,
                   writes=False)  # fmt: skip
    diff.add_argument("a", type=_version, metavar="A", help="the older version")
    diff.add_argument("b", type=_version, metavar="B", help="the newer version")
    command("publish", "publish the newest version and close the incident", _publish,
            writes=True)  # fmt: skip
