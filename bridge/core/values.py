"""``@immutable``: the decorator of the small immutable records every webhook creates.

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
