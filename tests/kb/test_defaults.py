"""The knowledge base's settings as ``incident-bridge serve`` reads them: by default a folder
``kb`` beside the database (so that ``make run`` publishes postmortems into files), ``--kb-dir``
elsewhere, ``--kb-database-only`` none at all, and raw HTML published only on request."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bridge.config import ConfigError, Settings, add_serve_arguments, settings_from


def serve_settings(*argv: str, env: dict[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return settings_from(parser.parse_args(list(argv)), env or {})


def test_the_knowledge_base_is_beside_the_database_by_default(tmp_path: Path) -> None:
    db = tmp_path / "data" / "incident-bridge.db"
    settings = serve_settings("--db", str(db))
    assert settings.kb_folder == tmp_path / "data" / "kb"
    assert not settings.kb_allow_raw_html
    # The embedded defaults: ./data/incident-bridge.db, so ./data/kb.
    assert serve_settings().kb_folder == Path("data/kb")
    assert Settings().kb_folder == Path("data/kb")


def test_a_folder_of_its_own_or_none(tmp_path: Path) -> None:
    kb = tmp_path / "postmortems"
    assert serve_settings("--kb-dir", str(kb)).kb_folder == kb
    assert serve_settings(env={"INCIDENT_BRIDGE_KB_DIR": str(kb)}).kb_folder == kb
    assert serve_settings("--kb-database-only").kb_folder is None
    only = serve_settings(env={"INCIDENT_BRIDGE_KB_DATABASE_ONLY": "true"})
    assert only.kb_folder is None
    with pytest.raises(ConfigError, match="--kb-database-only: no folder is written"):
        serve_settings("--kb-database-only", "--kb-dir", str(kb))


def test_raw_html_is_published_only_on_request() -> None:
    assert serve_settings("--kb-allow-raw-html").kb_allow_raw_html
    assert serve_settings(env={"INCIDENT_BRIDGE_KB_ALLOW_RAW_HTML": "1"}).kb_allow_raw_html
