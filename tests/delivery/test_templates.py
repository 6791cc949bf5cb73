"""Templates: search order, strictness, sandbox, per-target escaping, errors with places."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.delivery.templates import (
    SAMPLE_INCIDENT,
    Renderer,
    TemplateError,
    context,
    default_templates_dir,
)
from bridge.targets import EVENTS, REGISTRY, render_all, render_preview


def write(base: Path, name: str, text: str) -> Path:
    path = base / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def render(renderer: Renderer, target: str = "slack", event: str = "opened", **inc: object) -> str:
    ctx = context({**SAMPLE_INCIDENT, **inc}, event)
    return renderer.render(target, event, ctx, markup=REGISTRY[target].markup).body


def test_shipped_templates_render_for_every_target_and_event() -> None:
    assert render_all() == []


def test_every_registered_target_has_templates() -> None:
    for t in REGISTRY:
        assert (default_templates_dir() / t / "default.j2").is_file()


def test_search_order(tmp_path: Path) -> None:
    shipped = tmp_path / "shipped"
    user = tmp_path / "user"
    write(shipped, "slack/default.j2", "shipped default")
    write(shipped, "slack/opened.j2", "shipped opened")
    r = Renderer(default_dir=shipped)
    assert render(r, event="opened") == "shipped opened"
    assert render(r, event="resolved") == "shipped default"
    write(user, "slack/default.j2", "user default")
    r = Renderer(user, default_dir=shipped)
    assert render(r, event="opened") == "user default"  # the user's folder wins
    write(user, "slack/opened.j2", "user opened")
    assert render(Renderer(user, default_dir=shipped), event="opened") == "user opened"


def test_undefined_name_names_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path, "slack/default.j2", "line one\n{{ incident.title }}\n{{ incident.nope }}\n"
    )
    with pytest.raises(TemplateError) as err:
        render(Renderer(tmp_path))
    assert err.value.line == 3
    assert Path(err.value.template).resolve() == path.resolve()
    assert str(err.value).endswith(":3: UndefinedError: 'dict object' has no attribute 'nope'")


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "slack/default.j2", "ok\n{% if %}\n")
    with pytest.raises(TemplateError) as err:
        render(Renderer(tmp_path))
    assert err.value.line == 2 and "default.j2" in err.value.template


def test_render_all_reports_broken_user_templates(tmp_path: Path) -> None:
    write(tmp_path, "discord/opened.j2", "{{ nope }}")
    errors = render_all(Renderer(tmp_path))
    assert len(errors) == 1
    assert "discord/opened.j2:1:" in str(errors[0])


def test_sandbox_blocks_internals(tmp_path: Path) -> None:
    write(tmp_path, "slack/default.j2", "{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError, match=r"SecurityError|UndefinedError"):
        render(Renderer(tmp_path))


def test_missing_template(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="no such template"):
        Renderer(default_dir=tmp_path).render("slack", "opened", {}, markup="slack")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("slack", "a &lt;b&gt; &amp; c, x"),
        ("telegram", "a &lt;b&gt; &amp; c, x"),
        ("discord", "a \\<b\\> & c, x"),
        ("console", "a <b> & c, x"),
    ],
)
def test_join_and_values_escape_for_the_target(tmp_path: Path, target: str, expected: str) -> None:
    write(tmp_path, f"{target}/default.j2", "{{ items|join(', ') }}")
    items = {"items": ["a <b> & c", "x"]}
    out = Renderer(tmp_path).render(target, "opened", items, markup=REGISTRY[target].markup).body
    assert out == expected


def test_macros_and_set_blocks_are_not_escaped_twice(tmp_path: Path) -> None:
    write(
        tmp_path,
        "slack/default.j2",
        "{% macro m(x) %}*{{ x }}*{% endmacro %}{% set t %}<{{ v }}>{% endset %}{{ m(v) }} {{ t }}",
    )
    out = Renderer(tmp_path).render("slack", "opened", {"v": "a&b"}, markup="slack").body
    assert out == "*a&amp;b* <a&amp;b>"


@pytest.mark.parametrize(
    ("target", "url", "expected"),
    [
        ("slack", "https://x.example/a?b=1&c=2", "<https://x.example/a?b=1&amp;c=2|t&lt;>"),
        ("slack", "javascript:alert(1)", "t&lt;"),
        (
            "telegram",
            'https://x.example/"q"',
            '<a href="https://x.example/&quot;q&quot;">t&lt;</a>',
        ),
        ("discord", "https://x.example/a b)", "[t\\<](https://x.example/a%20b%29)"),
        ("console", "https://x.example", "t< (https://x.example)"),
    ],
)
def test_link(tmp_path: Path, target: str, url: str, expected: str) -> None:
    write(tmp_path, f"{target}/default.j2", "{{ link(url, 't<') }}")
    markup = REGISTRY[target].markup
    assert Renderer(tmp_path).render(target, "opened", {"url": url}, markup=markup).body == expected


def test_title_variable(tmp_path: Path) -> None:
    write(tmp_path, "email/default.j2", "{% set title %}Sub {{ x }}{% endset %}Body")
    r = Renderer(tmp_path).render("email", "opened", {"x": "<1>"}, markup="text")
    assert (r.title, r.body) == ("Sub <1>", "Body")


def test_render_preview() -> None:
    out = render_preview("email", "opened", {"title": "Disk full <db1>"})
    assert out.startswith("title: [SEV2] #42 Disk full <db1> (triggered)\n")
    assert "--- html.j2 ---" in out and "Disk full &lt;db1&gt;" in out
    with pytest.raises(TemplateError, match="unknown target type"):
        render_preview("pager", "opened", {})
    with pytest.raises(TemplateError, match="unknown event"):
        render_preview("slack", "exploded", {})


@pytest.mark.parametrize("event", EVENTS)
def test_coalesced_events_are_all_listed(event: str) -> None:
    events = [{"kind": "timeline", "text": f"step {i}"} for i in range(3)]
    ctx = context(SAMPLE_INCIDENT, event, events)
    out = Renderer().render("slack", event, ctx, markup="slack").body
    assert all(f"step {i}" in out for i in range(3))


def test_shipped_templates_render_a_sparse_incident() -> None:
    """Only id, title, severity and status, and an alert without labels: no template error."""
    sparse = {
        "id": 7,
        "title": "x",
        "severity": "sev3",
        "status": "triggered",
        "alerts": [{"status": "firing"}],
    }
    assert render_all(incident=sparse) == []


def test_undocumented_names_are_still_errors(tmp_path: Path) -> None:
    write(tmp_path, "slack/default.j2", "{{ incident.sevrity }}")
    with pytest.raises(TemplateError, match="sevrity"):
        Renderer(tmp_path).render("slack", "opened", context({"id": 1}, "opened"), markup="slack")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-27T04:05:13.998173144Z", "2026-11-27 04:05:13 UTC"),  # as Alertmanager sends
        ("2026-11-27T04:05:13Z", "2026-11-27 04:05:13 UTC"),
        ("2026-11-27T06:05:13.5+02:00", "2026-11-27 04:05:13 UTC"),
    ],
)
def test_time_filter_formats_alertmanager_timestamps(
    tmp_path: Path, value: str, expected: str
) -> None:
    write(tmp_path, "console/default.j2", "{{ at|time }}")
    out = Renderer(tmp_path).render("console", "opened", {"at": value}, markup="text").body
    assert out == expected


@pytest.mark.parametrize("target", sorted(REGISTRY))
def test_shipped_templates_show_formatted_times_for_real_alertmanager_timestamps(
    target: str,
) -> None:
    """Times as a real Alertmanager sends them (nanoseconds) never reach a message raw."""
    alerts = [{**SAMPLE_INCIDENT["alerts"][0], "startsAt": "2026-11-27T05:40:00.123456789Z"}]
    inc = {**SAMPLE_INCIDENT, "started_at": "2026-11-27T05:40:00.123456789Z", "alerts": alerts}
    for event in EVENTS:
        ctx = context(inc, event, [{"kind": event, "at": "2026-11-27T05:45:00.987654321Z"}])
        kind = REGISTRY[target]
        for suffix, markup in {".j2": kind.markup, **kind.extra_parts}.items():
            out = Renderer().render(target, event, ctx, markup=markup, suffix=suffix).body
            assert ".123456789" not in out and ".987654321" not in out, (target, event, out)


def test_identical_lines_are_collapsed_with_a_count() -> None:
    same = {"kind": "alert_fired", "text": "Alert fired: StormErrors"}
    ctx = context(SAMPLE_INCIDENT, "timeline", [same] * 20 + [{"kind": "note", "text": "x"}])
    assert [(e["text"], e["count"]) for e in ctx["events"]] == [
        ("Alert fired: StormErrors (\N{MULTIPLICATION SIGN}20)", 20),
        ("x", 1),
    ]


RENDERER = Renderer()


def _bodies(event: str, inc: dict[str, object], events: list[dict[str, object]]) -> dict[str, str]:
    """Every shipped template's body (every part) for ``event``, by target type and suffix."""
    out = {}
    for name, kind in REGISTRY.items():
        for suffix, markup in {".j2": kind.markup, **kind.extra_parts}.items():
            ctx = context(inc, event, events)
            out[name + suffix] = RENDERER.render(
                name, event, ctx, markup=markup, suffix=suffix
            ).body
    return out


