"""docs/rules.md documents every key of the rule and test file schemas, and every command."""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import BaseModel

from bridge.cli.rules import register
from bridge.rules import schema, testing
from bridge.targets import REGISTRY

DOC = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text()


def _keys(models: list[type[BaseModel]]) -> set[str]:
    return {key for m in models for key in schema.keys_of(m)}


def test_every_schema_key_is_documented() -> None:
    models = schema.all_models()
    assert len(models) >= 10
    missing = sorted(k for k in _keys(models) if f"`{k}`" not in DOC and f"`{k}:" not in DOC)
    assert not missing, f"keys missing from docs/rules.md: {missing}"


def test_every_test_file_key_is_documented() -> None:
    models: list[type[BaseModel]] = [
        testing.TestFile, testing.TestCase, testing.TestAlert, testing.ExpectedIncident, testing.ExpectedTiers,
        testing.ExpectedStep,
    ]  # fmt: skip
    missing = sorted(k for k in _keys(models) if f"`{k}`" not in DOC)
    assert not missing, f"test-file keys missing from docs/rules.md: {missing}"


def test_console_settings_and_target_types_are_documented() -> None:
    # console is validated fully here; its own settings are documented in docs/rules.md
    missing = [k for k in schema.keys_of(REGISTRY["console"].Config) if f"`{k}`" not in DOC]
    missing += [t for t in REGISTRY if f"`{t}`" not in DOC]
    assert not missing, missing


def test_every_rules_command_and_flag_is_documented() -> None:
    parser = argparse.ArgumentParser(prog="incident-bridge")
    rules = register(parser.add_subparsers())
    missing = []
    for action in rules._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if f"incident-bridge rules {name}" not in DOC:
                    missing.append(name)
                for a in sub._actions:
                    missing += [
                        f"{name} {f}"
                        for f in a.option_strings
                        if f.startswith("--") and f != "--help" and f"`{f}" not in DOC
                    ]
    assert not missing, missing
