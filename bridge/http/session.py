"""The web pages' sign-in: who a browser is, from a signed session cookie or (opt-in) a header
set by a trusted reverse proxy, and the CSRF token of its forms.

A person signs in with an API token (docs/web.md). The cookie holds no token: the token's
name, its scope, a fingerprint of it (so that a token removed from the configuration, at a
reload or a restart, ends the sessions made with it), when it expires, a random nonce that is
the session's CSRF token, and the session's id; all signed with HMAC-SHA256 under one key
(``signing_key``): ``--session-key-file`` when given; else on SQLite a key kept beside the
database (``<db>.session-key``, made at first start, readable by its owner only), and on
PostgreSQL one key kept in the database, made by the first replica that asks and read by every
other, so that a cookie signed by one replica is good on all (``database_key``).
The cookie is ``HttpOnly``, ``SameSite=Strict``, and ``Secure`` when the service is reached over
TLS.

A signature is not enough: the session must also be live in the database
(``store/sessions.py``), where a sign-out or a token's removal ends it, so that a copied cookie
stops working then, across restarts and for every process on the same database. The pages'
middleware (``check_session``) asks the database once per request that carries the cookie;
``viewer_from_cookie`` then takes only the session it found live.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.config import Settings
from bridge.http.auth import ANONYMOUS, READ_TOKEN_NAME, WRITE_TOKEN_NAME
from bridge.private_files import UnsafeFile, read_private, write_private
from bridge.service.access import ApiAccess, token_fingerprint
from bridge.store.interface import StoreError, StoreInterface, StoreUnavailable

COOKIE = "ib_session"
# The id of the request's session once the database has said it is live (check_session).
LIVE_SESSION = web.RequestKey("live_session", str)
MAX_AGE_S = 12 * 3600
WRITE, READ = "write", "read"


@dataclass(frozen=True)
class Viewer:
    """Who looks at a page: a name, a scope (``write`` may act), the CSRF token of the forms
    (empty when the viewer cannot post), and how they came (``session``, ``header``, ``open``)."""

    name: str
    scope: str
    csrf: str = ""
    via: str = "session"

    @property
    def can_write(self) -> bool:
        return self.scope == WRITE and bool(self.csrf)


def key_path(db: Path) -> Path:
    return db.with_name(db.name + ".session-key")


def ensure_key(db: Path) -> bytes:
    """The signing key: read from ``<db>.session-key``, or made (32 random bytes) there, 0600."""
    path = key_path(db)
    # Only the service's own private file: a key another user planted or can read would let
    # them sign any cookie; a symbolic link is neither read nor written through.
    try:
        text = read_private(path) or ""
        if len(text) < 32:
            text = secrets.token_urlsafe(32)
            write_private(path, text)
    except UnsafeFile as exc:  # planted after the start-up check: one line, not a traceback
        raise StoreError(str(exc)) from None
    return text.encode()


def signing_key(settings: Settings) -> bytes | None:
    """The key the settings give (``--session-key-file``), else SQLite's file; None on
    PostgreSQL without one: the database's, read when the app starts (``database_key``)."""
    if settings.session_key is not None:
        return settings.session_key.reveal().encode()
    if settings.database_url is not None:
        return None  # never a key of this process's own: the other replicas would refuse it
    return ensure_key(settings.db)


# The name of the session key in the database's shared secrets (store/coordination.py).
SHARED_KEY_NAME = "session_key"


async def database_key(store: StoreInterface) -> bytes:
    """The one key of every replica on the database: made by the first to ask (32 random
    bytes), read by the others."""
    try:
        text = await store.coordination.shared_secret(
            name=SHARED_KEY_NAME, candidate=secrets.token_urlsafe(32), now=time.time_ns()
        )
    except StoreUnavailable as exc:
        raise StoreError(
            f"the web session key could not be read from the database: {exc}"
        ) from None
    return text.encode()


def new_session_id() -> str:
    return secrets.token_urlsafe(24)


