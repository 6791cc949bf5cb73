"""Compact JSON text for what the store keeps (labels, annotations, event data).

Every webhook stores a handful of small objects. pydantic-core's serializer, already a
dependency, writes them about five times faster than ``json.dumps`` (0.3-0.5 µs against 2-2.5 µs
here), which is a measurable share of the writer's time per webhook. The text is compact JSON in
UTF-8; readers use ``json.loads`` as before.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json


def dumps(obj: Any) -> str:
    """``obj`` (dicts, lists, str, numbers, None) as compact JSON text."""
    return to_json(obj).decode()
