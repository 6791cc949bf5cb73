"""The postmortem's Markdown: ``templates/postmortem.md.j2`` rendered in a Jinja2 sandbox.

Which template: ``<--templates>/postmortem/<route>.md.j2`` (a route's own), else
``<--templates>/postmortem.md.j2``, else the shipped ``templates/postmortem.md.j2`` (the shipped
folder may hold route templates too). Every ``{{ value }}`` is escaped for Markdown (a label or a
note cannot make a link, HTML or a table column); ``cell`` escapes a value for a table's cell
(pipes, newlines); ``link(url, text)`` makes a link of http(s) URLs only. The narrative's
sections are the team's own Markdown and go in as written. A template that does not load or
render raises ``TemplateError`` naming its file and line; nothing is written then.

Templates are read again when their file changes (an edit applies at the next render).
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup as Safe

from bridge.core.postmortem import md_cell, md_escape
from bridge.delivery.templates import TemplateError, default_templates_dir, sandbox

TEMPLATE = "postmortem.md.j2"
ROUTE_FOLDER = "postmortem"
# A route name that can name a file: the rules' names (no slash, no leading dot).
_ROUTE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Rendered:
    markdown: str
    template: Path  # the file used


def _safe(text: str) -> Safe:
    return Safe(text)  # noqa: S704 - escaped for Markdown by every caller


def _cell(value: Any) -> Safe:
    if value is None or value == "":
        return _safe("-")
    if hasattr(value, "__html__"):
        return _safe(md_cell(str(value), escaped=True))
    return _safe(md_cell(str(value)))


def _is_http(url: str) -> bool:
    try:
        return urlsplit(url).scheme in ("http", "https")
    except ValueError:
        return False


def _link(url: Any, text: Any = None) -> Safe:
    """``[text](url)`` for an http(s) URL; the text alone otherwise (``javascript:``, empty)."""
    url_s = str(url or "")
    raw = text if text is not None else url_s
    shown = str(raw) if hasattr(raw, "__html__") else md_escape(str(raw))
    if not _is_http(url_s):
        return _safe(shown)
    target = quote(url_s, safe=":/?&=#%~+,;!$'*@")
    return _safe(f"[{shown}]({target})")


def _time(value: Any) -> str:
    """RFC 3339 -> ``2026-11-27 04:06:40`` (UTC, whole seconds); ``-`` for none."""
    if not value:
        return "-"
    text = str(value)
    return text[:19].replace("T", " ") if len(text) >= 19 else text


# --- the team's Markdown, made safe to publish ------------------------------------------------
#
# The narrative's sections are the team's own Markdown and go into the postmortem as written,
# except what a knowledge-base site that renders raw HTML would run: raw HTML (``<script>``,
# ``<img onerror=...>``) and links whose scheme is not http, https or mailto
# (``[x](javascript:...)``, ``<javascript:...>``, a reference definition to one). The page shows
# the same Markdown with raw HTML off; ``--kb-allow-raw-html`` keeps the sections verbatim.
#
# 1. where the code is (fenced and indented code blocks) comes from markdown-it's own parse:
#    code is left exactly as written (a postmortem may well quote ``<script>`` in a code block);
# 2. elsewhere, in each block's text: code spans are kept, ``<`` becomes ``&lt;`` (a character
#    reference is text in every Markdown, never markup) unless it opens an http(s) or mailto
#    autolink, and the ``(`` of an inline link or the ``:`` of a reference definition whose
#    destination has another scheme is escaped (``\(``, ``\:``: shown as they are, no link);
# 3. the result is parsed again, raw HTML on and every link let through: should any raw HTML
#    or unsafe link be left (a construct step 2 read differently from the parser), the whole
#    text is escaped bluntly instead (every ``<`` and ``[`` as a character reference, code too).

SAFE_SCHEMES = ("http", "https", "mailto")
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):")
_AUTOLINK = re.compile(r"<(?:https?|mailto):[^\s<>]*>", re.IGNORECASE)


def unsafe_url(url: str) -> bool:
    """Whether a link's destination (as Markdown reads it: escapes and entities decoded) has a
    scheme other than http, https and mailto, as a browser would read it (leading spaces and
    controls ignored, tabs and newlines dropped); relative links are safe."""
    seen = re.sub(r"[\t\n\r]", "", url).lstrip("".join(map(chr, range(33)))).lower()
    found = _SCHEME.match(seen)
    return found is not None and found.group(1) not in SAFE_SCHEMES


@functools.cache
def _checker(blocks_only: bool = False) -> Any:
    """CommonMark with tables, raw HTML on and every link let through (judged here); with
    ``blocks_only`` its blocks without their inline content (where the code blocks are)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    md.validateLink = lambda url: True  # type: ignore[method-assign]  # every link, judged here
    if blocks_only:
        md.disable("inline")  # the core rule that parses each block's text: half the cost
    return md


def _destination_unsafe(text: str, at: int) -> bool:
    """Whether the link destination at ``at`` (after spaces and one line break) is unsafe."""
    from markdown_it.helpers import parseLinkDestination

    while at < len(text) and text[at] in " \t\n":
        at += 1
    found = parseLinkDestination(text, at, len(text))
    return bool(found.ok) and unsafe_url(str(found.str))


