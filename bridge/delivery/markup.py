"""Escaping of untrusted text into each target's markup, and truncation that never breaks it.

Untrusted text (alert labels, annotations, titles) is escaped when a template outputs it, so
``<!channel>``, ``<@U123>``, ``@everyone`` or ``</b><script>`` from a label arrive inert.
Truncation then works on the rendered markup token by token: it never cuts through an entity
(``&amp;``), a Slack link or mention (``<url|text>``), a backslash escape, or a tag, and it
closes HTML tags that were open at the cut.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Literal

Markup = Literal["text", "slack", "html", "markdown"]
MARKUPS: tuple[Markup, ...] = ("text", "slack", "html", "markdown")
ELLIPSIS = "…"
ZWSP = "\u200b"

# Braces too: Adaptive Cards (Teams) evaluate {{DATE(...)}} functions in text.
_MD_SPECIAL = re.compile(r"([\\`*_~|>\[\]()#<{}])")


def escape_text(value: str) -> str:
    return value


def escape_slack(value: str) -> str:
    """Slack mrkdwn: only &, < and > are control characters (api.slack.com formatting)."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_html(value: str) -> str:
    return html.escape(value, quote=True)


def escape_markdown(value: str) -> str:
    """Discord, Mattermost, Teams: backslash-escape markdown and break every @mention."""
    return _MD_SPECIAL.sub(r"\\\1", value).replace("@", "@" + ZWSP)


ESCAPERS: dict[Markup, Callable[[str], str]] = {
    "text": escape_text,
    "slack": escape_slack,
    "html": escape_html,
    "markdown": escape_markdown,
}

_TOKENS: dict[Markup, re.Pattern[str]] = {
    "text": re.compile(r".", re.S),
    "slack": re.compile(r"<[^<>]*>|&(?:#\d+|#x[0-9a-fA-F]+|\w+);|.", re.S),
    "html": re.compile(r"<[^<>]*>|&(?:#\d+|#x[0-9a-fA-F]+|\w+);|.", re.S),
    "markdown": re.compile(r"\\.|@\u200b|.", re.S),
}
_OPEN_TAG = re.compile(r"^<([a-zA-Z][a-zA-Z0-9-]*)\b[^>]*?(/?)>$")
_CLOSE_TAG = re.compile(r"^</([a-zA-Z][a-zA-Z0-9-]*)\s*>$")
_VOID = {"br", "hr", "img", "meta", "link", "input", "wbr", "col", "area", "base", "source"}


def utf16_len(value: str) -> int:
    return len(value.encode("utf-16-le")) // 2


def utf8_len(value: str) -> int:
    return len(value.encode("utf-8"))


def truncate(
    value: str,
    limit: int,
    markup: Markup = "text",
    *,
    measure: Callable[[str], int] = len,
    ellipsis: str = ELLIPSIS,
) -> str:
    """Cut rendered ``value`` to at most ``limit`` (as counted by ``measure``), keeping markup
    valid. Returns ``value`` unchanged when it fits."""
    if measure(value) <= limit:
        return value
    out: list[str] = []
    size = 0
    stack: list[str] = []

    def closers(tags: list[str]) -> str:
        return "".join(f"</{t}>" for t in reversed(tags))

    for match in _TOKENS[markup].finditer(value):
        token = match.group(0)
        new_stack = stack
        if markup == "html" and token.startswith("<"):
            new_stack = _track(stack, token)
        need = size + measure(token) + measure(ellipsis) + measure(closers(new_stack))
        if need > limit:
            break
        out.append(token)
        size += measure(token)
        stack = new_stack
    tail = ellipsis + closers(stack)
    text = "".join(out)
    if measure(text + tail) > limit:  # a limit smaller than the ellipsis itself
        return text[: max(0, limit)]
    return text + tail


def _track(stack: list[str], token: str) -> list[str]:
    m = _OPEN_TAG.match(token)
    if m and not m.group(2) and m.group(1).lower() not in _VOID:
        return [*stack, m.group(1).lower()]
    m = _CLOSE_TAG.match(token)
    if m:
        name = m.group(1).lower()
        if name in stack:
            idx = len(stack) - 1 - stack[::-1].index(name)
            return stack[:idx]
    return stack


def balanced_html(value: str) -> bool:
    """True when every non-void tag is closed in order and no entity or tag is cut (tests)."""
    stack: list[str] = []
    for match in _TOKENS["html"].finditer(value):
        token = match.group(0)
        if token in ("<", ">", "&"):  # a bare one: a cut tag or entity, or unescaped text
            return False
        m = _OPEN_TAG.match(token)
        if m and not m.group(2) and m.group(1).lower() not in _VOID:
            stack.append(m.group(1).lower())
            continue
        m = _CLOSE_TAG.match(token)
        if m and (not stack or stack.pop() != m.group(1).lower()):
            return False
    return not stack
