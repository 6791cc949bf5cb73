from __future__ import annotations

import pytest

from bridge.rules.matchers import (
    MatcherError,
    MatchType,
    format_labels,
    parse_matcher,
    parse_matchers,
)

PARSE = [
    # (name, input, [(label, op, value), ...])
    ("quoted equality", 'severity="critical"', [("severity", "=", "critical")]),
    ("bare value", "severity=critical", [("severity", "=", "critical")]),
    ("spaces around", '  team  =~  "a|b"  ', [("team", "=~", "a|b")]),
    ("not equal", 'env!="prod"', [("env", "!=", "prod")]),
    ("not regex", 'env!~"dev.*"', [("env", "!~", "dev.*")]),
    ("empty value", 'a=""', [("a", "=", "")]),
    ("brace list", '{a="b", c=~"x.*"}', [("a", "=", "b"), ("c", "=~", "x.*")]),
    ("brace list trailing comma", '{a="b",}', [("a", "=", "b")]),
    ("list without braces", "a=b,c!=d", [("a", "=", "b"), ("c", "!=", "d")]),
    ("comma inside quotes", 'msg="a, b"', [("msg", "=", "a, b")]),
    ("escaped quote", r'q="say \"hi\""', [("q", "=", 'say "hi"')]),
    ("escaped newline and backslash", r'q="a\nb\\c"', [("q", "=", "a\nb\\c")]),
    ("spurious escape is literal", r'q="a\.b"', [("q", "=", "a\\.b")]),
    ("colon in name", 'job:rate="1"', [("job:rate", "=", "1")]),
    ("equals in value", "a==b", [("a", "=", "=b")]),
]


@pytest.mark.parametrize(
    ("text", "want"), [(t, w) for _, t, w in PARSE], ids=[n for n, _, _ in PARSE]
)
def test_parse(text: str, want: list[tuple[str, str, str]]) -> None:
    got = [(m.name, m.type.value, m.value) for m in parse_matchers(text)]
    assert got == want


BAD = [
    ("no operator", "severity", "bad matcher format"),
    ("name starts with digit", "1a=b", "bad matcher format"),
    ("unterminated quote", 'a="b', "unescaped double quote"),
    ("quote in the middle", 'a="b"c"', "unescaped double quote"),
    ("bad regex", 'a=~"("', "invalid regex"),
    ("lookahead is not RE2", 'a=~"(?=x)"', "not supported by Alertmanager"),
    ("backreference is not RE2", 'a=~"(x)\\1"', "not supported by Alertmanager"),
    ("empty between commas", "a=b,,c=d", "empty matcher"),
]


@pytest.mark.parametrize(
    ("text", "message"), [(t, m) for _, t, m in BAD], ids=[n for n, _, _ in BAD]
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(MatcherError, match=message):
        parse_matchers(text)


MATCH = [
    # (name, matcher, labels, matches)
    ("equal", 'a="x"', {"a": "x"}, True),
    ("equal other value", 'a="x"', {"a": "y"}, False),
    ("equal empty matches absent", 'a=""', {}, True),
    ("equal empty matches empty", 'a=""', {"a": ""}, True),
    ("not equal absent", 'a!="x"', {}, True),
    ("not equal empty does not match absent", 'a!=""', {}, False),
    ("regex anchored at the start", 'a=~"x"', {"a": "yx"}, False),
    ("regex anchored at the end", 'a=~"x"', {"a": "xy"}, False),
    ("regex alternation anchored as a whole", 'a=~"x|y"', {"a": "xy"}, False),
    ("regex alternation", 'a=~"x|y"', {"a": "y"}, True),
    ("regex dot-star matches absent", 'a=~".*"', {}, True),
    ("regex dot-plus does not match absent", 'a=~".+"', {}, False),
    ("not regex on absent", 'a!~".+"', {}, True),
    ("not regex", 'a!~"x.*"', {"a": "xyz"}, False),
    ("regex no newline before end", 'a=~"x"', {"a": "x\n"}, False),
    ("case-insensitive flag group", 'a=~"(?i)x"', {"a": "X"}, True),
    ("flag group scoped to the rest", 'a=~"x(?i)y"', {"a": "XY"}, False),
    ("flag group continues past an alternation", 'a=~"x(?i)y|z"', {"a": "Z"}, True),
    ("flag group ends with its group", 'a=~"(x(?i)y)|z"', {"a": "Z"}, False),
    ("posix class", 'a=~"[[:digit:]]+"', {"a": "123"}, True),
    ("digits are ASCII as in RE2", 'a=~"\\\\d"', {"a": "\u0663"}, False),
]


@pytest.mark.parametrize(
    ("text", "labels", "want"), [(t, ls, w) for _, t, ls, w in MATCH], ids=[n for n, *_ in MATCH]
)
def test_match(text: str, labels: dict[str, str], want: bool) -> None:
    (m,) = parse_matchers(text)
    assert m.matches(labels.get(m.name, "")) is want


def test_str_round_trips() -> None:
    for text in ['a="x"', 'b!~"y.*"', 'q="say \\"hi\\"\\n"']:
        m = parse_matcher(text)
        again = parse_matcher(str(m))
        assert (again.name, again.type, again.value) == (m.name, m.type, m.value)
    assert parse_matcher("a=~x").type is MatchType.REGEX


def test_format_labels_sorted_and_escaped() -> None:
    assert format_labels({"b": 'q"', "a": "1"}) == '{a="1", b="q\\""}'
