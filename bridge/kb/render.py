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


def _context(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document as the template sees it: the narrative's texts as Markdown (not escaped)."""
    sections = [
        {**s, "text": _safe(str(s.get("text") or ""))} for s in document.get("sections") or ()
    ]
    return {**document, "sections": sections, "section": {s["name"]: s for s in sections}}


def render(
    document: Mapping[str, Any],
    route: str,
    *,
    user_dir: Path | None = None,
    default_dir: Path | None = None,
) -> Rendered:
    """The postmortem ``document`` (``core/postmortem.document``) as Markdown."""
    dirs = search_dirs(user_dir, default_dir)
    name, path = find_template(route, dirs)
    env = _env(dirs)
    try:
        text = env.get_template(name).render(_context(document))
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
