"""Rules as code: routes, severities, targets and rotations from YAML files.

    result = load_rules(["rules/"])          # LoadResult(ruleset, errors, warnings, config_hash)
    if result.ruleset is None: ...           # every error as "file:line:col: message"
    policy = RulesPolicy(result.ruleset)     # a bridge.core.policy.Policy
    decisions = policy.evaluate(payload, now_ns)
    ruleset_dict(result.ruleset)             # JSON-able, secrets masked

The engine is pure: loading reads the rule files (and secret files/environment variables the
targets refer to); evaluation does no I/O. The CLI lives in ``bridge.cli.rules``.
"""

from __future__ import annotations

from bridge.rules.engine import RulesPolicy, incident_key, match_routes
from bridge.rules.loader import LoadResult, load_rules
from bridge.rules.matchers import Matcher, MatcherError, MatchType, parse_matcher, parse_matchers
from bridge.rules.model import Route, RouteSettings, RuleSet, TargetDef
from bridge.rules.rotations import Member, Rotation, holder
from bridge.rules.show import ruleset_dict

__all__ = [
    "LoadResult",
    "MatchType",
    "Matcher",
    "MatcherError",
    "Member",
    "Rotation",
    "Route",
    "RouteSettings",
    "RuleSet",
    "RulesPolicy",
    "TargetDef",
    "holder",
    "incident_key",
    "load_rules",
    "match_routes",
    "parse_matcher",
    "parse_matchers",
    "ruleset_dict",
]
