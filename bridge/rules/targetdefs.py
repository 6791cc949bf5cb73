"""Target declarations: known types, settings validation, and secret references.

Secrets are never written in a rule file: a string setting may contain ``${ENV_VAR}``, and any
setting ``<name>`` may instead be given as ``<name>_file: path`` (read at load, trailing
newline stripped; relative to the rule file). Resolved values are kept as ``Secret`` and shown
masked. The known types and their settings models come from ``bridge.targets.REGISTRY``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from bridge.core.secrets import Secret
from bridge.rules.model import TargetDef
from bridge.rules.source import Diagnostics, Loc, Source, did_you_mean, report_validation
from bridge.targets import REGISTRY

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _is_secret_field(model: type[BaseModel], name: str) -> bool:
    field = model.model_fields.get(name)
    if field is None:
        return False
    ann = field.annotation
    return ann is Secret or Secret in get_args(ann)


class _Resolver:
    def __init__(self, src: Source, diags: Diagnostics, env: Mapping[str, str], resolve: bool):
        self.src, self.diags, self.env, self.resolve = src, diags, env, resolve
        self.base = Path(src.name).parent

    def string(self, value: str, loc: Loc, subject: str) -> tuple[str, bool]:
        """Expand ``${VAR}``; returns (value, came_from_a_reference)."""
        if not _REF.search(value):
            return value, False
        missing = [m.group(1) for m in _REF.finditer(value) if m.group(1) not in self.env]
        if missing and self.resolve:
            for var in missing:
                self.diags.error(self.src, loc, f"{subject}: environment variable {var} is not set")
            return "", True
        if not self.resolve:
            return value, True
        return _REF.sub(lambda m: self.env[m.group(1)], value), True

    def file(self, value: Any, loc: Loc, subject: str) -> str:
        if not isinstance(value, str) or not value:
            self.diags.error(self.src, loc, f"{subject}: must be a file path")
            return ""
        if not self.resolve:
            return f"<file {value}>"
        path = Path(value) if Path(value).is_absolute() else self.base / value
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            self.diags.error(self.src, loc, f"{subject}: cannot read secret file {value!r}: {why}")
            return ""


def _walk(r: _Resolver, value: Any, loc: Loc, subject: str, secret_out: list[Loc]) -> Any:
    if isinstance(value, str):
        text, ref = r.string(value, loc, subject)
        if ref:
            secret_out.append(loc)
        return text
    if isinstance(value, dict):
        return {str(k): _walk(r, v, (*loc, k), subject, secret_out) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(r, v, (*loc, i), subject, secret_out) for i, v in enumerate(value)]
    return value


def _mask(value: Any, loc: Loc, secrets: list[Loc]) -> Any:
    if loc in secrets:
        return Secret(value) if isinstance(value, str) else value
    if isinstance(value, dict):
        return {k: _mask(v, (*loc, k), secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, (*loc, i), secrets) for i, v in enumerate(value)]
    return value


def load_target(
    src: Source,
    loc: Loc,
    name: str,
    raw: Any,
    diags: Diagnostics,
    env: Mapping[str, str] | None = None,
    resolve_secrets: bool = True,
) -> TargetDef | None:
    """Validate one ``targets:`` entry; every problem goes to ``diags``."""
    subject = f'target "{name}"'
    if not isinstance(raw, dict):
        diags.error(src, loc, f"{subject}: must be a mapping with a type and its settings")
        return None
    type_name = raw.get("type")
    types = tuple(REGISTRY)
    if type_name is None:
        diags.error(src, loc, f'{subject}: missing required key "type" (one of {", ".join(types)})')
        return None
    if not isinstance(type_name, str) or type_name not in types:
        hint = did_you_mean(str(type_name), types)
        diags.error(src, (*loc, "type"), f'{subject}: unknown target type "{type_name}"{hint}')
        return None
    model = REGISTRY[type_name].Config
    before = len(diags.errors)
    resolver = _Resolver(src, diags, os.environ if env is None else env, resolve_secrets)
    secret_locs: list[Loc] = []
    settings: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "type":
            continue
        key = str(key)
        kloc = (*loc, key)
        if key.endswith("_file") and key not in model.model_fields:
            field = key.removesuffix("_file")
            if field in raw:
                diags.error(src, kloc, f"{subject}: give {field} or {key}, not both", key=True)
                continue
            settings[field] = resolver.file(value, kloc, subject)
            secret_locs.append((field,))
            continue
        sub: list[Loc] = []
        settings[key] = _walk(resolver, value, kloc, subject, sub)
        secret_locs.extend(s[len(loc) :] for s in sub)
    for key in settings:
        if _is_secret_field(model, key) and (key,) not in secret_locs:
            diags.error(
                src, (*loc, key),
                f"{subject}: {key} is a secret: write ${{ENV_VAR}} or {key}_file: PATH, "
                "not the value itself",
            )  # fmt: skip
    config = None
    if len(diags.errors) == before:
        try:
            config = model.model_validate(settings)
        except ValidationError as exc:
            report_validation(diags, src, loc, exc, model, subject)
    if len(diags.errors) != before:
        return None
    masked = _mask(settings, (), secret_locs)
    return TargetDef(name, type_name, masked, src.where(loc, key=True), config)
