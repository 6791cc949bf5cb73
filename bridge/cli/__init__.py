"""The ``incident-bridge`` command."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from bridge import __version__, logs
from bridge.config import ConfigError, add_serve_arguments, settings_from


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"incident-bridge: {exc}", file=sys.stderr)
        return 2
    secrets = [
        s for s in (settings.webhook_token, settings.basic_password, settings.api_token) if s
    ]
    logs.setup(settings.log_format, settings.log_level, secrets)
    from bridge.app import run
    from bridge.runtime import RulesError

    try:
        asyncio.run(run(settings))
    except RulesError as exc:
        print(
            f"incident-bridge: cannot start: {len(exc.errors)} error(s) in the rules",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"incident-bridge: cannot serve on {settings.listen}: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="incident-bridge",
        description="Runs the incident process behind Prometheus Alertmanager.",
    )
    parser.add_argument("--version", action="version", version=f"incident-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = commands.add_parser("serve", help="run the service")
    add_serve_arguments(serve)
    serve.set_defaults(func=_serve)
    from bridge.cli import notifications as cli_tools
    from bridge.cli import rules as rules_cli

    rules_cli.register(commands)
    cli_tools.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def run() -> None:
    """The console script: `incident-bridge rules show | head` ends quietly, as Unix tools do."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())


if __name__ == "__main__":
    run()
