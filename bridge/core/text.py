"""Text from outside (alert labels, annotations, request fields) made safe for a terminal or a
line-oriented log: every C0 and C1 control character, DEL, and the Unicode line and paragraph
separators shown as escapes, so that nothing can end a line, move the cursor, clear a screen
or set a terminal's title."""

from __future__ import annotations

import re

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with control characters as ``\\n``, ``\\x1b``, ``\\u2028``...; unchanged (the
    same object) when it has none."""
    return _CONTROLS.sub(_escape, text) if _CONTROLS.search(text) else text