@pytest.mark.parametrize("event", EVENTS)
def test_every_message_names_the_roles_and_who_holds_none(event: str) -> None:
    """Commander, scribe and liaison on one line in every message; a role nobody holds
    shows as "unassigned" (responders are not listed)."""
    roles = {"commander": ["alice"], "scribe": [], "liaison": [], "responders": ["carol"]}
    inc = {**SAMPLE_INCIDENT, "roles": roles}
    for where, body in _bodies(event, inc, []).items():
        lines = [line.lower() for line in body.splitlines() if "commander" in line.lower()]
        assert len(lines) == 1, (where, body)
        line = lines[0]
        assert "scribe" in line and "liaison" in line, (where, line)
        assert line.count("unassigned") == 2 and "alice" in line and "carol" not in line


def test_a_status_update_shows_the_liaisons_text_and_the_next_update() -> None:
    row = {
        "kind": "status_update",
        "actor": "bob",
        "text": "Status update: Rolled back; errors are <1%",
        "data": {"text": "Rolled back; errors are <1%", "next_update_at": "2026-11-27T06:15:00Z"},
    }
    bodies = _bodies("update", SAMPLE_INCIDENT, [row])
    for where, body in bodies.items():
        assert "Status update" in body and "06:15" in body, where
        assert body.count("errors are") == 1, (where, body)  # the text once, not twice
    assert (
        "> Rolled back; errors are &lt;1%\n_From bob. Next update by 06:15 UTC._"
        in bodies["slack.j2"]
    )
    assert "<blockquote>Rolled back; errors are &lt;1%</blockquote>" in bodies["telegram.j2"]
    # without data (an older row), the row's text is the update
    plain = _bodies("update", SAMPLE_INCIDENT, [{**row, "data": {}}])
    assert "> Status update: Rolled back" in plain["slack.j2"]
    assert "Next update" not in plain["slack.j2"]


