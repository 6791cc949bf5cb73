"""YAML sources with positions, and the collector of ``file:line:col: message`` diagnostics."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    Event,
    NodeEvent,
)

Loc = tuple[int | str, ...]

# A rule file's shape is bounded before it is built: aliases (``*name``) share one node in the
# parsed tree, but everything after (validation, routes, JSON) walks them expanded, so a 1 KB
# "billion laughs" of nested aliases would cost gigabytes. The bounds are far above real rules
# (a route is 10 to 30 nodes) and keep a bad file from taking the service's memory and time.
MAX_FILE_BYTES = 4 * 1024 * 1024  # bytes of one rule file
MAX_NODES = 100_000  # nodes of one rule file, aliases expanded (keys, values, items)
MAX_DEPTH = 64  # mappings and lists nested in one another (a route level is two)
MAX_TOTAL_NODES = 250_000  # nodes of all the rule files of one load together


@dataclass(frozen=True)
class Source:
    """One parsed rule file: its display name and the round-trip tree (nodes know line/col)."""

    name: str
    data: Any
    nodes: int = 0  # with aliases expanded (MAX_NODES)

    def position(self, loc: Loc, *, key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the node at ``loc``; ``key=True`` points at a mapping key.

        Walks as deep as the tree allows: a missing key points at its parent mapping.
        """
        node = self.data
        pos = (0, 0)
        for i, part in enumerate(loc):
            lc = getattr(node, "lc", None)
            if lc is None:
                break
            last = i == len(loc) - 1
            if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
                pos = lc.item(part)
                node = node[part]
            elif isinstance(node, dict) and part in node:
                pos = lc.key(part) if (key and last) else lc.value(part)
                if not last and _is_scalar(node[part]):
                    pos = lc.value(part)
                node = node[part]
            else:
                if i == 0 or pos == (0, 0):
                    pos = (lc.line, lc.col)
                break
        return pos[0] + 1, pos[1] + 1

    def where(self, loc: Loc, *, key: bool = False) -> str:
        line, col = self.position(loc, key=key)
        return f"{self.name}:{line}:{col}"


def _is_scalar(node: Any) -> bool:
    return not isinstance(node, dict | list)


@dataclass
class Diagnostics:
    """Every error and warning of one load, each already carrying its place."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def error(self, src: Source, loc: Loc, message: str, *, key: bool = False) -> None:
        self.errors.append(f"{src.where(loc, key=key)}: {message}")

    def warn(self, src: Source, loc: Loc, message: str, *, key: bool = False) -> None:
        self.warnings.append(f"{src.where(loc, key=key)}: {message}")


_OUTSIDE = "a symbolic link to a file outside the rules folder: not read"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def display_name(path: Path) -> str:
    """A path relative to the working directory when it is below it (as promtool prints)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _leaves(link: Path, folder: Path) -> bool:
    """Whether ``link`` is a symbolic link whose target is outside ``folder``."""
    if not link.is_symlink():
        return False
    return not link.resolve().is_relative_to(folder.resolve())


def collect_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """Rule files from files and directories (``*.yaml``/``*.yml``, not recursive, sorted).

    A symbolic link whose target is outside its folder is not read: errors quote the places
    of a rule file, and a link to any file the service can read would have them quote it.
    Links inside the folder are followed (a Kubernetes ConfigMap volume is made of them)."""
    files: list[Path] = []
    errors: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml") and q.is_file())
            if not found:
                errors.append(f"{display_name(p)}:0:0: no *.yaml rule files in this directory")
            for q in found:
                if _leaves(q, p):
                    errors.append(f"{display_name(q)}:0:0: {_OUTSIDE}")
                else:
                    files.append(q)
        elif p.is_file():
            if _leaves(p, p.parent):
                errors.append(f"{display_name(p)}:0:0: {_OUTSIDE}")
            else:
                files.append(p)
        else:
            errors.append(f"{display_name(p)}:0:0: no such file or directory")
    unique: list[Path] = []
    seen: set[Path] = set()
    for f in files:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique, errors


