"""Logging to stderr, one event per line, as text or JSON. Secrets never reach a line:
they are ``Secret`` objects (masked when formatted) and the filter below masks known values."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

from bridge.core.secrets import MASK, MIN_MASKED, Secret
from bridge.core.text import escape_controls

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class RedactFilter(logging.Filter):
    """Masks the values of known secrets wherever they would appear in a formatted line."""

    def __init__(self, secrets: Iterable[Secret | str]) -> None:
        super().__init__()
        values = {s.reveal() if isinstance(s, Secret) else s for s in secrets if s}
        # longest first: a longer form (a URL with its password) is masked whole
        self._values = sorted((v for v in values if len(v) >= MIN_MASKED), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._values:
            message = record.getMessage()
            for value in self._values:
                message = message.replace(value, MASK)
            record.msg, record.args = message, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        # ASCII only: U+2028 and friends would split the line for some log shippers.
        return json.dumps(out, ensure_ascii=True)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
            f".{int(record.msecs):03d}Z"
        )

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = [
            f"{k}={v}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD and not k.startswith("_")
        ]
        line = line + (" " + " ".join(extra) if extra else "")
        # One event per line, whatever the message held, and nothing a terminal would obey.
        return escape_controls(line)


class ClientErrorFilter(logging.Filter):
    """aiohttp logs a request it cannot parse (malformed HTTP, a body in an encoding it cannot
    decode) as an ERROR with a traceback, before any handler runs and so before credentials are
    checked: anyone could fill the log. It is the client's error: one DEBUG line, no traceback."""

    def __init__(self, client_error: type[Exception]) -> None:
        super().__init__()
        self.client_error = client_error  # aiohttp's HttpProcessingError

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, self.client_error) and 400 <= (getattr(exc, "code", 0) or 0) < 500:
            record.msg, record.args = f"client error: {exc}", None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info = record.exc_text = None
        return True


def quiet_client_errors() -> None:
    """Install ``ClientErrorFilter`` on aiohttp's server logger (once; aiohttp is imported
    here, so that the offline commands that log do not load it)."""
    from aiohttp.http_exceptions import HttpProcessingError

    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientErrorFilter) for f in server_log.filters):
        server_log.addFilter(ClientErrorFilter(HttpProcessingError))


def setup(fmt: str = "text", level: str = "info", secrets: Iterable[Secret | str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    quiet_client_errors()
