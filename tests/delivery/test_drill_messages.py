"""A drill's incident says so in the first words of every message, for every target type, every
event and every part (an e-mail's HTML too), and in every title; a real incident's messages
are left as their templates make them."""

from __future__ import annotations

import re

import pytest

from bridge.core.events import EVENTS
from bridge.delivery.templates import SAMPLE_INCIDENT, context, default_renderer
from bridge.targets import REGISTRY

DRILL = {**SAMPLE_INCIDENT, "title": "DRILL: High error rate on checkout", "drill": True}


@pytest.mark.parametrize("type_name", sorted(REGISTRY))
def test_every_message_of_a_drill_starts_with_drill(type_name: str) -> None:
    kind = REGISTRY[type_name]
    renderer = default_renderer()
    for suffix, markup in {".j2": kind.markup, **kind.extra_parts}.items():
        for event in EVENTS:
            done = renderer.render(
                type_name, event, context(DRILL, event), markup=markup, suffix=suffix
            )
            where = f"{type_name}/{event}{suffix}"
            if markup == "html" and done.body.lstrip().startswith("<"):
                # an HTML document: the first words of its body
                text = re.sub(r"<[^>]+>", " ", done.body.split("<body", 1)[-1].split(">", 1)[-1])
                assert text.split()[0] == "DRILL:", where
            else:
                assert done.body.startswith("DRILL"), (where, done.body[:80])
            if done.title:
                assert done.title.startswith("DRILL: "), (where, done.title)
            real = renderer.render(
                type_name, event, context(SAMPLE_INCIDENT, event), markup=markup, suffix=suffix
            )
            assert not real.body.startswith("DRILL"), where
