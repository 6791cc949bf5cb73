"""Label matchers in Alertmanager syntax: ``name="value"``, ``!=``, ``=~``, ``!~``.

Parsing follows Alertmanager's ``pkg/labels`` (the "classic" parser of 0.25): a list may be
wrapped in ``{...}``, matchers are split on commas outside double quotes, a value may be quoted
or bare, and ``\\"``, ``\\n`` and ``\\\\`` are the only escapes. Regexes are fully anchored
(Alertmanager compiles ``^(?:re)$``) and a label that is absent matches like the empty string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

# Same shape as Alertmanager's: name, operator ('=~' before '='), the rest (trimmed).
_MATCHER = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*(.*?)\s*\Z", re.DOTALL)
# Python's re accepts constructs RE2 (Go) rejects; refuse them so rules mean the same in both.
_NOT_RE2 = re.compile(r"\(\?[=!]|\(\?<[=!]|\\[1-9]|\(\?P=|\(\?\(")


class MatchType(Enum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


class MatcherError(ValueError):
    """A matcher string that does not parse; ``offset`` is the character where it went wrong."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class Matcher:
    name: str
    type: MatchType
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def create(cls, name: str, type_: MatchType, value: str) -> Matcher:
        regex = None
        if type_ in (MatchType.REGEX, MatchType.NOT_REGEX):
            regex = compile_anchored(value)
        return cls(name, type_, value, regex)

    def matches(self, value: str) -> bool:
        t = self.type
        if t is MatchType.EQUAL:
            return value == self.value
        if t is MatchType.NOT_EQUAL:
            return value != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(value) is not None
        return hit if t is MatchType.REGEX else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.type.value}"{escaped}"'


_FLAGS = re.compile(r"\(\?([imsU]*(?:-[imsU]*)?)\)")
_POSIX = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
    "print": " -~", "punct": "!-/:-@[-`{-~", "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z", "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
}  # fmt: skip


def go_to_python(rx: str) -> str:
    """Translate the RE2 syntax Python spells differently: a flag group ``(?i)`` applies to
    the rest of its group (Python: ``(?i:...)``), POSIX classes ``[[:alpha:]]``, ``\\z``."""
    out: list[str] = []
    # per open group: the flag groups opened in it, closed with it and around each "|"
    pending: list[list[str]] = [[]]
    i, in_class = 0, False
    while i < len(rx):
        ch = rx[i]
        if ch == "\\":
            esc = rx[i : i + 2]
            out.append("\\Z" if esc == "\\z" and not in_class else esc)
            i += 2
            continue
        if in_class:
            if rx.startswith("[:", i) and (end := rx.find(":]", i + 2)) > 0:
                name = rx[i + 2 : end]
                if name in _POSIX:
                    out.append(_POSIX[name])
                    i = end + 2
                    continue
            if ch == "]":
                in_class = False
            out.append(ch)
            i += 1
            continue
        if ch == "[":
            in_class = True
            out.append(ch)
            i += 1
            for lead in ("^", "]"):
                if rx[i : i + 1] == lead:
                    out.append(lead)
                    i += 1
            continue
        m = _FLAGS.match(rx, i)
        if m:
            if "U" in m.group(1):
                raise MatcherError(f"regex {rx!r}: the U (ungreedy) flag is not supported", i)
            opener = f"(?{m.group(1)}:" if m.group(1) not in ("", "-") else "(?:"
            out.append(opener)
            pending[-1].append(opener)
            i = m.end()
            continue
        if ch == "(":
            pending.append([])
        elif ch == ")":
            out.append(")" * len(pending.pop()))
            if not pending:
                pending = [[]]
        elif ch == "|" and pending[-1]:
            # Go keeps the flags for the next alternative: close them and open them again.
            out.append(")" * len(pending[-1]) + "|" + "".join(pending[-1]))
            i += 1
            continue
        out.append(ch)
        i += 1
    out.append(")" * sum(len(p) for p in pending))
    return "".join(out)


