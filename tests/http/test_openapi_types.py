"""The OpenAPI document types what the answers carry inside: the postmortem's facts, a
follow-up item's detail and the validation are objects with named fields, not any JSON."""

from __future__ import annotations

from typing import Any

from bridge.core.postmortem import DURATIONS, MILESTONE_LABELS
from bridge.http import openapi


def _resolve(schemas: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """The object schema behind a $ref, an anyOf with null, or the node itself."""
    for option in node.get("anyOf", [node]):
        if "$ref" in option:
            return dict(schemas[option["$ref"].rsplit("/", 1)[-1]])
    return node


def _typed(schemas: dict[str, Any], model: str, field: str) -> dict[str, Any]:
    node = _resolve(schemas, schemas[model]["properties"][field])
    assert node.get("type") == "object" and node.get("properties"), (model, field, node)
    assert node.get("additionalProperties") is False, (model, field)
    return node


def test_the_nested_answers_are_typed() -> None:
    schemas = openapi.build()["components"]["schemas"]
    facts = _typed(schemas, "PostmortemView", "facts")
    assert set(facts["properties"]) >= {"milestones", "durations", "handovers", "validation"}
    detail = _typed(schemas, "FollowUpItem", "detail")
    assert set(detail["properties"]) == {"findings", "stabilization_s", "checks", "validation"}
    validation = _typed(schemas, "FollowUpView", "validation")
    assert set(validation["properties"]) == {
        "passed", "quiet", "window_s", "checks", "reasons", "skipped"
    }  # fmt: skip
    # The milestones' and durations' names are enumerated, as core/postmortem names them.
    milestone = schemas["FactsMilestone"]["properties"]["name"]
    assert milestone["enum"] == list(MILESTONE_LABELS)
    duration = schemas["FactsDuration"]["properties"]["name"]
    assert duration["enum"] == [name for name, *_ in DURATIONS]
    assert "from" in schemas["FactsHandover"]["properties"]


def test_api_md_names_the_milestone_and_duration_keys() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    for name in [*MILESTONE_LABELS, *(n for n, *_ in DURATIONS)]:
        assert f"`{name}`" in text, name
