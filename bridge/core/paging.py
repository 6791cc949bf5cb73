"""Paging targets' acknowledgement from a phone, the pure parts: the per-page token in a
callback URL, Twilio's request signature, and the TwiML a call reads.

A paging target (``twilio``, ``ntfy``, ``pushover``) gives its vendor a callback URL of ours,
``{callback_url}/api/v1/callbacks/{type}/{token}``; the token names the target, the incident
and the person paged, expires, and is signed with a key only the target's settings give (its
vendor credential, or ``callback_secret``): nobody can forge one for another incident, and a
token of one target is refused by another. The vendor's own proof comes on top (Twilio's
``X-Twilio-Signature``, Pushover's receipt asked back from its API).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

CALLBACK_PREFIX = "/api/v1/callbacks"
# The token's signature: 128 bits of HMAC-SHA256 are plenty against forgery and keep URLs short.
_MAC_BYTES = 16
MAX_TOKEN_CHARS = 1024


@dataclass(frozen=True)
class PageToken:
    """What a callback URL stands for: ``target`` paged ``person`` about ``incident``
    (``page``: the outbox row, so that two pages of one incident have two tokens)."""

    target: str
    incident: int
    person: str
    page: int
    expires: int  # Unix seconds

    def payload(self) -> bytes:
        data = {"t": self.target, "i": self.incident, "p": self.person, "n": self.page}
        data["e"] = self.expires
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def callback_key(type_name: str, target: str, credential: str) -> bytes:
    """The key a target signs its tokens with: derived from its credential, so the credential
    itself is never the MAC key of something else, and each target's key differs."""
    label = f"incident-bridge callback {type_name} {target}".encode()
    return hmac.new(credential.encode(), label, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_token(token: PageToken, key: bytes) -> str:
    payload = token.payload()
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return f"{_b64(payload)}.{_b64(mac)}"


def token_target(text: str) -> str | None:
    """The target a token names, unverified: which target's key to check it with."""
    token = _parse(text)
    return None if token is None else token.target


def _parse(text: str) -> PageToken | None:
    if len(text) > MAX_TOKEN_CHARS or text.count(".") != 1:
        return None
    body, _ = text.split(".")
    try:
        data = json.loads(_unb64(body))
        token = PageToken(
            target=str(data["t"]),
            incident=int(data["i"]),
            person=str(data["p"]),
            page=int(data["n"]),
            expires=int(data["e"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
    return token


def decode_token(text: str, key: bytes, now: float) -> PageToken | None:
    """The token if its signature is the key's and it has not expired, else None."""
    token = _parse(text)
    if token is None:
        return None
    body, mac = text.split(".")
    try:
        given = _unb64(mac)
        payload = _unb64(body)
    except ValueError:
        return None
    expected = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    if not hmac.compare_digest(given, expected) or now > token.expires:
        return None
    return token


def callback_url(base: str, type_name: str, token: str) -> str:
    return f"{base.rstrip('/')}{CALLBACK_PREFIX}/{type_name}/{token}"


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's ``X-Twilio-Signature``: HMAC-SHA1 with the auth token over the full URL it
    called followed by each POST parameter's name and value, sorted by name, base64."""
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def spoken(text: str, limit: int = 300) -> str:
    """Text fit to be read aloud: control characters gone, at most ``limit`` characters."""
    clean = "".join(c if c.isprintable() else " " for c in text)
    clean = " ".join(clean.split())
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def twiml_page(message: str, action: str | None, *, language: str = "en-US") -> str:
    """The call: ``message`` read, then (with an ``action`` URL) "press 1 to acknowledge" in
    a ``<Gather>`` whose digits Twilio posts to ``action``; read twice before hanging up."""
    lang = quoteattr(language)
    say = f"<Say language={lang}>{escape(spoken(message))}</Say>"
    if action is None:
        return f'<?xml version="1.0" encoding="UTF-8"?><Response>{say}{say}</Response>'
    prompt = f"<Say language={lang}>Press 1 to acknowledge.</Say>"
    gather = (
        f'<Gather input="dtmf" numDigits="1" timeout="10" method="POST" '
        f"action={quoteattr(action)}>{say}{prompt}</Gather>"
    )
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{gather}{gather}</Response>'


def twiml_say(message: str, *, language: str = "en-US") -> str:
    lang = quoteattr(language)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Response>'
        f"<Say language={lang}>{escape(spoken(message))}</Say><Hangup/></Response>"
    )


def masked_number(number: str) -> str:
    """A phone number as the timeline shows it: its last four digits."""
    return f"…{number[-4:]}" if len(number) > 4 else number


@dataclass(frozen=True)
class Acknowledgement:
    """A page answered from the phone: who acknowledged which incident, how (the timeline's
    words), and the vendor's id of the answer (the action's Idempotency-Key)."""

    incident: int
    person: str
    how: str
    key: str


@dataclass(frozen=True)
class CallbackAnswer:
    """What a callback route answers the vendor: a body and its content type, and the
    acknowledgement to apply first (None: nothing to do, e.g. another key pressed)."""

    status: int
    body: str
    content_type: str
    ack: Acknowledgement | None = None
