"""``incident-bridge rules check|test|route-test|show``: offline tools for rule files; and
``rules reload``, which asks the running service to load its rule files again (its API).

Exit codes follow promtool/amtool: 0 success, 1 errors (or failed tests), 2 bad usage
(argparse), 3 lint warnings when ``--lint-fatal`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from bridge.cli import apiclient
from bridge.delivery.templates import Renderer
from bridge.rules.engine import RulesPolicy, match_routes
from bridge.rules.loader import load_rules
from bridge.rules.model import Route
from bridge.rules.samples import check_titles
from bridge.rules.show import ruleset_dict
from bridge.rules.testing import (
    TestAlert,
    duration_text,
    escalation_steps,
    got_incident,
    instant,
    payload_from_alerts,
    render_errors,
    run_file,
)
from bridge.targets import render_all

SUCCESS, FAILURE, LINT = 0, 1, 3
DEFAULT_RULES = "rules"


def _out(args: argparse.Namespace) -> TextIO:
    return getattr(args, "stdout", None) or sys.stdout


def _err(args: argparse.Namespace) -> TextIO:
    return getattr(args, "stderr", None) or sys.stderr


def _json(args: argparse.Namespace, data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False), file=_out(args))


def cmd_check(args: argparse.Namespace) -> int:
    paths = args.paths or [DEFAULT_RULES]
    result = load_rules(paths, resolve_secrets=not args.no_secrets)
    # Every message template, bundled or the user's, rendered against a sample incident.
    result.errors.extend(str(e) for e in render_all(Renderer(user_dir=args.templates)))
    rs = result.ruleset
    if rs is not None:  # every route's title against the route's own sample labels
        result.errors.extend(check_titles(rs, time.time_ns()))
    routes, targets, rotations = rs.counts() if rs else (0, 0, 0)
    if rs is None or result.errors:
        code, status = FAILURE, "failed"
    elif result.warnings and args.lint_fatal:
        code, status = LINT, "lint"
    else:
        code, status = SUCCESS, "success"
    if args.output == "json":
        _json(args, {
            "status": status, "routes": routes, "targets": targets, "rotations": rotations,
            "errors": result.errors, "warnings": result.warnings, "config_hash": result.config_hash,
        })  # fmt: skip
        return code
    out, err = _out(args), _err(args)
    print(f"Checking {' '.join(str(p) for p in paths)}", file=out)
    for w in result.warnings:
        print(f"  WARNING: {w}", file=err)
    if code == FAILURE:
        for e in result.errors:
            print(f"  {e}", file=err)
        print(f"  FAILED: {len(result.errors)} error(s)", file=err)
        return code
    if code == LINT:
        print(f"  FAILED: {len(result.warnings)} lint warning(s) (--lint-fatal)", file=err)
        return code
    print(f"  SUCCESS: {routes} routes, {targets} targets, {rotations} rotations", file=out)
    return code


def cmd_test(args: argparse.Namespace) -> int:
    failed = False
    report: list[dict[str, Any]] = []
    out, err = _out(args), _err(args)
    try:
        at = instant(args.at) if args.at else None
    except ValueError as exc:
        print(f"rules test: --at: {exc}", file=err)
        return FAILURE
    for f in args.files:
        text = args.output != "json"
        if text:
            print(f"Unit testing: {f}", file=out)
        results, errors = run_file(Path(f), at)
        if errors:
            failed = True
            report.append({"file": f, "errors": errors, "cases": []})
            if text:
                for e in errors:
                    print(f"  {e}", file=err)
                print("  FAILED", file=err)
            continue
        cases = []
        for r in results:
            cases.append({
                "name": r.name, "ok": r.ok, "diff": r.diff, "error": r.error,
                "render_errors": r.render_errors,
            })  # fmt: skip
            if not r.ok:
                failed = True
                if text:
                    print(f'  FAILED: "{r.name}"', file=err)
                    for line in [r.error] if r.error else r.diff:
                        print(f"    {line}", file=err)
                    for line in r.render_errors:
                        print(f"    ERROR: {line}", file=err)
        report.append({"file": f, "errors": [], "cases": cases})
        if text and all(r.ok for r in results):
            print(f"  SUCCESS: {len(results)} test(s)", file=out)
    if args.output == "json":
        _json(args, {"status": "failed" if failed else "success", "files": report})
    return FAILURE if failed else SUCCESS


def _labels(pairs: Sequence[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"not a label=value pair: {pair!r}")
        labels[name.strip()] = value.strip().strip('"')
    return labels


def _tree(
    route: Route, matched: set[str], prefix: str, last: bool, out: list[str], top: bool
) -> None:
    ms = "{" + ", ".join(str(m) for m in route.matchers) + "}" if route.matchers else ""
    mark = "  <- matched" if route.name in matched else ""
    cont = "  continue: true" if route.continue_ else ""
    branch = "" if top else ("└── " if last else "├── ")
    out.append(f"{prefix}{branch}{route.name}  {ms}{cont}{mark}".rstrip())
    inner = prefix if top else prefix + ("    " if last else "│   ")
    for i, c in enumerate(route.children):
        _tree(c, matched, inner, i == len(route.children) - 1, out, False)


def cmd_route_test(args: argparse.Namespace) -> int:
    result = load_rules(args.rules or [DEFAULT_RULES], resolve_secrets=False)
    err = _err(args)
    if result.ruleset is None:
        for e in result.errors:
            print(e, file=err)
        return FAILURE
    try:
        labels = _labels(args.labels)
        at = instant(args.at) if args.at else datetime.now(UTC)
    except ValueError as exc:
        print(f"route-test: {exc}", file=err)
        return FAILURE
    rs = result.ruleset
    matched = [r.name for r in match_routes(rs.root, labels)]
    payload = payload_from_alerts([TestAlert(labels=labels)], None, at)
    evaluated = RulesPolicy(rs).evaluate(payload, int(at.timestamp()) * 10**9)
    decisions = [got_incident(d) for d in evaluated]
    # each incident's escalation policy from --at, never acknowledged: when each level fires
    # and whom it reaches then
    steps = [escalation_steps(RulesPolicy(rs), d, at) for d in evaluated]
    errors = render_errors(evaluated)  # the decision fell back; the rules need fixing
    ok = args.expect is None or args.expect.split(",") == matched
    if args.output == "json":
        incidents = [
            {**d, "render_errors": list(e.render_errors), "escalation": s}
            for d, e, s in zip(decisions, evaluated, steps, strict=True)
        ]
        _json(args, {"routes": matched, "incidents": incidents, "expected_ok": ok})
        return SUCCESS if ok and not errors else FAILURE
    out = _out(args)
    if args.tree:
        lines: list[str] = []
        _tree(rs.root, set(matched), "", True, lines, True)
        print("\n".join(lines), file=out)
        print(file=out)
    print(",".join(matched), file=out)
    for d, escalation in zip(decisions, steps, strict=True):
        tiers = d["tiers"]
        roles = ", ".join(f"{k}={'/'.join(v)}" for k, v in d["roles"].items()) or "-"
        print(
            f"  {d['route']}: key={d['key']} severity={d['severity']} team={d['team'] or '-'} "
            f"title={d['title']!r}\n    general={','.join(tiers['general']) or '-'} "
            f"incident={tiers['incident'] or '-'} stakeholders={','.join(tiers['stakeholders']) or '-'} "
            f"roles: {roles}",
            file=out,
        )
        for s in escalation:
            whom = ", ".join(s["people"]) or "nobody by name"
            print(
                f"    escalation +{duration_text(s['after'])}: level {s['level']} "
                f"(run {s['repetition']}) {whom} via {','.join(s['targets']) or '-'}",
                file=out,
            )
    for e in errors:
        print(f"ERROR: {e}", file=err)
    if not ok:
        print(f"FAILED: expected routes {args.expect}, got {','.join(matched)}", file=err)
    return SUCCESS if ok and not errors else FAILURE


def cmd_show(args: argparse.Namespace) -> int:
    result = load_rules(args.paths or [DEFAULT_RULES], resolve_secrets=not args.no_secrets)
    if result.ruleset is None:
        for e in result.errors:
            print(e, file=_err(args))
        return FAILURE
    _json(args, ruleset_dict(result.ruleset))
    return SUCCESS


@apiclient.guarded
def cmd_reload(args: argparse.Namespace) -> int:
    """``POST /-/reload`` to the running service, with the token found as the other API commands
    find it (the one generated beside the database on this machine). Sent once: a reload is
    harmless to repeat, by hand."""
    answer = apiclient.Client.from_args(args).post("/-/reload", idempotency_key=None)
    body = answer.body if isinstance(answer.body, dict) else {}
    if answer.status == 422 and isinstance(body.get("errors"), list):
        if args.output == "json":
            _json(args, body)
        else:
            for error in body["errors"]:
                print(apiclient.printable(str(error)), file=_err(args))
        apiclient.fail("the rules were not reloaded; the rules loaded before stay active")
        return FAILURE
    if not answer.ok:
        return apiclient.fail(answer.error())
    if args.output == "json":
        _json(args, body)
    else:
        print(f"SUCCESS: rules reloaded (config {body['config_hash']})", file=_out(args))
    return SUCCESS


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``rules`` command group to an argparse subparsers object."""
    rules: argparse.ArgumentParser = subparsers.add_parser(
        "rules", help="check, test and try out rule files"
    )
    sub = rules.add_subparsers(dest="rules_command", metavar="SUBCOMMAND", required=True)

    check = sub.add_parser("check", help="validate rule files; print every error with its place")
    check.add_argument(
        "paths", nargs="*", metavar="PATH", help="rule files or directories (default: ./rules)"
    )
    check.add_argument(
        "--lint-fatal", action="store_true", help="exit 3 when there are lint warnings"
    )
    check.add_argument(
        "--no-secrets", action="store_true", help="do not resolve ${ENV} and *_file secrets"
    )
    check.add_argument(
        "--templates",
        metavar="DIR",
        help="also render the templates of this folder (over the bundled ones) against a sample",
    )
    _output(check)
    check.set_defaults(func=cmd_check)

    test = sub.add_parser("test", help="run rules unit-test files")
    test.add_argument("files", nargs="+", metavar="FILE")
    test.add_argument(
        "--at",
        metavar="TIME",
        help="evaluation time (RFC 3339) of the cases and files that give no `at` (default: now)",
    )
    _output(test)
    test.set_defaults(func=cmd_test)

    rt = sub.add_parser("route-test", help="show the routes and decisions for a label set")
    rt.add_argument("labels", nargs="*", metavar="label=value")
    rt.add_argument(
        "--rules",
        action="append",
        metavar="PATH",
        help="rule files or directories (repeatable; default: ./rules)",
    )
    rt.add_argument(
        "--tree", action="store_true", help="print the routing tree, matched routes marked"
    )
    rt.add_argument("--at", metavar="TIME", help="evaluation time (RFC 3339; default: now)")
    rt.add_argument(
        "--expect", metavar="ROUTES", help="comma-separated routes expected; exit 1 otherwise"
    )
    _output(rt)
    rt.set_defaults(func=cmd_route_test)

    show = sub.add_parser("show", help="print the loaded rules as JSON, secrets masked")
    show.add_argument("paths", nargs="*", metavar="PATH")
    show.add_argument(
        "--no-secrets", action="store_true", help="do not resolve ${ENV} and *_file secrets"
    )
    show.set_defaults(func=cmd_show, output="json")

    reload = sub.add_parser(
        "reload", help="ask the running service to load its rule files again (through its API)"
    )
    apiclient.add_flags(reload)
    _output(reload)
    reload.set_defaults(func=cmd_reload)
    return rules