def test_a_multi_line_update_stays_quoted() -> None:
    row = {"kind": "status_update", "actor": "bob", "data": {"text": "one\ntwo"}}
    bodies = _bodies("update", SAMPLE_INCIDENT, [row])
    assert "> one\n> two\n_From bob._" in bodies["slack.j2"]
    assert "> one\n> two" in bodies["discord.j2"]


def test_a_reminder_mentions_the_liaison() -> None:
    inc = {**SAMPLE_INCIDENT, "people": {"bob": {"slack": "U0BOB"}}}
    row = {"kind": "reminder", "data": {"due_at": "2026-11-27T06:15:00Z", "liaison": ["bob"]}}
    bodies = _bodies("reminder", inc, [row])
    assert "<@U0BOB>: a status update is due by 06:15 UTC." in bodies["slack.j2"]
    assert "bob: a status update is due by 06:15 UTC." in bodies["discord.j2"]
    # no liaison in the row: the incident's; nobody at all: said so
    assert "<@U0BOB>: a status update is due." in _bodies("reminder", inc, [])["slack.j2"]
    roles = {"commander": ["alice"], "scribe": [], "liaison": [], "responders": []}
    nobody = _bodies("reminder", {**inc, "roles": roles}, [{"kind": "reminder"}])
    for where, body in nobody.items():
        assert "liaison" in body.lower() and "due" in body, (where, body)
    assert "No liaison assigned: a status update is due." in nobody["slack.j2"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"after_s": 960, "target_s": 900},
            "Not acknowledged within 15 min, the target for sev2 (unacknowledged for 16 min).",
        ),
        (
            {"after_s": 5430.5, "target_s": 3600},
            "Not acknowledged within 1 h, the target for sev2 (unacknowledged for 1 h 31 min).",
        ),
        (
            {"after_s": 45, "target_s": 30},
            "within 30 s, the target for sev2 (unacknowledged for 45 s)",
        ),
        ({}, "Not acknowledged within its target time."),
    ],
)
def test_an_escalation_says_the_target_was_missed(data: dict[str, object], expected: str) -> None:
    bodies = _bodies("escalated", SAMPLE_INCIDENT, [{"kind": "escalated", "data": data}])
    assert expected in bodies["slack.j2"]
    for where, body in bodies.items():
        assert "not acknowledged within" in body.lower(), (where, body)
    # the stakeholders may first hear of the incident now: the alerts are listed
    assert "HighErrorRate" in bodies["slack.j2"]


def test_timeline_rows_around_a_status_update_are_all_shown() -> None:
    rows = [
        {"kind": "decision", "text": "Decision: roll back", "data": {"text": "roll back"}},
        {"kind": "status_update", "actor": "bob", "data": {"text": "Rolled back"}},
        {"kind": "role_changed", "text": "dana is scribe", "data": {"role": "scribe"}},
    ]
    body = _bodies("update", SAMPLE_INCIDENT, rows)["slack.j2"]
    assert body.index("• Decision: roll back") < body.index("> Rolled back")
    assert body.index("> Rolled back") < body.index("• dana is scribe")
