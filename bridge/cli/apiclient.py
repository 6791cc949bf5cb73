"""Talking to the running service's API: the commands that do (``notifications``,
``incident``) share where the service is, which token to send and how its answers and errors
are read and told.

Only the standard library: a request is urllib, an answer JSON. Redirects are not followed (the
bearer token must not travel to wherever a redirect points), and a URL on this machine never
goes through an HTTP proxy from the environment.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.config import DEFAULT_DB, DEFAULT_LISTEN, ENV_PREFIX, api_token_path, is_loopback
from bridge.core.dburl import is_postgres

URL_VAR = ENV_PREFIX + "URL"
TOKEN_VAR = ENV_PREFIX + "API_TOKEN"
TIMEOUT_S = 10.0
# A retried request waits this long, or the 503's Retry-After up to MAX_RETRY_AFTER_S.
RETRY_DELAY_S = 1.0
MAX_RETRY_AFTER_S = 5.0


class Usage(Exception):
    """Bad settings for reaching the service (exit 2, like argparse's usage errors)."""


class Failure(Exception):
    """No usable answer (exit 1): the message says from which URL and why."""


class Unreachable(Failure):
    """No HTTP answer came: worth one retry."""


def add_output(parser: argparse.ArgumentParser) -> None:
    """``-o text|json``: text for people, or the API's answer as it came, for scripts."""
    parser.add_argument(
        "-o",
        "--output",
        choices=["text", "json"],
        default="text",
        help="text for people (default) or the API's JSON answer",
    )


def add_actor(parser: argparse.ArgumentParser) -> None:
    """``--as NAME``: who does a change, as the timeline records it."""
    parser.add_argument(
        "--as",
        dest="actor",
        metavar="NAME",
        help="who does it, as the timeline records it (default: the token's name)",
    )


def add_flags(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--token``/``--token-file`` and ``--db`` (to find the generated token)."""
    parser.add_argument(
        "--url",
        help=f"the service's URL (default ${URL_VAR}, else http://${ENV_PREFIX}LISTEN, "
        f"else http://{DEFAULT_LISTEN})",
    )
    tokens = parser.add_mutually_exclusive_group()
    tokens.add_argument(
        "--token",
        help=f"the API token (default ${TOKEN_VAR}); other users of this machine can see a "
        "command line, so prefer --token-file or the variable",
    )
    tokens.add_argument(
        "--token-file",
        help=f"file holding the API token (default ${TOKEN_VAR}, else for a URL on this machine "
        "the token the service generated beside its database)",
    )
    parser.add_argument(
        "--db",
        help=f"the service's database, to find its generated token (default ${ENV_PREFIX}DB "
        f"or {DEFAULT_DB}); for PostgreSQL the token is in ${ENV_PREFIX}DATA_DIR (./data)",
    )


def files_base(db: str) -> Path:
    """Where the service on ``db`` keeps its files: beside SQLite's file, or for a PostgreSQL
    URL in its data folder (``--data-dir``, as the service's ``Settings.db``)."""
    if is_postgres(db):
        return Path(os.environ.get(ENV_PREFIX + "DATA_DIR") or "./data") / "incident-bridge"
    return Path(db.removeprefix("sqlite://"))


def base_url(args: argparse.Namespace) -> str:
    """``--url``, else ``INCIDENT_BRIDGE_URL``, else the service's listen address (a wildcard
    one reached on loopback), without a trailing slash."""
    given = args.url or os.environ.get(URL_VAR, "").strip()
    if given:
        url = str(given).rstrip("/")
        try:
            parts = urllib.parse.urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
            ok = ok and url.isascii() and url.isprintable() and " " not in url
            parts.port  # noqa: B018 - raises ValueError for a port that is not one
        except ValueError:
            ok = False
        if not ok:
            raise Usage(f"--url {url!r} must be http:// or https://, a host and an optional port")
        return url
    listen = os.environ.get(ENV_PREFIX + "LISTEN", "").strip() or DEFAULT_LISTEN
    host, _, port = listen.rpartition(":")
    if host.strip("[]") in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host.strip("[]") == "::":
        host = "[::1]"
    return f"http://{host}:{port}"


def token(args: argparse.Namespace) -> str | None:
    """``--token``, ``--token-file``, else ``INCIDENT_BRIDGE_API_TOKEN``, else, for a service on
    this machine, the token it generated beside its database (``--db``, ``INCIDENT_BRIDGE_DB``)."""
    found = _token(args)
    if found is not None and not (found.isascii() and found.isprintable()):
        raise Usage("the API token has characters a token cannot have (one line of ASCII)")
    return found


def _token(args: argparse.Namespace) -> str | None:
    if args.token:
        return str(args.token).strip() or None
    if args.token_file:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip() or None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise Usage(f"--token-file {args.token_file}: {reason}") from None
    from_env = os.environ.get(TOKEN_VAR, "").strip()
    if from_env:
        return from_env
    host = urllib.parse.urlsplit(base_url(args)).hostname or ""
    if not is_loopback(host):
        return None
    db = files_base(args.db or os.environ.get(ENV_PREFIX + "DB") or DEFAULT_DB)
    try:
        return api_token_path(db).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: its status, its JSON body (or ``{"error": text}`` for a body that is not
    JSON) and its headers."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error(self) -> str:
        """``STATUS: [field: ]message``, as the API says what went wrong."""
        body = self.body if isinstance(self.body, dict) else {}
        message = printable(str(body.get("error") or "(no error message)"))
        if 300 <= self.status < 400:
            where = self.headers.get("Location", "?")
            message = f"redirected to {printable(where)}; give the service's own URL as --url"
        where_field = f"{printable(str(body['field']))}: " if body.get("field") else ""
        hint = f" (give --token-file, --token or ${TOKEN_VAR})" if self.status == 401 else ""
        return f"{self.status}: {where_field}{message}{hint}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Client:
    """The API at ``url``; every request carries ``token`` when there is one."""

    url: str
    token: str | None
    timeout: float = TIMEOUT_S
    retry_delay: float = RETRY_DELAY_S

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Client:
        return cls(base_url(args), token(args))

    def get(self, path: str, query: Mapping[str, str | Sequence[str]] | None = None) -> Answer:
        """A read; retried once when no answer came or the store could not answer (503)."""
        target = path + ("?" + urllib.parse.urlencode(query, doseq=True) if query else "")
        return self._send("GET", target, None, {}, retry=True)

    def post(
        self, path: str, body: Mapping[str, Any] | None = None, *, idempotency_key: str | None
    ) -> Answer:
        """A change. With an ``Idempotency-Key`` it is retried once, with the same key, when no
        answer came or the store could not answer (503): the service answers a repeat with the
        first answer and changes nothing. Without a key it is sent once."""
        headers = {} if body is None else {"Content-Type": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        data = b"" if body is None else json.dumps(dict(body)).encode()
        return self._send("POST", path, data, headers, retry=idempotency_key is not None)

    def delete(self, path: str) -> Answer:
        """A DELETE (ending something: doing it twice changes nothing more), retried once as
        a read is."""
        return self._send("DELETE", path, None, {}, retry=True)

    def _send(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str], *, retry: bool
    ) -> Answer:
        try:
            answer = self._once(method, path, data, headers)
        except Unreachable:
            if not retry:
                raise
            time.sleep(self.retry_delay)
            return self._once(method, path, data, headers)
        if retry and answer.status == 503:
            time.sleep(_retry_after(answer.headers, self.retry_delay))
            return self._once(method, path, data, headers)
        return answer

    def _once(self, method: str, path: str, data: bytes | None, headers: dict[str, str]) -> Answer:
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked in base_url
            self.url + path, data=data, method=method, headers=headers
        )
        if self.token:
            request.add_unredirected_header("Authorization", f"Bearer {self.token}")
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if is_loopback(urllib.parse.urlsplit(self.url).hostname or ""):
            handlers.append(urllib.request.ProxyHandler({}))
        opener = urllib.request.build_opener(*handlers)
        try:
            try:
                with opener.open(request, timeout=self.timeout) as response:
                    status, raw, got = response.status, response.read(), response.headers
            except urllib.error.HTTPError as exc:
                with exc:
                    status, raw, got = exc.code, exc.read(), exc.headers
        except urllib.error.URLError as exc:
            raise Unreachable(self._why(exc.reason)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(self._why(exc)) from None
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            lines = raw.decode("utf-8", "replace").strip().splitlines()
            first = lines[0][:200] if lines else ""
            if 200 <= status < 300:
                raise Failure(
                    f"{self.url} answered {status} but not JSON: {first!r} (is --url the "
                    "incident-bridge API?)"
                ) from None
            kind = got.get("Content-Type") or "no content type"
            reason = http.client.responses.get(status, "")
            body = {"error": f"{reason} ({kind}, not the API's JSON; is --url the service?)"}
        return Answer(status, body, dict(got.items()))

    def _why(self, reason: object) -> str:
        if isinstance(reason, ConnectionRefusedError):
            what = "connection refused (is the service running?)"
        elif isinstance(reason, TimeoutError):
            what = f"no answer within {self.timeout:g} s"
        elif isinstance(reason, http.client.RemoteDisconnected):
            what = "the connection closed without an answer"
        elif isinstance(reason, http.client.HTTPException):
            what = f"not an HTTP answer ({type(reason).__name__})"
        elif isinstance(reason, OSError) and reason.strerror:
            what = reason.strerror
        else:
            what = str(reason) or type(reason).__name__
        return f"cannot reach {self.url}: {what}"


def _retry_after(headers: Mapping[str, str], default: float) -> float:
    try:
        return min(max(float(headers.get("Retry-After", default)), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return default


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (escape sequences among them) shown as
    ``\\xNN`` escapes, except newlines and tabs."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


def fail(message: str) -> int:
    """Say what went wrong on stderr; the exit code 1."""
    print(f"incident-bridge: {message}", file=sys.stderr)
    return 1


def guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``handler`` as a command's function: bad settings exit 2 and a service that cannot be
    reached or gives no usable answer exits 1, each with one line on stderr; Ctrl-C exits 130
    quietly, as shells expect."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except Usage as exc:
            fail(str(exc))
            return 2
        except Failure as exc:
            return fail(str(exc))
        except (KeyError, TypeError) as exc:  # JSON, but not the API's: another service
            return fail(
                f"the answer is not the incident-bridge API's ({type(exc).__name__}: {exc}); "
                "is --url the service?"
            )
        except KeyboardInterrupt:
            return 130

    return run
