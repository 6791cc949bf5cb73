"""The package map of docs/architecture.md, enforced: no import cycle inside ``bridge``, and
imports only in the directions the map allows. Imports inside functions count too (a lazy
import is still a dependency); ``if TYPE_CHECKING:`` imports count as well."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bridge"

# Each layer and the layers it may import (besides itself). Top-level modules are layers of
# their own. Reading down the list, a layer only uses layers named before it.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "private_files": set(),  # the files beside the database: the standard library only
    "delivery": set(),  # the package itself: a docstring
    "config": {"core", "private_files"},
    "logs": {"core"},
    "metrics": {"core"},
    "promql": {"core"},
    "alertmanager_api": {"core"},
    "delivery.protocol": {"core"},
    "delivery.markup": set(),
    "delivery.budget": {"delivery.markup"},
    "delivery.classify": {"delivery.protocol"},
    "delivery.snapshot": {"core"},
    "silences": {"core", "delivery.protocol", "alertmanager_api"},
    "delivery.templates": {"core", "delivery.markup", "delivery.snapshot", "delivery.budget"},
    "targets": {"core", "delivery.protocol", "delivery.markup", "delivery.classify",
                "delivery.snapshot", "delivery.templates"},
    "rules": {"core", "targets", "delivery.budget"},
    "store": {"core", "private_files"},
    "delivery.worker": {"core", "metrics", "store", "delivery.protocol", "delivery.snapshot"},
    "runtime": {"core", "rules", "targets"},
    "service": {"core", "config", "metrics", "promql", "runtime", "store", "targets",
                "delivery.worker", "private_files"},
    "indexer": {"core", "service", "store"},
    "reconciler": {"core", "service", "store", "alertmanager_api"},
    "kb": {"core", "delivery.markup", "delivery.protocol", "delivery.templates", "service",
           "store"},
    "http": {"core", "config", "metrics", "service", "store", "runtime", "kb",
             "delivery.templates", "private_files"},
    "app": {"core", "config", "metrics", "promql", "runtime", "service", "indexer", "store",
            "targets", "http", "kb", "delivery.templates", "delivery.worker", "reconciler",
            "alertmanager_api", "silences"},
    "cli": {"core", "config", "logs", "rules", "targets", "delivery.templates", "app", "store",
            "runtime"},
    "__main__": {"cli"},
}  # fmt: skip
# The pure core imports none of these (nor anything above it, checked by ALLOWED).
IMPURE = ("aiohttp", "sqlite3", "sqlite_utils", "jinja2", "asyncio", "tenacity")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    """``bridge.delivery.worker`` -> ``delivery.worker``; ``bridge.rules.loader`` -> ``rules``."""
    parts = module.split(".")[1:]
    if not parts:
        return "bridge"
    if parts[0] == "delivery" and len(parts) > 1:
        return f"delivery.{parts[1]}"
    return parts[0]


def imports(path: Path) -> Iterator[tuple[str, int]]:
    """Absolute module names imported by ``path`` (relative imports resolved), with lines."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module_name(path if path.name == "__init__.py" else path.parent)
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                # ``from bridge.store import outbox`` imports the submodule when there is one.
                candidate = f"{base}.{alias.name}"
                yield (candidate if _exists(candidate) else base), node.lineno


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def graph() -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        out[name] = {
            m: line for m, line in imports(path) if m == "bridge" or m.startswith("bridge.")
        }
    return out


