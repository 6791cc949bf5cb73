"""The store's exceptions: what a caller outside the store may catch, whatever the database.
A backend maps its own driver's errors to these (SQLite's ``sqlite3.DatabaseError`` becomes
``StoreUnavailable``); no caller sees a driver's type."""

from __future__ import annotations


class StoreError(Exception):
    """The database cannot be used at all (in use, foreign, corrupt, unreadable); the message
    names the file and says why. Raised by ``open``, which then changed nothing."""


class StoreUnavailable(Exception):
    """The database cannot take writes now (locked, full, read-only, closed, damaged)."""


class QueryError(ValueError):
    """What a person typed cannot be searched for; the message says why."""


class BackupError(Exception):
    """The backup or the check could not be done; the message names the file and says why."""


class DestinationExists(BackupError):
    """The backup's destination exists and ``force`` was not given."""
