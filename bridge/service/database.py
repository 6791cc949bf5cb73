"""Which store the settings ask for: SQLite's file (the default) or PostgreSQL's URL."""

from __future__ import annotations

from bridge.config import Settings
from bridge.store import new_store as _new
from bridge.store.interface import StoreInterface


def new_store(settings: Settings) -> StoreInterface:
    """The store of ``settings``, not yet open."""
    return _new(
        settings.db,
        url=settings.database_url,
        password=settings.db_password,
        pool_size=settings.db_pool_size,
        statement_timeout_s=settings.db_statement_timeout_s,
        synchronous=settings.sqlite_synchronous,  # type: ignore[arg-type]
    )


def describe(settings: Settings) -> str:
    """The database as messages name it (a URL's password masked)."""
    if settings.database_url is not None:
        return settings.database_url.masked
    return str(settings.db)
