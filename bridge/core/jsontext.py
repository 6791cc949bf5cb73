"""Compact JSON text for what the store keeps (labels, annotations, event data).

Every webhook stores a handful of small objects, in the writer thread. pydantic-core's
serializer, already a dependency, writes them several times faster than ``json.dumps``
(docs/performance.md). The text is compact JSON in UTF-8; readers use ``json.loads``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic_core import to_json


def dumps(obj: Any) -> str:
    """``obj`` (dicts, lists, str, numbers, None) as compact JSON text."""
    return to_json(obj).decode()


# A JSON escape of U+0000: a backslash-u-0000 after an even number of backslashes (after an
# odd number the backslash itself is escaped and the text is a literal "\u0000").
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def without_nul(body: bytes) -> bytes:
    """A JSON body whose strings hold U+FFFD where they held U+0000 (NUL). PostgreSQL's text
    cannot store NUL; SQLite's can, but what one backend keeps the other must keep too, and a
    webhook is never refused for it (Alertmanager drops a 4xx for good). A body without the
    escape, nearly every one, is returned as it is after one scan."""
    if b"\\u0000" not in body:
        return body
    return _NUL_ESCAPE.sub(rb"\1\\ufffd", body)
