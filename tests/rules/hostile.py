"""Hostile rule files, small on disk and huge once read: the rules tests refuse them and
bench/hostile.py measures what refusing them costs."""

from __future__ import annotations


def alias_bomb(levels: int = 8, fan: int = 10) -> str:
    """A ~1 KB file whose root route has ``fan ** levels`` (10^8) routes once aliases expand."""
    lines = ["targets: {out: {type: console}}", "templates:"]
    lines.append("  r0: &r0 {name: r0, matchers: ['a=\"b\"']}")
    for i in range(1, levels + 1):
        children = ", ".join([f"*r{i - 1}"] * fan)
        lines.append(f"  r{i}: &r{i} {{name: r{i}, routes: [{children}]}}")
    lines.append(f"route: *r{levels}")
    return "\n".join(lines) + "\n"


def deep(depth: int = 5000) -> str:
    return "routes: " + "[" * depth + "]" * depth + "\n"
