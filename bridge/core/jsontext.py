"""Compact JSON text for what the store keeps (labels, annotations, event data).

Every webhook stores a handful of small objects, in the writer thread. pydantic-core's
serializer, already a dependency, writes them several times faster than ``json.dumps``
(docs/performance.md). The text is compact JSON in UTF-8; readers use ``json.loads``.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json


def dumps(obj: Any) -> str:
    """``obj`` (dicts, lists, str, numbers, None) as compact JSON text."""
    return to_json(obj).decode()