def _escape_inline(text: str) -> str:
    """Step 2 over one block's text (see above)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:  # an escaped character stays as it is (``\<`` is text)
            out.append(text[i : i + 2])
            i += 2
        elif c == "`":
            run = len(text[i:]) - len(text[i:].lstrip("`"))
            closing = re.compile(r"(?<!`)" + "`" * run + r"(?!`)").search(text, i + run)
            end = closing.end() if closing else i + run  # no closing run: the ticks are text
            out.append(text[i:end])
            i = end
        elif c == "<":
            autolink = _AUTOLINK.match(text, i)
            if autolink:
                out.append(autolink.group(0))
                i = autolink.end()
            else:
                out.append("&lt;")
                i += 1
        elif c == "]" and text[i + 1 : i + 2] in ("(", ":") and _destination_unsafe(text, i + 2):
            out.append("]\\" + text[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _escape_cells(row: str) -> str:
    return "".join(
        cell if cell == "|" else _escape_inline(cell) for cell in re.split(r"(?<!\\)(\|)", row)
    )


def _leftovers(text: str) -> bool:
    """Whether markdown-it still reads raw HTML or an unsafe link in ``text``."""
    stack = list(_checker().parse(text, {}))
    while stack:
        token = stack.pop()
        if token.type in ("html_block", "html_inline"):
            return True
        for attr in ("href", "src"):
            value = token.attrGet(attr)
            if value is not None and unsafe_url(str(value)):
                return True
        stack.extend(token.children or ())
    return False


@functools.lru_cache(maxsize=128)
def safe_markdown(text: str) -> str:
    """The team's Markdown with raw HTML and unsafe links made text (steps 1-3 above). Kept
    for the texts seen last: the page renders the same sections at every view."""
    if "<" not in text and "](" not in text and "]:" not in text:
        return text
    lines = text.split("\n")
    kind: list[Any] = [None] * len(lines)  # per line: "code", a block's range, or None
    for token in _checker(blocks_only=True).parse(text, {}):
        if token.map is None:
            continue
        start, end = token.map
        if token.type in ("fence", "code_block"):
            kind[start:end] = ["code"] * (end - start)
        elif token.type == "table_open":
            kind[start:end] = ["table"] * (end - start)
        elif token.type == "inline" and kind[start] != "table":
            for at in range(start, end):
                if kind[at] != "code":
                    kind[at] = (start, end)
    out: list[str] = []
    at = 0
    while at < len(lines):
        end = at + 1
        # One block's lines together (a code span may cross lines); lines outside any block
        # (raw HTML blocks, reference definitions) together until a blank line or a block.
        while end < len(lines) and kind[end] == kind[at] and (kind[at] or lines[end].strip()):
            end += 1
        chunk = "\n".join(lines[at:end])
        if kind[at] == "code":
            out.append(chunk)
        elif kind[at] == "table":  # a row's cells first, then each cell's text (as GFM does)
            out.append("\n".join(_escape_cells(line) for line in lines[at:end]))
        else:
            out.append(_escape_inline(chunk))
        at = end
    safe = "\n".join(out)
    if _leftovers(safe):
        safe = text.replace("<", "&lt;").replace("[", "&#91;")
    return safe


@functools.lru_cache(maxsize=8)
def _env(dirs: tuple[Path, ...]) -> SandboxedEnvironment:
    # Markup (a link, a macro's output, the narrative) passes as it is; any other value is
    # escaped for Markdown (autoescape's HTML escaping never applies to it). Read again when a
    # template's file changes.
    env = sandbox(dirs, md_escape, auto_reload=True, keep_trailing_newline=True)
    env.filters.update(cell=_cell, time=_time, md=lambda v: _safe(md_escape(str(v))))
    env.globals.update(link=_link)
    return env


def search_dirs(user_dir: Path | None, default_dir: Path | None = None) -> tuple[Path, ...]:
    return tuple(p for p in (user_dir, default_dir or default_templates_dir()) if p is not None)


def find_template(route: str, dirs: tuple[Path, ...]) -> tuple[str, Path]:
    """(loader name, file) of the template for ``route``: its own in any folder, else the
    general one, the user folder before the shipped one."""
    names = [TEMPLATE]
    if _ROUTE.match(route or ""):
        names.insert(0, f"{ROUTE_FOLDER}/{route}.md.j2")
    for name in names:
        for base in dirs:
            if (base / name).is_file():
                return name, base / name
    raise TemplateError(TEMPLATE, None, f"no such template in {', '.join(map(str, dirs))}")


def _place(exc: BaseException, fallback: Path) -> tuple[str, int | None]:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            return frame.filename, frame.lineno
    return str(fallback), None


def _context(document: Mapping[str, Any], raw_html: bool) -> dict[str, Any]:
    """The document as the template sees it: the narrative's texts as Markdown (not escaped),
    their raw HTML and unsafe links made text unless ``raw_html``."""
    clean = (lambda t: t) if raw_html else safe_markdown
    sections = [
        {**s, "text": _safe(clean(str(s.get("text") or "")))}
        for s in document.get("sections") or ()
    ]
    return {**document, "sections": sections, "section": {s["name"]: s for s in sections}}


def render(
    document: Mapping[str, Any],
    route: str,
    *,
    user_dir: Path | None = None,
    default_dir: Path | None = None,
    raw_html: bool = False,
) -> Rendered:
    """The postmortem ``document`` (``core/postmortem.document``) as Markdown; the narrative's
    raw HTML and unsafe links are made text unless ``raw_html`` (``--kb-allow-raw-html``)."""
    dirs = search_dirs(user_dir, default_dir)
    name, path = find_template(route, dirs)
    env = _env(dirs)
    try:
        text = env.get_template(name).render(_context(document, raw_html))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            exc.filename or str(path), exc.lineno, exc.message or "syntax error"
        ) from None
    except Exception:  # UndefinedError, SecurityError, a filter's TypeError...
        try:  # Jinja maps the traceback's frames back to template files and lines
            env.handle_exception()
        except Exception as exc:
            where, line = _place(exc, path)
            raise TemplateError(where, line, f"{type(exc).__name__}: {exc}") from None
        raise  # pragma: no cover - handle_exception always raises
    return Rendered(text.strip("\n") + "\n", path)
