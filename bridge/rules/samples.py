"""Sample alerts for ``rules check``: every route's title rendered against labels the route
would see, so that a template raising for them (``{{ labels.value|float / 0 }}``) fails the
check in CI instead of falling back on every real webhook.

A route's sample labels come from its matchers and its ancestors' (an equality gives its
value; a regex a value that matches where one is easy to write down; a negative matcher a value
it does not refuse), the common labels ``alertname``, ``severity``, ``team``, ``service`` and
``instance`` with plausible values, and every other label the template reads as
``labels.NAME`` or ``labels['NAME']`` (``42``: templates do arithmetic on such labels). The
annotations the template reads are filled too. Rendering goes through the engine itself
(``RulesPolicy.decide``), so the check sees exactly what a webhook would.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from jinja2 import nodes

from bridge.core.alertmanager import WebhookPayload
from bridge.rules.engine import RulesPolicy, incident_key
from bridge.rules.matchers import Matcher, MatchType, format_labels
from bridge.rules.model import Route, RuleSet, title_environment

COMMON_SAMPLES: Mapping[str, str] = {
    "alertname": "SampleAlert",
    "severity": "critical",
    "team": "sample-team",
    "service": "sample-service",
    "instance": "host-1:9100",
}
OTHER_SAMPLE = "42"
_LABEL_MAPS = frozenset({"labels", "commonLabels", "groupLabels"})
_ANNOTATION_MAPS = frozenset({"annotations", "commonAnnotations"})
_DICT_ATTRS = frozenset(dir(dict))


def referenced(source: str) -> tuple[set[str], set[str]]:
    """The label and annotation names a template reads (``labels.x``, ``labels['x']``,
    ``labels.get('x')``)."""
    tree = title_environment().parse(source)
    found: dict[str, set[str]] = {"labels": set(), "annotations": set()}

    def kind(node: nodes.Node) -> str | None:
        if isinstance(node, nodes.Name):
            if node.name in _LABEL_MAPS:
                return "labels"
            if node.name in _ANNOTATION_MAPS:
                return "annotations"
        return None

    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Call)):
        if isinstance(node, nodes.Getattr):
            k = kind(node.node)
            if k and node.attr not in _DICT_ATTRS:
                found[k].add(node.attr)
        elif isinstance(node, nodes.Getitem):
            k = kind(node.node)
            if k and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                found[k].add(node.arg.value)
        elif (
            isinstance(node, nodes.Call)
            and isinstance(node.node, nodes.Getattr)
            and node.node.attr == "get"
            and node.args
        ):
            k = kind(node.node.node)
            first = node.args[0]
            if k and isinstance(first, nodes.Const) and isinstance(first.value, str):
                found[k].add(first.value)
    return found["labels"], found["annotations"]


class _NotSimple(Exception):
    pass


def regex_example(rx: str) -> str | None:
    """A string that probably matches the (anchored) regex, or None when it is not simple.
    Only a guess: the caller checks it with the matcher."""
    pos = 0

    def alternatives() -> str:
        nonlocal pos
        first = sequence()
        while pos < len(rx) and rx[pos] == "|":
            pos += 1
            sequence()  # the first alternative is the example; the others are skipped
        return first

    def sequence() -> str:
        nonlocal pos
        pieces: list[str] = []
        while pos < len(rx) and rx[pos] not in "|)":
            c = rx[pos]
            pos += 1
            if c == "(":
                if rx.startswith("?", pos):  # (?:...), (?P<name>...), (?i) and (?i:...)
                    end = pos + 1
                    while end < len(rx) and rx[end] not in ":)>":
                        end += 1
                    if end >= len(rx):
                        raise _NotSimple
                    if rx[end] == ")":  # a bare flag group
                        pos = end + 1
                        continue
                    pos = end + 1
                pieces.append(alternatives())
                if pos >= len(rx) or rx[pos] != ")":
                    raise _NotSimple
                pos += 1
            elif c == "[":
                end = rx.find("]", pos + 1)
                if end < 0 or rx[pos] in "^\\[":
                    raise _NotSimple
                pieces.append(rx[pos])
                pos = end + 1
            elif c == "\\":
                if pos >= len(rx):
                    raise _NotSimple
                e = rx[pos]
                pos += 1
                pieces.append(
                    {"d": "1", "w": "x", "s": " ", "D": "x", "W": "-", "S": "x"}.get(e, e)
                )
            elif c == ".":
                pieces.append("x")
            elif c in "*?":
                if not pieces:
                    raise _NotSimple
                pieces[-1] = ""  # zero repetitions
            elif c == "+":
                if not pieces:
                    raise _NotSimple
            elif c == "{":
                end = rx.find("}", pos)
                if end < 0 or not pieces:
                    raise _NotSimple
                low = rx[pos:end].split(",")[0]
                if not low.isdigit():
                    raise _NotSimple
                pieces[-1] *= int(low)
                pos = end + 1
            elif c in "^$":
                continue
            else:
                pieces.append(c)
        return "".join(pieces)

    try:
        text = alternatives()
    except _NotSimple:
        return None
    return text if pos == len(rx) else None


def _value(name: str, matchers: Sequence[Matcher]) -> str | None:
    """A value of label ``name`` that every matcher on it accepts ("" = absent), or None."""
    candidates = [m.value for m in matchers if m.type is MatchType.EQUAL]
    if name in COMMON_SAMPLES:
        candidates.append(COMMON_SAMPLES[name])
    for m in matchers:
        if m.type is MatchType.REGEX and (guess := regex_example(m.value)) is not None:
            candidates.append(guess)
    candidates += [OTHER_SAMPLE, "sample", ""]
    return next((c for c in candidates if all(m.matches(c) for m in matchers)), None)


def sample_labels(path: Sequence[Route], extra: Iterable[str] = ()) -> dict[str, str] | None:
    """Labels of an alert that reaches the last route of ``path`` (root first) past the
    matchers of each route on it; None when no simple value satisfies some matcher."""
    by_name: dict[str, list[Matcher]] = {}
    for route in path:
        for m in route.matchers:
            by_name.setdefault(m.name, []).append(m)
    labels: dict[str, str] = {}
    for name in sorted({*by_name, *COMMON_SAMPLES, *extra}):
        value = _value(name, by_name.get(name, []))
        if value is None:
            return None
        if value:
            labels[name] = value
    return labels


def _paths(route: Route, above: tuple[Route, ...] = ()) -> Iterator[tuple[Route, ...]]:
    path = (*above, route)
    yield path
    for child in route.children:
        yield from _paths(child, path)


def check_titles(ruleset: RuleSet, now_ns: int) -> list[str]:
    """Render every route's title for its sample alert; one error per template and failure:
    ``file:line:col: route "NAME": title: ExcType: message (labels {...})`` at the template."""
    policy = RulesPolicy(ruleset)
    errors: list[str] = []
    seen: set[tuple[str, str]] = set()
    for path in _paths(ruleset.root):
        route = path[-1]
        if route.title_template is None or route.settings.title is None:
            continue
        names, annotation_names = referenced(route.settings.title)
        labels = sample_labels(path, names)
        if labels is None:
            continue
        annotations = {n: f"Sample {n}" for n in sorted(annotation_names)}
        payload = WebhookPayload.model_validate(
            {
                "groupKey": "{}:" + format_labels(labels),
                "status": "firing",
                "commonLabels": labels,
                "commonAnnotations": annotations,
                "alerts": [
                    {
                        "status": "firing",
                        "labels": labels,
                        "annotations": annotations,
                        "startsAt": "2026-01-05T09:00:00Z",
                    }
                ],
            }
        )
        alert = payload.alerts[0]
        key = incident_key(route, alert, payload.group_key, route is ruleset.root)
        decision = policy.decide(route, key, [alert], payload, now_ns)
        for message in decision.render_errors:
            where = route.title_where if message.startswith("title:") else route.where
            if (where, message) in seen:  # inherited by child routes: reported once
                continue
            seen.add((where, message))
            errors.append(
                f'{where}: route "{route.name}": {message} (labels {format_labels(labels)})'
            )
    return errors
