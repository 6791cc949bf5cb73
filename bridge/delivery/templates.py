"""Message templates: Jinja2 in a sandbox, strict about undefined names, escaping per target.

Templates live in ``templates/<target type>/<event>.j2`` with ``default.j2`` as the fallback;
a user folder given to ``Renderer`` is searched first. Every ``{{ expression }}`` is escaped
for the target's markup (Slack mrkdwn, HTML, markdown or plain text) unless it is already
markup (``link()`` and macros produce markup), so text from alert labels can never inject
mentions, links or tags. A template may ``{% set title = ... %}`` (a subject, a summary).
E-mail's HTML part is ``templates/email/<event>.html.j2``, HTML-escaped.
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import quote, urlsplit

import jinja2
from jinja2.environment import TemplateModule
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup as Safe

from bridge.core import drills
from bridge.core.events import EVENTS, event_kind
from bridge.delivery.budget import (
    MESSAGE_MAX,
    TITLE_MAX,
    BoundedSandbox,
    Budget,
    cut,
    render_stream,
)
from bridge.delivery.markup import ESCAPERS, Markup, truncate
from bridge.delivery.snapshot import normalized

# What rendering one message may spend (the outbox worker renders on the event loop): label
# values must not size an allocation or a loop (bridge/delivery/budget.py). The body is cut
# at MESSAGE_MAX characters and the title at TITLE_MAX, markup kept valid.
MESSAGE_BUDGET = Budget(max_size=1_000_000, max_steps=200_000, time_s=2.0)


def default_templates_dir() -> Path:
    """The templates shipped in the wheel, or the source tree's ``templates/``."""
    package = Path(__file__).resolve().parents[1]
    embedded = package / "_embedded" / "templates"
    return embedded if embedded.is_dir() else package.parent / "templates"


class TemplateError(Exception):
    """A template that does not load or render; names its file and line."""

    def __init__(self, template: str, line: int | None, message: str) -> None:
        super().__init__(f"{template}:{line or 0}: {message}")
        self.template = template
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Rendered:
    title: str
    body: str
    template: str


def _safe(text: str) -> Safe:
    """Mark text that is already escaped for the target's markup (never HTML-escaped again)."""
    return Safe(text)  # noqa: S704 - every caller escapes with the target's escaper first


def _is_http(url: str) -> bool:
    try:
        return urlsplit(url).scheme in ("http", "https")
    except ValueError:
        return False


def _make_link(markup: Markup) -> Callable[[Any, Any], Safe]:
    esc = ESCAPERS[markup]

    def link(url: Any, text: Any = None) -> Safe:
        url_s = str(url or "")
        raw = text if text is not None else url_s
        # Markup (a {% set %} block, another link) is already escaped for this target.
        text_s = str(raw) if hasattr(raw, "__html__") else esc(str(raw))
        if not _is_http(url_s):  # javascript:, data:, empty: show the text only
            return _safe(text_s)
        if markup == "slack":
            return _safe(f"<{esc(url_s).replace('|', '%7C')}|{text_s.replace('|', '¦')}>")
        if markup == "html":
            return _safe(f'<a href="{esc(url_s)}">{text_s}</a>')
        if markup == "markdown":
            safe_url = quote(url_s, safe=":/?&=#%~+,;!$'*")
            return _safe(f"[{text_s}]({safe_url})")
        return _safe(text_s if text_s == url_s else f"{text_s} ({url_s})")

    return link


_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")


def _make_mention(markup: Markup) -> Callable[..., Safe]:
    esc = ESCAPERS[markup]

    @jinja2.pass_context
    def mention(ctx: Any, name: Any) -> Safe:
        """A person as the target can notify them: ``<@U123>`` in Slack when the rotations
        give their Slack id (``incident.people``, a channel message's ``message.people``),
        else their name, escaped."""
        text = str(name)
        if markup == "slack":
            about = ctx.get("incident") or ctx.get("message") or {}
            people = about.get("people") or {}
            handle = str((people.get(text) or {}).get("slack") or "")
            if _SLACK_USER.match(handle):
                return _safe(f"<@{handle}>")
        return _safe(esc(text))

    return mention


