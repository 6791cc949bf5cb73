"""``incident-bridge serve``: run the service until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from bridge import logs
from bridge.config import ConfigError, add_serve_arguments, settings_from


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"incident-bridge: {exc}", file=sys.stderr)
        return 2
    secrets = [
        s
        for s in (
            settings.webhook_token,
            settings.basic_password,
            settings.api_token,
            settings.api_read_token,
        )
        if s
    ]
    logs.setup(settings.log_format, settings.log_level, secrets)
    # The service's modules (aiohttp, the store, the worker) load only for this command.
    from bridge.app import run
    from bridge.runtime import RulesError
    from bridge.store import StoreError

    try:
        asyncio.run(run(settings))
    except RulesError as exc:
        print(
            f"incident-bridge: cannot start: {len(exc.errors)} error(s) in the rules",
            file=sys.stderr,
        )
        return 1
    except StoreError as exc:
        print(f"incident-bridge: cannot start: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"incident-bridge: cannot serve on {settings.listen}: {exc}", file=sys.stderr)
        return 1
    return 0


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the service")
    add_serve_arguments(serve)
    serve.set_defaults(func=_serve)
