"""Secrets are a type: masked in repr, str, logs, API output and error messages."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

MASK = "<secret>"


class Secret:
    """A string that never shows itself; ``reveal()`` is the only way to get the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def equals(self, other: str | bytes) -> bool:
        """Constant-time comparison."""
        other_b = other.encode() if isinstance(other, str) else other
        return hmac.compare_digest(self._value.encode(), other_b)

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self.equals(other._value)

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def validate(value: Any) -> Secret:
            if isinstance(value, Secret):
                return value
            if isinstance(value, str):
                return Secret(value)
            raise ValueError("must be a string")

        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda _s: MASK),
        )


# Shorter values are not masked: replacing every "ab" in a message would hide the message and
# protect nothing (a credential that short is not one).
MIN_MASKED = 4


def credential_forms(
    *,
    token: Secret | str | None = None,
    user: str | None = None,
    password: Secret | str | None = None,
    url: str | None = None,
) -> tuple[str, ...]:
    """Every form in which an outbound client's credentials can come back in an answer or an
    exception: the token; the password as given and percent-encoded; ``user:password`` in
    base64 (the payload of ``Authorization: Basic``, which auth proxies and gateways echo), in
    UTF-8 and in Latin-1; and the user and password of a URL (``http://user:pass@host``) in all
    the same forms, with the URL as given. Longest first, so that masking a longer form is not
    spoiled by a shorter one inside it."""
    forms: list[str] = []

    def reveal(value: Secret | str | None) -> str:
        return value.reveal() if isinstance(value, Secret) else (value or "")

    def basic(name: str, secret: str) -> None:
        forms.extend((secret, quote(secret, safe=""), quote(secret, safe="!$&'()*+,;=")))
        for encoding in ("utf-8", "latin-1"):
            try:
                pair = f"{name}:{secret}".encode(encoding)
            except UnicodeEncodeError:
                continue
            forms.append(base64.b64encode(pair).decode("ascii"))

    forms.append(reveal(token))
    if user is not None or password is not None:
        basic(user or "", reveal(password))
    if url:
        try:
            parts = urlsplit(url)
            url_password = parts.password
            url_user = parts.username
        except ValueError:
            url_password = url_user = None
        if url_password is not None or url_user is not None:
            forms.append(url)
            raw = url_password or ""
            forms.append(raw)
            basic(unquote(url_user or ""), unquote(raw))
    kept = {f for f in forms if len(f) >= MIN_MASKED}
    return tuple(sorted(kept, key=len, reverse=True))


def mask(text: str, forms: Iterable[str], replacement: str = MASK) -> str:
    """``text`` with every credential form in ``forms`` (``credential_forms``) replaced."""
    for form in forms:
        if len(form) >= MIN_MASKED:
            text = text.replace(form, replacement)
    return text