def id_hash(session_id: str) -> str:
    """What the database keeps of a session's id: its SHA-256, never the id itself."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def _still_configured(name: str, scope: str, fp: str, access: ApiAccess) -> bool:
    if name == WRITE_TOKEN_NAME and access.write is not None:
        return scope == WRITE and hmac.compare_digest(fp, token_fingerprint(access.write))
    for named in access.named:
        if named.name == name:
            return named.scope == scope and hmac.compare_digest(fp, token_fingerprint(named.secret))
    if name == READ_TOKEN_NAME:
        return scope == READ and any(
            hmac.compare_digest(fp, token_fingerprint(r)) for r in access.read
        )
    return False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def make_cookie(key: bytes, name: str, scope: str, fp: str, now_s: float, session_id: str) -> str:
    body = {
        "n": name,
        "s": scope,
        "f": fp,
        "e": int(now_s + MAX_AGE_S),
        "c": secrets.token_urlsafe(24),
        "i": session_id,
    }
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_sign(key, payload)}"


def read_cookie(key: bytes, value: str, now_s: float) -> dict[str, Any] | None:
    payload, sep, mac = value.partition(".")
    if not sep or not hmac.compare_digest(mac, _sign(key, payload)):
        return None
    try:
        body = json.loads(_unb64(payload))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("e"), int) or body["e"] < now_s:
        return None
    # a cookie without a session id (made before sessions were kept) is signed in again
    if not all(isinstance(body.get(k), str) for k in ("n", "s", "f", "c", "i")):
        return None
    return body


def set_cookie(response: web.StreamResponse, value: str, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=secure,
    )


def clear_cookie(response: web.StreamResponse, *, secure: bool) -> None:
    response.del_cookie(COOKIE, path="/", secure=secure, httponly=True, samesite="Strict")


def viewer_from_cookie(
    request: web.Request, key: bytes, access: ApiAccess, now_s: float
) -> Viewer | None:
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    body = read_cookie(key, value, now_s)
    if body is None or body["f"] == "header":
        return None
    if request.get(LIVE_SESSION) != body["i"]:
        return None  # signed out, ended by a token's removal, or not known to the database
    if not _still_configured(body["n"], body["s"], body["f"], access):
        return None
    return Viewer(body["n"], body["s"], body["c"], "session")


async def check_session(
    request: web.Request, key: bytes, store: StoreInterface, now_s: float
) -> None:
    """When the request's cookie is well signed and names a session the database holds live,
    mark the request with it (``LIVE_SESSION``). A store that cannot answer leaves it unmarked:
    nobody is signed in on a session the service cannot check."""
    value = request.cookies.get(COOKIE)
    body = read_cookie(key, value, now_s) if value else None
    if body is None:
        return
    try:
        live = await store.sessions.is_live(id_hash=id_hash(body["i"]), now=int(now_s * 1e9))
    except StoreUnavailable:
        return
    if live:
        request[LIVE_SESSION] = body["i"]


def csrf_ok(viewer: Viewer, given: str) -> bool:
    return bool(viewer.csrf) and hmac.compare_digest(viewer.csrf.encode(), given.encode())


# --- the trusted header (--web-user-header) ----------------------------------------------------

# Without --web-user-header-trusted-proxy only a proxy on this machine may name people.
LOOPBACK = ("127.0.0.0/8", "::1/128")
# Names the service writes on the timeline itself, and the API's unnamed tokens: a person named
# by the header is never one of them, nor a namespaced chat person (``slack:U123``), nor a
# named token, so that the timeline never mixes who did what.
SYSTEM_ACTORS = frozenset(
    {
        WRITE_TOKEN_NAME,
        READ_TOKEN_NAME,
        ANONYMOUS,
        "alertmanager",
        "alertmanager-api",
        "incident-bridge",
        "knowledge-base",
    }
)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def _networks(given: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in (given or LOOPBACK))


def from_trusted_proxy(remote: str | None, trusted: tuple[str, ...]) -> bool:
    """Whether the peer ``remote`` (the TCP connection's, never a forwarded header) is one of
    the trusted proxies (loopback when none is configured)."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(trusted))


def header_refusal(
    request: web.Request, header: str, trusted: tuple[str, ...]
) -> tuple[int, str] | None:
    """The status and the reason a request carrying the user header is refused, or None:
    given twice (400: a proxy that
    appends instead of replacing would let the client choose the first), or from a peer that
    is not a trusted proxy (403: anyone reaching the service directly could name themselves)."""
    values = request.headers.getall(header, [])
    if not values:
        return None
    if len(values) > 1:
        return 400, f"the header {header} is given {len(values)} times; the proxy must replace it"
    if not from_trusted_proxy(request.remote, trusted):
        return 403, (
            f"the header {header} is taken only from a trusted proxy "
            "(--web-user-header-trusted-proxy); this request came from elsewhere"
        )
    return None


def reserved_name(name: str, access: ApiAccess) -> bool:
    """A name the header may not give: the service's own actors, a chat person's namespace, or
    an API token's name (compared without case)."""
    folded = name.casefold()
    if folded in SYSTEM_ACTORS or ":" in name:
        return True
    return any(token.name.casefold() == folded for token in access.named)


def header_csrf(key: bytes, user: str, nonce: str) -> str:
    """The CSRF token of a viewer named by the trusted header: bound to a random nonce kept in
    its own cookie, so that it cannot be guessed from the name."""
    return _sign(key, f"header|{user}|{nonce}")