def _fmt_time(value: Any, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    """RFC 3339 string -> readable UTC time; empty for None."""
    if not value:
        return ""
    text = str(value).replace("Z", "+00:00")
    if "." in text:  # drop the fraction (up to 9 digits from Alertmanager): whole seconds shown
        head, _, rest = text.partition(".")
        text = head + rest.lstrip("0123456789")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return str(value)
    # Shown in UTC, as the format says; a time without an offset is taken as UTC.
    return (when.astimezone(UTC) if when.tzinfo else when).strftime(fmt)


def sandbox(
    search: Sequence[Path],
    escape: Callable[[str], str],
    *,
    auto_reload: bool = False,
    keep_trailing_newline: bool = False,
) -> BoundedSandbox:
    """A sandboxed environment whose every ``{{ value }}`` goes through ``escape`` (the markup's
    escaper): Markup passes as it is, None is empty, a missing name is an error; ``join`` and
    ``replace`` escape the same way (the built-ins would HTML-escape under autoescape)."""

    def finalize(value: Any) -> Any:
        if value is None:
            return _safe("")
        if hasattr(value, "__html__"):
            return value
        return _safe(escape(str(value)))

    env = BoundedSandbox(
        loader=jinja2.FileSystemLoader([str(p) for p in search]),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        finalize=finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=keep_trailing_newline,
        auto_reload=auto_reload,
    )

    def join(items: Iterable[Any], sep: str = "") -> Safe:
        return _safe(str(sep).join(str(finalize(i)) for i in items))

    def replace(value: Any, old: str, new: str, count: int | None = None) -> str:
        return str(value).replace(old, new, -1 if count is None else count)

    env.filters.update(join=join, replace=replace)
    env.bound_filters()
    return env


def bounded_title(title: str) -> str:
    """An incident title of at most TITLE_MAX characters (cut with an ellipsis); the same
    object when it fits."""
    return cut(title, TITLE_MAX)


def _make_env(search: Sequence[Path], markup: Markup) -> BoundedSandbox:
    # Templates are read once; Renderer.clear() (on a rules reload) reads them again.
    env = sandbox(search, ESCAPERS[markup])
    env.filters.update(time=_fmt_time)
    env.globals.update(link=_make_link(markup), mention=_make_mention(markup))
    env.bound_filters()  # time too
    return env


def _error_place(exc: BaseException, fallback: str) -> tuple[str, int | None]:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            return _rel(frame.filename), frame.lineno
    return fallback, None


def _rel(path: str) -> str:
    """Relative to the working directory when the file is under it, else absolute."""
    full = Path(path).resolve()
    try:
        return str(full.relative_to(Path.cwd()))
    except ValueError:
        return str(full)


class Renderer:
    """Loads and renders templates; each is read once, and again after ``clear()``."""

    def __init__(self, user_dir: Path | str | None = None, default_dir: Path | None = None) -> None:
        self.dirs: tuple[Path, ...] = tuple(
            Path(p) for p in (user_dir, default_dir or default_templates_dir()) if p is not None
        )
        self._envs: dict[Markup, SandboxedEnvironment] = {}
        self._found: dict[tuple[str, str, str], tuple[str, Path]] = {}

    def clear(self) -> None:
        """Read the templates again at their next use (after a reload: files may have been
        added, removed or edited)."""
        self._found.clear()
        self._envs.clear()

    def _env(self, markup: Markup) -> SandboxedEnvironment:
        if markup not in self._envs:
            self._envs[markup] = _make_env(self.dirs, markup)
        return self._envs[markup]

    def find(self, target_type: str, event: str, suffix: str = ".j2") -> tuple[str, Path]:
        """(loader name, file) of the template used: the user folder first, the event's own
        template before ``default``. Remembered until ``clear()``."""
        key = (target_type, event, suffix)
        found = self._found.get(key)
        if found is None:
            found = self._found[key] = self._search(target_type, event, suffix)
        return found

    def _search(self, target_type: str, event: str, suffix: str) -> tuple[str, Path]:
        for base in self.dirs:
            for stem in (event, "default"):
                name = f"{target_type}/{stem}{suffix}"
                if (base / name).is_file():
                    return name, base / name
        raise TemplateError(
            f"{target_type}/{event}{suffix}", None, "no such template (nor default)"
        )

    def render(
        self,
        target_type: str,
        event: str,
        context: Mapping[str, Any],
        *,
        markup: Markup,
        suffix: str = ".j2",
    ) -> Rendered:
        """Render ``<target_type>/<event><suffix>`` (or its ``default``), escaping every
        expression for ``markup``."""
        name, path = self.find(target_type, event, suffix)
        env = self._env(markup)
        try:
            template = env.get_template(name)
            ctx = template.new_context(dict(context))
            text, over = render_stream(
                template.root_render_func(ctx), MESSAGE_BUDGET, limit=MESSAGE_MAX + 1
            )
            module = TemplateModule(template, ctx, [text])
            body = truncate(str(module), MESSAGE_MAX, markup) if over else str(module)
            title = truncate(str(getattr(module, "title", "")), TITLE_MAX, markup)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                _rel(exc.filename or str(path)), exc.lineno, exc.message or "syntax error"
            ) from None
        except Exception:  # UndefinedError, SecurityError, TypeError in a filter...
            try:  # Jinja maps the traceback's frames back to template files and lines
                env.handle_exception()
            except Exception as exc:
                where, line = _error_place(exc, _rel(str(path)))
                raise TemplateError(where, line, f"{type(exc).__name__}: {exc}") from None
            raise  # pragma: no cover - handle_exception always raises
        title, body = " ".join(title.split()), body.strip("\n")
        incident = context.get("incident")
        if isinstance(incident, Mapping) and incident.get("drill"):
            # A drill's every title and message starts with DRILL:, whatever the template says
            # (core/drills.py): nobody mistakes practice for a real incident.
            title = drills.title(title) if title else title
            body = drills.message(body, html=markup == "html" and body.lstrip().startswith("<"))
        return Rendered(title=title, body=body, template=str(path))


