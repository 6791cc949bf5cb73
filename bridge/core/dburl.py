"""A PostgreSQL URL as ``--db`` takes it: ``postgresql://user@host:port/dbname?sslmode=...``.

The URL is handed to libpq as it is (every libpq parameter works in its query: ``sslmode``,
``sslrootcert``, ``service``, ``connect_timeout``...), so that PGPASSFILE, a service file and
PGPASSWORD keep working. ``masked`` is the only form messages show: a password written in the
URL becomes ``***``, and so does any ``password`` parameter of its query.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")


class UrlError(ValueError):
    """What is wrong with a URL given for the database (the password never shown)."""


def is_postgres(value: str) -> bool:
    return value.split("://", 1)[0].lower() in SCHEMES and "://" in value


@dataclass(frozen=True)
class DatabaseUrl:
    conninfo: str  # as given: libpq reads it
    masked: str
    has_password: bool

    @property
    def password(self) -> str | None:
        """The password written in the URL (its user part or a ``password`` parameter)."""
        parts = urlsplit(self.conninfo)
        if parts.password is not None:
            return unquote(parts.password)
        return dict(parse_qsl(parts.query, keep_blank_values=True)).get("password")

    @classmethod
    def parse(cls, value: str) -> DatabaseUrl:
        if not is_postgres(value):
            raise UrlError("not a postgresql:// URL")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as exc:
            raise UrlError(f"not a valid URL ({_plain(exc)})") from None
        query = parse_qsl(parts.query, keep_blank_values=True)
        secret_query = any(k == "password" for k, _ in query)
        has_password = parts.password is not None or secret_query
        netloc = parts.netloc
        if parts.password is not None:
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.split(':', 1)[0]}:***@{host}"
        shown_query = urlencode(
            [(k, "***" if k == "password" else v) for k, v in query], safe="/:*"
        )
        masked = urlunsplit((parts.scheme, netloc, parts.path, shown_query, ""))
        if (
            not parts.path.strip("/")
            and "dbname" not in dict(query)
            and "service" not in dict(query)
        ):
            raise UrlError(f"{masked}: no database name (postgresql://user@host:5432/DBNAME)")
        return cls(conninfo=value, masked=masked, has_password=has_password)

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"DatabaseUrl({self.masked!r})"


def _plain(exc: ValueError) -> str:
    # urllib's messages quote no part of the URL, so they cannot leak a password
    return str(exc)
