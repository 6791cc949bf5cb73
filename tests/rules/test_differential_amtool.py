"""Differential test: our routing against the real Alertmanager's (``amtool config routes test``).

Hypothesis generates routing trees (matchers of all four kinds, ``continue``, nesting) and
label sets; each tree is written both as our rule file and as an Alertmanager config whose
receivers are named after the routes. The routes our engine picks must be exactly the
receivers amtool prints, in order.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.rules import load_rules, match_routes
from tests.rules.conftest import in_ci

LABELS = ("a", "b", "c")
VALUES = ("x", "y", "xy", "yx")
EQ_VALUES = ("", "x", "y", "xy")
REGEXES = (
    "x", "x|y", ".*", ".+", "x.*", "y?", "(x|xy)", "", "[xy]+", "X", "(?i)X", "xy|y.",
    "x(?i)Y|y", "x(?i)Y|yX", "[[:alpha:]]+", "[^x]*", "y{1,2}", "(x(?i)Y)|Y",
)  # fmt: skip
MIN_CASES = 200


@dataclass
class Node:
    matchers: list[str]
    cont: bool
    children: list[Node] = field(default_factory=list)
    name: str = ""


def _quote(v: str) -> str:
    return '"' + v + '"'


matcher = st.one_of(
    st.builds(
        lambda n, op, v: f"{n}{op}{_quote(v)}",
        st.sampled_from(LABELS),
        st.sampled_from(("=", "!=")),
        st.sampled_from(EQ_VALUES),
    ),
    st.builds(
        lambda n, op, v: f"{n}{op}{_quote(v)}",
        st.sampled_from(LABELS),
        st.sampled_from(("=~", "!~")),
        st.sampled_from(REGEXES),
    ),
)


def nodes(depth: int) -> st.SearchStrategy[Node]:
    kids = st.lists(nodes(depth - 1), max_size=3) if depth > 0 else st.just([])
    return st.builds(Node, st.lists(matcher, max_size=2), st.booleans(), kids)


label_sets = st.dictionaries(st.sampled_from(LABELS), st.sampled_from(VALUES))
trees = st.lists(nodes(2), min_size=1, max_size=4)


def _name(children: list[Node], counter: list[int]) -> None:
    for c in children:
        counter[0] += 1
        c.name = f"r{counter[0]}"
        _name(c.children, counter)


def _ours(n: Node) -> dict[str, object]:
    return {
        "name": n.name,
        "matchers": n.matchers,
        "continue": n.cont,
        "routes": [_ours(c) for c in n.children],
    }


def _theirs(n: Node) -> dict[str, object]:
    return {
        "receiver": n.name,
        "matchers": n.matchers,
        "continue": n.cont,
        "routes": [_theirs(c) for c in n.children],
    }


def _all(children: list[Node]) -> list[str]:
    out = []
    for c in children:
        out.append(c.name)
        out.extend(_all(c.children))
    return out


def _dump(data: object, path: Path) -> None:
    # JSON is YAML: no emitter quirks between ruamel and Go's yaml.v2.
    path.write_text(json.dumps(data, indent=1))


def _amtool(amtool: str, config: Path, labels: dict[str, str]) -> list[str]:
    # A label no matcher uses, so that an empty label set is still a valid argument list.
    args = [f"{k}={v}" for k, v in sorted(labels.items())] + ["zz=1"]
    proc = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={config}", *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(",")


def test_routes_match_alertmanager(amtool: str, tmp_path: Path) -> None:
    seen = {"cases": 0}
    pool = ThreadPoolExecutor(max_workers=4)

    # Reproducible in CI (derandomize); a fresh random exploration on every local run.
    @settings(
        max_examples=120,
        deadline=None,
        database=None,
        derandomize=in_ci(),
        suppress_health_check=list(HealthCheck),
    )
    @given(children=trees, sets=st.lists(label_sets, min_size=4, max_size=4))
    def check(children: list[Node], sets: list[dict[str, str]]) -> None:
        _name(children, [0])
        ours = tmp_path / "rules.yaml"
        theirs = tmp_path / "alertmanager.yml"
        _dump({"route": {"name": "root", "routes": [_ours(c) for c in children]}}, ours)
        receivers = [{"name": n} for n in ["root", *_all(children)]]
        _dump(
            {
                "route": {"receiver": "root", "routes": [_theirs(c) for c in children]},
                "receivers": receivers,
            },
            theirs,
        )
        loaded = load_rules([ours])
        assert loaded.ruleset is not None, loaded.errors
        expected = list(pool.map(lambda ls: _amtool(amtool, theirs, ls), sets))
        for labels, want in zip(sets, expected, strict=True):
            # An absent label and an empty one are the same to Alertmanager: give ours both.
            padded = {**{n: "" for n in LABELS}, **labels}
            got = [r.name for r in match_routes(loaded.ruleset.root, labels)]
            got_padded = [r.name for r in match_routes(loaded.ruleset.root, padded)]
            assert got == want, (labels, ours.read_text())
            assert got_padded == want, (padded, ours.read_text())
            seen["cases"] += 1

    try:
        check()
    finally:
        pool.shutdown()
    assert seen["cases"] >= MIN_CASES, seen
