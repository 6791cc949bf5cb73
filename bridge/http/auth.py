"""Request authentication: Bearer and Basic, compared in constant time; the API's scopes."""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web

from bridge.core.secrets import Secret
from bridge.http.errors import HTTPError
from bridge.service.access import ApiAccess


def check(
    header: str | None,
    *,
    token: Secret | None,
    basic_user: str | None = None,
    basic_password: Secret | None = None,
) -> bool:
    """True when the Authorization header carries one of the configured credentials."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and token is not None:
        return token.equals(value)
    if scheme == "basic" and basic_user is not None and basic_password is not None:
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        # Evaluate both comparisons so timing does not tell which part was wrong.
        user_ok = hmac.compare_digest(user, basic_user.encode())
        password_ok = basic_password.equals(password)
        return bool(sep) and user_ok and password_ok
    return False


def challenge(realm: str, *, basic: bool) -> str:
    return f'Basic realm="{realm}"' if basic else f'Bearer realm="{realm}"'


# The names of the unnamed tokens: the actor of what is done with them.
WRITE_TOKEN_NAME = "api"
READ_TOKEN_NAME = "reader"
ANONYMOUS = "anonymous"


def identify(token: str, access: ApiAccess) -> tuple[str, str, Secret] | None:
    """(name, scope, the configured secret) of the token ``token`` is, or None: the API's and
    the web pages' sign-in. Every token is compared (in constant time), so the time taken does
    not tell which one nearly matched."""
    found: tuple[str, str, Secret] | None = None
    if access.write is not None and access.write.equals(token):
        found = (WRITE_TOKEN_NAME, "write", access.write)
    for named in access.named:
        if named.secret.equals(token) and found is None:
            found = (named.name, named.scope, named.secret)
    for read in access.read:
        if read.equals(token) and found is None:
            found = (READ_TOKEN_NAME, "read", read)
    return found


def bearer(request: web.Request) -> str:
    """The token of an ``Authorization: Bearer`` header, or ""."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def authorize(request: web.Request, access: ApiAccess, *, write: bool = False) -> str:
    """The name of the token the request carries, or 401 (no or a wrong token) or 403 (a
    read-only token for a write) unless the request may read, or with ``write`` change, what
    the API holds."""
    token = bearer(request)
    found = identify(token, access) if token else None
    name, scope = (found[0], found[1]) if found is not None else (None, "")
    if name is not None and (scope == "write" or not write):
        return name
    if not write and access.open_reads:
        return ANONYMOUS
    if name is not None:
        raise HTTPError(403, f"the token {name!r} can only read; changes need a write token")
    raise HTTPError(
        401,
        "missing or wrong API token",
        headers={"WWW-Authenticate": challenge("incident-bridge-api", basic=False)},
    )


def may_act_for_others(token: str, access: ApiAccess) -> bool:
    """Whether ``token`` may name another actor than itself: the API token (the operator's,
    which the CLI uses on people's behalf with ``--as``) and named tokens of scope ``act-as``
    (integrations that act for people, such as a chat bot). Every candidate is compared, in
    constant time."""
    allowed = access.write is not None and access.write.equals(token)
    for named in access.named:
        allowed = (named.act_as and named.secret.equals(token)) or allowed
    return allowed


def actor(request: web.Request, access: ApiAccess, token_name: str, named: str | None) -> str:
    """Who a change is recorded as: ``named`` (the body's ``actor``) when the request's token
    may act for others, else the token's own name; naming someone else without that right is
    a 403 naming ``actor``, so a person's token cannot write as anybody else."""
    if named is None or named == token_name:
        return token_name
    if may_act_for_others(bearer(request), access):
        return named
    raise HTTPError(
        403,
        f"the token {token_name!r} acts as {token_name!r} only; naming another actor needs "
        "the API token or a named token of scope act-as",
        field="actor",
    )
