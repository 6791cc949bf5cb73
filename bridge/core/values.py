"""``@immutable``: the decorator of the small immutable records every webhook creates; and
``parse_id``, the one reading of an id that comes from outside (a path, a query parameter, a
chat command or button).

The pure core's values (incidents, alert states, timeline events, plans, decisions) and the
records that carry a webhook to the writer and back are immutable. A frozen dataclass enforces
that at run time by setting every field through ``object.__setattr__``, and every webhook
builds many of them: too costly on the hot path (docs/performance.md has the figures).

``@immutable`` keeps the guarantee where it is checked, in mypy's strict run in CI: to the type
checker these classes are frozen dataclasses (``dataclass_transform(frozen_default=True)``), so
assigning to a field is an error. At run time they are plain dataclasses with the same
``__init__``, ``__eq__``, ``__repr__`` and ``__hash__`` (over the fields, as frozen ones have).
``dataclasses.replace`` works on them as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from typing_extensions import dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def immutable(cls: type[T]) -> type[T]:
    return dataclass(unsafe_hash=True)(cls)


# The store's ids are SQLite integers: 1 to 2**63-1. Beyond, no row can exist (and SQLite
# refuses the number outright).
MAX_ID = 2**63 - 1
_MAX_DIGITS = len(str(MAX_ID))


def parse_id(text: str) -> int | None:
    """The id ``text`` spells in plain ASCII digits, from 1 to ``MAX_ID``; else None.

    Not ``str.isdigit()`` and ``int()``: ``"²"`` passes the first and fails the second, while
    ``int()`` takes Arabic-Indic digits, signs, spaces and underscores (``"١٢"``, ``"+5"``,
    ``" 5"``, ``"1_0"``) that nobody means as an id. Leading zeros are fine (``007`` is 7)."""
    digits = text.lstrip("0")
    if not digits or len(digits) > _MAX_DIGITS or not (digits.isascii() and digits.isdigit()):
        return None
    value = int(digits)
    return value if value <= MAX_ID else None
