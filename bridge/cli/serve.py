"""``incident-bridge serve``: run the service until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from typing import Any

from bridge import logs
from bridge.config import ConfigError, Settings, add_serve_arguments, settings_from
from bridge.core.secrets import Secret, credential_forms


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"incident-bridge: {exc}", file=sys.stderr)
        return 2
    if settings.database_url is None and settings.db.is_dir():
        # SQLite would only say "disk I/O error" once the service is starting.
        print(
            f"incident-bridge: --db {settings.db}: is a directory; give the database file's "
            f"path (for example {settings.db / 'incident-bridge.db'})",
            file=sys.stderr,
        )
        return 2
    logs.setup(settings.log_format, settings.log_level, credentials(settings))
    # The service's modules (aiohttp, the store, the worker) load only for this command.
    from bridge.app import run
    from bridge.runtime import RulesError
    from bridge.store.interface import StoreError

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


def credentials(settings: Settings) -> list[str]:
    """Every credential the settings hold, in every form an answer or an exception may show it
    (``core.secrets.credential_forms``): the log lines mask them all."""
    out: list[str] = []
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if isinstance(value, Secret):
            out += credential_forms(token=value)
    out += [form for t in settings.api_tokens for form in credential_forms(token=t.secret)]
    if settings.basic_password is not None:
        out += credential_forms(user=settings.basic_user, password=settings.basic_password)
    if settings.alertmanager_basic_password is not None:
        out += credential_forms(
            user=settings.alertmanager_basic_user, password=settings.alertmanager_basic_password
        )
    for url in (settings.prometheus_url, settings.kb_remote, *settings.alertmanager_urls):
        out += credential_forms(url=url)
    db = settings.database_url
    if db is not None and db.password is not None:  # a URL without one names no secret
        out += credential_forms(url=db.conninfo) + credential_forms(token=db.password)
    return out


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the service")
    add_serve_arguments(serve)
    serve.set_defaults(func=_serve)