def test_no_import_cycle_inside_bridge() -> None:
    full = graph()
    edges = {m: {d for d in deps if d in full and d != m} for m, deps in full.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_imports_follow_the_package_map() -> None:
    wrong = []
    for module, deps in graph().items():
        src = layer(module)
        if src == "bridge":
            continue
        assert src in ALLOWED, (
            f"{module}: layer {src!r} is not on the map (tests/test_architecture.py)"
        )
        for dep, line in deps.items():
            dst = layer(dep)
            if dst in (src, "bridge"):
                continue
            if dst not in ALLOWED[src]:
                wrong.append(f"{module}:{line} imports {dep} ({src} -> {dst})")
    assert not wrong, "\n".join(wrong)


def test_the_core_is_pure() -> None:
    found = []
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        for name, line in imports(path):
            if name.split(".")[0] in IMPURE:
                found.append(f"{module_name(path)}:{line} imports {name}")
    assert not found, found


def test_importing_the_core_loads_no_io_machinery() -> None:
    code = (
        "import sys, bridge.core.incidents, bridge.core.notify, bridge.core.events; "
        f"print(sorted(m for m in {IMPURE!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """The helpers see a lazy import, a relative one, and a submodule named in a from-import."""
    src = tmp_path / "m.py"
    src.write_text("from bridge.store import outbox\ndef f():\n    import bridge.app\n")
    found = dict(imports(src))
    assert "bridge.store.outbox" in found and "bridge.app" in found
    assert (
        layer("bridge.delivery.worker") == "delivery.worker" and layer("bridge.rules.x") == "rules"
    )


def test_the_chat_platforms_import_only_their_common_module() -> None:
    """``http/chat``: Slack and Mattermost each over ``common``; ``common`` knows neither
    platform, and neither platform knows the other (one way, as the map's layers)."""
    full = graph()
    chat = "bridge.http.chat"
    platforms = {f"{chat}.slack", f"{chat}.mattermost"}
    assert {f"{chat}.common", *platforms} <= set(full), "http/chat: a module is missing"
    wrong = [
        f"{module}:{line} imports {dep}"
        for module in (f"{chat}.common", *platforms)
        for dep, line in full[module].items()
        if dep == chat or (dep in platforms and dep != module)
    ]
    assert not wrong, "\n".join(wrong)


# Inside ``http/pages``, each module and the modules of the pages it may import: one way, from
# the rendering up to the forms; none imports the package (its ``__init__`` imports them all).
PAGES_ALLOWED = {
    "render": set(),
    "signin": {"render"},
    "views": {"render", "signin"},
    "forms": {"render", "signin", "views"},
    "static": {"render"},
    "insights": {"render", "signin"},
}


def test_the_pages_modules_import_one_way() -> None:
    """``http/pages``: views and forms use render and signin, never the reverse."""
    full = graph()
    pages = "bridge.http.pages"
    assert {f"{pages}.{m}" for m in PAGES_ALLOWED} <= set(full), "http/pages: a module is missing"
    wrong = [
        f"{pages}.{module}:{line} imports {dep}"
        for module, allowed in PAGES_ALLOWED.items()
        for dep, line in full[f"{pages}.{module}"].items()
        if dep == pages
        or (dep.startswith(f"{pages}.") and dep.removeprefix(f"{pages}.") not in allowed)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_slack_target_has_what_chat_calls() -> None:
    """The chat routes reach a ``slack`` target through ``http/chat/slack.SlackApi`` (the
    http layer does not import the targets): the target has each of its methods, with the same
    parameters (its extra ones optional) and the same answer, and is one to ``isinstance``."""
    import inspect

    from bridge.http.chat.slack import SlackApi
    from bridge.targets.base import TargetDeps
    from bridge.targets.slack import SlackConfig, SlackTarget

    methods = [n for n, v in vars(SlackApi).items() if inspect.iscoroutinefunction(v)]
    assert methods, "SlackApi names no method"
    for name in methods:
        wanted = inspect.signature(getattr(SlackApi, name))
        has = inspect.signature(getattr(SlackTarget, name))
        assert inspect.iscoroutinefunction(getattr(SlackTarget, name)), name
        for param in wanted.parameters.values():
            mine = has.parameters.get(param.name)
            assert mine is not None, f"SlackTarget.{name} takes no {param.name}"
            assert (mine.kind, mine.annotation) == (param.kind, param.annotation), param.name
            assert param.default is param.empty or mine.default == param.default, param.name
        extra = [p for n, p in has.parameters.items() if n not in wanted.parameters]
        assert all(p.default is not p.empty for p in extra), f"SlackTarget.{name}: {extra}"
        assert has.return_annotation == wanted.return_annotation, name
    target = SlackTarget("slack", SlackConfig(token="xoxb-test"), TargetDeps())
    assert isinstance(target, SlackApi)


# What a module outside ``bridge/store/`` may import of the store: its interface and errors,
# and from the package itself what the service opens and the offline tools (docs/architecture.md).
STORE_INTERFACE = {"bridge.store.interface", "bridge.store.errors"}
STORE_PACKAGE_NAMES = {
    "Store",
    "StoreError",
    "StoreUnavailable",
    "backup_database",
    "backup_postgres",
    "check_database",
    "check_postgres",
    "copy_database",
    "new_store",
}
DRIVERS = ("sqlite3", "sqlite_utils")


def store_reach(path: Path) -> list[str]:
    """How ``path`` (outside the store) goes around the store's interface: a database driver
    imported, a store module other than the interface, a name of the package it does not
    offer, or the SQLite store's ``read``/``write`` (a function of a connection) called."""
    found = []
    for name, line in imports(path):
        driver = name.split(".")[0] in DRIVERS
        if driver or (name.startswith("bridge.store.") and name not in STORE_INTERFACE):
            found.append(f"{path.name}:{line} imports {name}")
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "bridge.store" and not node.level:
            for alias in node.names:
                if alias.name not in STORE_PACKAGE_NAMES:
                    found.append(f"{path.name}:{node.lineno} imports bridge.store.{alias.name}")
        if isinstance(node, ast.Attribute) and node.attr in ("read", "write"):
            owner = node.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if name == "store":
                found.append(f"{path.name}:{node.lineno} calls store.{node.attr}")
    return found


def private_reach(path: Path) -> list[str]:
    """Private names (``_x``) ``path`` takes from another module: imported by name, or read as
    an attribute of a module it imported. A package's private submodule (``targets/_http``)
    may be imported inside that package."""
    parts = path.with_suffix("").parts
    own = ".".join(parts[len(parts) - 1 - parts[::-1].index("bridge") : -1])  # its package
    tree = ast.parse(path.read_text(), str(path))
    modules: set[str] = set()  # local names bound to imported bridge modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("bridge") and alias.asname:
                    modules.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bridge"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if _exists(candidate):
                    modules.add(alias.asname or alias.name)
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and not (_exists(candidate) and node.module == own):
                    found.append(f"{path.name}:{node.lineno} imports {candidate}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{path.name}:{node.lineno} reads {node.value.id}.{node.attr}")
    return found


def test_only_the_store_knows_its_database() -> None:
    """Outside ``bridge/store/`` the store is ``store.interface.StoreInterface`` and its
    errors: no driver, no SQL function of a connection, no store module but the interface
    (another backend then changes nothing outside the store)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if PACKAGE / "store" not in path.parents:
            found += [f"{module_name(path)}: {f}" for f in store_reach(path)]
    assert not found, "\n".join(found)


def test_no_module_takes_another_modules_private_names() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += [f"{module_name(path)}: {f}" for f in private_reach(path)]
    assert not found, "\n".join(found)


def test_the_store_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    pkg = tmp_path / "bridge" / "http"
    pkg.mkdir(parents=True)
    src = pkg / "m.py"
    src.write_text(
        "import sqlite3\nfrom bridge.store import Batched, Store\n"
        "from bridge.store.queries import get_incident\nfrom bridge.store.interface import X\n"
        "from bridge.store.ingest import _incident\nfrom bridge.http import pages as p\n"
        "async def f(state):\n    await state.store.read(get_incident)\n    p._read\n"
    )
    reach = "\n".join(store_reach(src))
    for wanted in ("sqlite3", "bridge.store.Batched", "bridge.store.queries", "store.read"):
        assert wanted in reach, wanted
    assert "interface" not in reach and "bridge.store.Store" not in reach
    private = "\n".join(private_reach(src))
    assert "bridge.store.ingest._incident" in private and "p._read" in private
    assert not private_reach(PACKAGE / "targets" / "slack.py")  # its package's own _http


def _defined(name: str) -> list[str]:
    """The modules of bridge/ that define a class or function called ``name`` at top level."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            kinds = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
            if isinstance(node, kinds) and node.name == name:
                found.append(path.relative_to(ROOT).as_posix())
    return found


def test_a_check_result_has_one_type_and_one_function_that_runs_checks() -> None:
    # A PromQL check's result is one record, judged in core/checks and kept as it is by the
    # validation; the name means nothing else anywhere (the backup's and the postmortem's
    # records say what they are).
    assert _defined("CheckResult") == ["bridge/core/checks.py"]
    assert _defined("CheckOutcome") == []
    assert _defined("run_checks") == ["bridge/promql.py"]
    assert _defined("check_outcomes") == []