def compile_anchored(value: str) -> re.Pattern[str]:
    """Compile a matcher regex; raises MatcherError (RE2-incompatible or invalid)."""
    bad = _NOT_RE2.search(value)
    if bad:
        raise MatcherError(
            f"regex {value!r}: {bad.group(0)!r} (lookaround or backreference) is not supported "
            "by Alertmanager's RE2",
            bad.start(),
        )
    try:
        # ASCII: RE2's \d, \w, \s and \b are ASCII-only. fullmatch = Alertmanager's ^(?:re)$.
        return re.compile(f"(?:{go_to_python(value)})", re.ASCII)
    except re.error as exc:
        raise MatcherError(f"invalid regex {value!r}: {exc.msg}", exc.pos or 0) from None


def matches_all(matchers: tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels.get(m.name, "")) for m in matchers)


def _split(s: str) -> list[tuple[int, str]]:
    """Split on commas outside unescaped double quotes; keep each token's start offset."""
    tokens: list[tuple[int, str]] = []
    inside = escaped = False
    start = 0
    buf: list[str] = []
    for i, ch in enumerate(s):
        if ch == "," and not inside:
            tokens.append((start, "".join(buf)))
            buf, start = [], i + 1
            continue
        if ch == '"':
            if not escaped:
                inside = not inside
            else:
                escaped = False
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
        buf.append(ch)
    last = "".join(buf)
    if last.strip():
        tokens.append((start, last))
    return tokens


def parse_matcher(s: str) -> Matcher:
    m = _MATCHER.match(s)
    if not m:
        raise MatcherError(f"bad matcher format: {s.strip()!r}")
    name, op, raw = m.group(1), m.group(2), m.group(3)
    quoted = raw.startswith('"')
    if quoted:
        raw = raw[1:]
    out: list[str] = []
    escaped = False
    for i, ch in enumerate(raw):
        if escaped:
            escaped = False
            if ch == "n":
                out.append("\n")
            elif ch in '"\\':
                out.append(ch)
            else:  # a spurious escape is a literal backslash, as in Alertmanager
                out.append("\\" + ch)
            continue
        if ch == "\\":
            if i < len(raw) - 1:
                escaped = True
                continue
            out.append("\\")
        elif ch == '"':
            if not quoted or i < len(raw) - 1:
                raise MatcherError(f"matcher value contains unescaped double quote: {s.strip()!r}")
            quoted = False
        else:
            out.append(ch)
    if quoted:
        raise MatcherError(f"matcher value contains unescaped double quote: {s.strip()!r}")
    return Matcher.create(name, MatchType(op), "".join(out))


def parse_matchers(s: str) -> tuple[Matcher, ...]:
    """Parse ``{a="b", c=~"x.*"}`` or ``a="b", c=~"x.*"`` (braces optional, trailing comma ok)."""
    body = s.strip()
    offset = len(s) - len(s.lstrip())
    if body.startswith("{"):
        body, offset = body[1:], offset + 1
    body = body.removesuffix("}")
    out: list[Matcher] = []
    for start, token in _split(body):
        if not token.strip():
            raise MatcherError("empty matcher between commas", offset + start)
        try:
            out.append(parse_matcher(token))
        except MatcherError as exc:
            raise MatcherError(str(exc), offset + start + exc.offset) from None
    return tuple(out)


def _escape(v: str) -> str:
    if "\\" in v or '"' in v or "\n" in v:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return v


def format_labels(labels: Mapping[str, str], names: Iterable[str] | None = None) -> str:
    """``{a="1", b="2"}`` sorted by name, escaped like Alertmanager's group keys; with
    ``names`` (sorted), only those labels that are set and not empty."""
    if names is None:
        return "{" + ", ".join(f'{n}="{_escape(labels[n])}"' for n in sorted(labels)) + "}"
    return "{" + ", ".join(f'{n}="{_escape(v)}"' for n in names if (v := labels.get(n, ""))) + "}"