@functools.lru_cache(maxsize=1)
def default_renderer() -> Renderer:
    return Renderer()


def _collapse(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Identical lines in a row (an alert storm of look-alikes) become one, ``text (xN)`` with a
    multiplication sign, and ``count``; the first one's time is kept."""
    out: list[dict[str, Any]] = []
    for row in rows:
        last = out[-1] if out else None
        if last is not None and (last["kind"], last["base"]) == (row["kind"], row["text"]):
            last["count"] += 1
            last["text"] = f"{last['base']} (\N{MULTIPLICATION SIGN}{last['count']})"
            continue
        out.append({**row, "count": 1, "base": row["text"]})
    for row in out:
        del row["base"]
    return out


def context(
    incident: Mapping[str, Any],
    event: str,
    events: Sequence[Mapping[str, Any]] = (),
    *,
    tier: str = "general",
    target: str = "",
) -> dict[str, Any]:
    """The names a template sees."""
    incident = normalized(incident)
    alerts = incident["alerts"]
    # Timeline rows from the store say "time"; give templates one spelling ("at") and the
    # notification event each row stands for ("event").
    rows = [
        {
            "kind": event,
            "actor": "",
            "text": "",
            "data": {},
            **e,
            "at": e.get("at") or e.get("time"),
            "event": event_kind(str(e.get("kind", event)), e.get("data")),
        }
        for e in events
    ]
    rows = _collapse(rows)
    return {
        "incident": incident,
        "event": event,
        "events": rows
        or [{"kind": event, "event": event, "at": None, "actor": "", "text": "", "data": {}}],
        "tier": tier,
        "target": target,
        "alerts": alerts,
        "firing": [a for a in alerts if a.get("status") == "firing"],
        "resolved": [a for a in alerts if a.get("status") == "resolved"],
    }


SAMPLE_INCIDENT: dict[str, Any] = {
    "id": 42,
    "key": '{}/{team="checkout"}:{alertname="HighErrorRate"}',
    "title": "High error rate on checkout",
    "severity": "sev2",
    "status": "triggered",
    "team": "checkout",
    "service": "checkout-api",
    "route": "checkout",
    "started_at": "2026-11-27T05:40:00Z",
    "opened_at": "2026-11-27T05:41:00Z",
    "acknowledged_at": None,
    "mitigated_at": None,
    "resolved_at": None,
    "closed_at": None,
    "url": "http://incident-bridge.example/incidents/42",
    "roles": {"commander": ["alice"], "scribe": [], "liaison": ["bob"], "responders": ["carol"]},
    "alerts": [
        {
            "fingerprint": "a1b2c3d4e5f60718",
            "status": "firing",
            "labels": {
                "alertname": "HighErrorRate",
                "severity": "high",
                "team": "checkout",
                "service": "checkout-api",
            },
            "annotations": {
                "summary": "5xx ratio above 5% for 10 minutes",
                "runbook_url": "https://runbooks.example/checkout/high-error-rate",
            },
            "startsAt": "2026-11-27T05:40:00Z",
            "endsAt": None,
            "generatorURL": "http://prometheus.example/graph?g0.expr=rate",
        }
    ],
}


class TemplatedType(Protocol):
    """A target type as its templates see it (the classes of ``bridge.targets.REGISTRY``)."""

    type_name: ClassVar[str]
    markup: ClassVar[Markup]
    extra_parts: ClassVar[Mapping[str, Markup]]


def render_all(
    types: Iterable[type[TemplatedType]],
    renderer: Renderer | None = None,
    incident: Mapping[str, Any] | None = None,
) -> list[TemplateError]:
    """Render every type's templates for every event against a sample incident; return the
    errors (for ``rules check``), each naming its file and line, without duplicates."""
    renderer = renderer or default_renderer()
    incident = incident or SAMPLE_INCIDENT
    errors: dict[str, TemplateError] = {}
    for kind in types:
        parts = {".j2": kind.markup, **kind.extra_parts}
        for suffix, markup in parts.items():
            for event in EVENTS:
                try:
                    renderer.render(
                        kind.type_name,
                        event,
                        context(incident, event),
                        markup=markup,
                        suffix=suffix,
                    )
                except TemplateError as exc:
                    errors.setdefault(str(exc), exc)
    return list(errors.values())


# What a channel message's template sees beside ``message`` (docs/targets.md).
SAMPLE_MESSAGES: tuple[dict[str, Any], ...] = (
    {
        "kind": "handoff",
        "rotation": "primary",
        "from": "alice",
        "to": "bob",
        "at": "2026-11-30T09:00:00Z",
        "incidents": [
            {
                "id": 42,
                "title": "High error rate on checkout",
                "severity": "sev2",
                "status": "acknowledged",
                "url": "http://incident-bridge.example/incidents/42",
            }
        ],
        "incident_count": 1,
        "people": {"alice": {"slack": "U0ALICE"}, "bob": {}},
    },
    {
        "kind": "drill_announcement",
        "route": "checkout",
        "severity": "sev2",
        "at": "2026-11-30T14:00:00Z",
        "stakeholders": False,
    },
)


def message_context(
    message: Mapping[str, Any], *, tier: str = "general", target: str = ""
) -> dict[str, Any]:
    """The names a channel message's template (``<type>/message.j2``) sees: ``message`` (its
    ``kind`` and data), ``tier``, ``target``; the incident's names are absent."""
    return {"message": dict(message), "event": "message", "tier": tier, "target": target}


def render_messages(
    types: Iterable[type[TemplatedType]], renderer: Renderer | None = None
) -> list[TemplateError]:
    """Render each type's ``message`` templates for a sample of every kind (``rules check``);
    the errors, each naming its file and line."""
    renderer = renderer or default_renderer()
    errors: dict[str, TemplateError] = {}
    for kind in types:
        parts = {".j2": kind.markup, **kind.extra_parts}
        for suffix, markup in parts.items():
            for message in SAMPLE_MESSAGES:
                try:
                    renderer.render(
                        kind.type_name,
                        "message",
                        message_context(message),
                        markup=markup,
                        suffix=suffix,
                    )
                except TemplateError as exc:
                    errors.setdefault(str(exc), exc)
    return list(errors.values())


def render_preview(
    kind: type[TemplatedType],
    event: str,
    incident: Mapping[str, Any],
    *,
    templates_dir: Path | str | None = None,
) -> str:
    """What ``incident-bridge template render TARGET EVENT --incident FILE`` prints."""
    if event not in EVENTS:
        raise TemplateError(
            kind.type_name, None, f"unknown event {event!r} (one of {', '.join(EVENTS)})"
        )
    renderer = Renderer(templates_dir) if templates_dir else default_renderer()
    full = {**SAMPLE_INCIDENT, **incident}
    ctx = context(full, event)
    parts = []
    main = renderer.render(kind.type_name, event, ctx, markup=kind.markup)
    if main.title:
        parts.append(f"title: {main.title}")
    parts.append(main.body)
    for suffix, markup in kind.extra_parts.items():
        parts.append(f"--- {suffix.lstrip('.')} ---")
        parts.append(renderer.render(kind.type_name, event, ctx, markup=markup, suffix=suffix).body)
    return "\n".join(parts) + "\n"
