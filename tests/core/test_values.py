"""``@immutable`` records: frozen to the type checker, plain dataclasses at run time."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
from mypy import api as mypy_api

from bridge.core.incidents import AlertState, Event


def test_equal_records_are_equal_and_hash_alike() -> None:
    a = AlertState("fp", "firing", 1, None)
    b = AlertState("fp", "firing", 1, None)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert dataclasses.replace(a, status="resolved") == AlertState("fp", "resolved", 1, None)


def test_a_record_holding_a_dict_is_unhashable_as_a_frozen_dataclass_would_be() -> None:
    with pytest.raises(TypeError):
        hash(Event("opened", "text", {"a": 1}))


def test_the_type_checker_refuses_to_change_a_field(tmp_path: Path) -> None:
    snippet = tmp_path / "change.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from bridge.core.incidents import AlertState

            state = AlertState("fp", "firing", 1, None)
            state.status = "resolved"
            AlertState("fp", "firing", "not a number", None)
            """
        )
    )
    out, _, status = mypy_api.run(
        ["--strict", "--no-incremental", "--follow-imports=silent", str(snippet)]
    )
    assert status == 1, out
    assert 'Property "status" defined in "AlertState" is read-only' in out
    assert 'Argument 3 to "AlertState" has incompatible type "str"' in out