def read_source(path: Path, diags: Diagnostics) -> tuple[Source | None, bytes]:
    """Parse one file; YAML errors (syntax, duplicate keys) become diagnostics."""
    name = display_name(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        diags.errors.append(f"{name}:0:0: cannot read: {exc.strerror}")
        return None, b""
    if len(raw) > MAX_FILE_BYTES:
        diags.errors.append(f"{name}:0:0: larger than {MAX_FILE_BYTES} bytes")
        return None, raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        diags.errors.append(f"{name}:0:0: not UTF-8 (byte {exc.start})")
        return None, raw
    yaml = YAML(typ="rt")
    try:
        problem, nodes = _shape_error(yaml.parse(text))
        if problem is not None:
            diags.errors.append(f"{name}:{problem}")
            return None, raw
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = " ".join(p for p in (exc.problem, exc.context) if p) or str(exc)
        diags.errors.append(f"{name}:{line}:{col}: YAML: {problem}")
        return None, raw
    return Source(name, data, nodes), raw


def _shape_error(events: Iterable[Event]) -> tuple[str | None, int]:
    """``line:col: message`` when the document nests deeper than MAX_DEPTH or has more than
    MAX_NODES nodes with its aliases expanded, None when it is within bounds; and its nodes
    (expanded). One pass over
    the parser's events, no recursion and nothing built: an alias counts the nodes its anchor
    stood for, so a bomb is found at the alias that crosses the bound."""
    sizes: dict[str, int] = {}  # anchor -> nodes it stands for, expanded
    open_: list[tuple[int, str | None]] = []  # per open collection: nodes before it, anchor
    nodes = 0
    for event in events:
        if isinstance(event, CollectionEndEvent):
            before, anchor = open_.pop()
            if anchor is not None:
                sizes[anchor] = nodes - before
            continue
        if not isinstance(event, NodeEvent):
            continue  # stream and document start and end
        mark = event.start_mark
        place = f"{mark.line + 1}:{mark.column + 1}"
        if isinstance(event, AliasEvent):
            nodes += sizes.get(str(event.anchor), 1)  # an unknown alias: the loader says so
            if nodes > MAX_NODES:
                return f"{place}: aliases expand to more than {MAX_NODES} nodes", nodes
            continue
        if isinstance(event, CollectionStartEvent):
            open_.append((nodes, event.anchor))
            if len(open_) > MAX_DEPTH:
                return f"{place}: nesting deeper than {MAX_DEPTH}", nodes
        elif event.anchor is not None:
            sizes[event.anchor] = 1
        nodes += 1
        if nodes > MAX_NODES:
            return f"{place}: more than {MAX_NODES} nodes", nodes
    return None, nodes


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        out.extend(_models_in(arg))
    return out


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel]:
    cur = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = {f.alias or n: f for n, f in cur.model_fields.items()}
        if part not in fields:
            continue
        found = _models_in(fields[part].annotation)
        if found:
            cur = found[0]
    return cur


def _loc_text(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def report_validation(
    diags: Diagnostics,
    src: Source,
    base: Loc,
    exc: ValidationError,
    model: type[BaseModel],
    subject: str = "",
) -> None:
    """Turn every pydantic error into a positioned diagnostic (``subject`` names the object)."""
    prefix = f"{subject}: " if subject else ""
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(p for p in err["loc"] if p != "[key]")
        kind = err["type"]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            keys = [f.alias or n for n, f in parent.model_fields.items()]
            hint = did_you_mean(str(loc[-1]), keys)
            diags.error(src, base + loc, f'{prefix}unknown key "{loc[-1]}"{hint}', key=True)
        elif kind == "missing":
            diags.error(src, base + loc, f'{prefix}missing required key "{loc[-1]}"')
        elif loc:
            diags.error(src, base + loc, f"{prefix}{_loc_text(loc)}: {msg}")
        else:
            diags.error(src, base, f"{prefix}{msg}")
