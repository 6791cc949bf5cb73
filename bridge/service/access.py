"""Who may use the API: the tokens of the settings (write, read, named with scopes) and the
write token generated into ``<db>.api-token`` when none is configured (SQLite only); what a
web session keeps of the token it was made with (``token_fingerprint``)."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from bridge.config import ApiToken, Settings, api_token_path, is_loopback
from bridge.core.secrets import Secret
from bridge.private_files import UnsafeFile, read_private, write_private
from bridge.store.interface import StoreError

# The service's logger: its lines read as they did when this was part of bridge.service.
log = logging.getLogger("bridge.service")


@dataclass(frozen=True)
class ApiAccess:
    """Who may use the API. Writes (anything that changes state) need ``write``; reads need a
    token too unless ``open_reads``. Health, readiness and /metrics are always open."""

    write: Secret | None = None  # None: nothing can be written through the API
    read: tuple[Secret, ...] = ()
    open_reads: bool = True
    token_file: Path | None = None  # where a generated write token is kept
    named: tuple[ApiToken, ...] = ()  # --api-tokens-file


def token_fingerprint(secret: Secret | str) -> str:
    """What a session keeps of the token it was made with: enough to tell that the token was
    removed or changed, nothing to find it back by."""
    raw = secret.reveal() if isinstance(secret, Secret) else secret
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def access_fingerprints(access: ApiAccess) -> set[str]:
    secrets_ = [access.write, *access.read, *(n.secret for n in access.named)]
    return {token_fingerprint(s) for s in secrets_ if s is not None}


def api_access(settings: Settings, generated: Secret | None = None) -> ApiAccess:
    """Reads are open only on a loopback listener with no token configured, or when the
    operator says so (``--insecure-open-read-api``)."""
    configured = (
        settings.api_token is not None
        or settings.api_read_token is not None
        or bool(settings.api_tokens)
    )
    open_reads = settings.insecure_open_read_api or (is_loopback(settings.host) and not configured)
    read = (settings.api_read_token,) if settings.api_read_token is not None else ()
    write = settings.api_token or generated
    return ApiAccess(
        write=write,
        read=read,
        open_reads=open_reads,
        token_file=api_token_path(settings.db) if settings.api_token is None else None,
        named=settings.api_tokens,
    )


def ensure_api_token(settings: Settings) -> Secret | None:
    """The generated write token when none is configured: read from ``<db>.api-token``, or
    made (32 random bytes) and written there readable by its owner only. SQLite only: on
    PostgreSQL every replica must accept the same tokens, and a file each made for itself
    would be a different token per replica, so a token must be configured (``StoreError``,
    which ``serve`` says before it exits, when none is)."""
    if settings.api_token is not None:
        return None
    if settings.database_url is not None:
        if any(t.scope == "write" for t in settings.api_tokens):
            return None  # writes through the named tokens; nothing generated
        raise StoreError(
            "with PostgreSQL (replicas), the API token must be configured, the same on every "
            "replica: --api-token-file FILE or INCIDENT_BRIDGE_API_TOKEN (or a write token in "
            "--api-tokens-file); a token generated into a file per replica would differ"
        )
    path = api_token_path(settings.db)
    # Trusted only as the service's own private file: a token planted by another user, or a
    # symbolic link to a file anyone can read, would be a write token others know.
    try:
        text = read_private(path) or ""
        if not text:
            text = secrets.token_urlsafe(32)
            write_private(path, text)
            log.info("API token generated in %s (readable by this user only)", path)
    except UnsafeFile as exc:  # planted after the start-up check: one line, not a traceback
        raise StoreError(str(exc)) from None
    return Secret(text)
