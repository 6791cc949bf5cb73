"""The ``incident-bridge`` command: one entry point, one module per command group."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from bridge import __version__
from bridge.cli import (
    db,
    demo,
    drill,
    incident,
    notifications,
    oncall,
    postmortem,
    report,
    rules,
    search,
    serve,
    template,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="incident-bridge",
        description="Runs the incident process behind Prometheus Alertmanager.",
    )
    parser.add_argument("--version", action="version", version=f"incident-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (
        serve,
        rules,
        incident,
        oncall,
        postmortem,
        notifications,
        search,
        report,
        drill,
        template,
        db,
        demo,
    ):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


def run() -> None:
    """The console script (and ``python -m bridge``): ``incident-bridge rules show | head``
    ends quietly, as Unix tools do. Only here: in-process callers (tests, the service's own
    sockets) keep Python's SIGPIPE handling."""
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
