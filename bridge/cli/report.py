"""``incident-bridge report``: the insights (``GET /api/v1/insights``, docs/insights.md) as
tables for people, or as Markdown, CSV (one table, ``--table``) or the API's JSON."""

from __future__ import annotations

import argparse
from typing import Any

from bridge.cli import apiclient
from bridge.cli.fmt import print_json, shown_text, table
from bridge.core.insights import DEFAULT_SINCE, TABLES, Insights, Table, csv_text, markdown_text


def _tables(body: dict[str, Any]) -> dict[str, Table]:
    return {
        name: Table(tuple(t["columns"]), [tuple(r) for r in t["rows"]])
        for name, t in body["tables"].items()
    }


def _text(body: dict[str, Any], names: list[str]) -> str:
    tables = _tables(body)
    lines = [
        f"Insights from {body['since']} to {body['until']} (each person's working hours "
        f"in their rotation's time zone, {body['working_hours']} unless it says otherwise; "
        "drills left out)"
    ]
    for name in names:
        t = tables[name]
        lines += ["", name.replace("_", " ").upper()]
        if not t.rows:
            lines.append("  (none)")
            continue
        rows = [list(t.columns)] + [[shown_text("" if v is None else v) for v in r] for r in t.rows]
        lines += ["  " + line for line in table(rows)]
    return "\n".join(lines)


@apiclient.guarded
def _report(args: argparse.Namespace) -> int:
    query: dict[str, str | list[str]] = {"since": args.since}
    if args.label:
        query["label"] = list(args.label)
    answer = apiclient.Client.from_args(args).get("/api/v1/insights", query)
    if not answer.ok:
        raise apiclient.Failure(answer.error())
    body = answer.body
    names = [args.table] if args.table else list(TABLES)
    if args.format == "json":
        print_json(body if not args.table else body["tables"][args.table])
    elif args.format == "csv":
        # CSV is one table: the first one asked for (--table), the trend by default.
        print(csv_text(_tables(body)[names[0]]), end="")
    elif args.format == "markdown":
        tables = _tables(body)
        insights = Insights(0, 0, 0, body["working_hours"], tables)
        text = markdown_text(insights, names)
        print(f"# Insights from {body['since']} to {body['until']}\n\n{text}", end="")
    else:
        print(_text(body, names))
    return 0


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="insights: where MTTR goes (MTTx by week, team, service, route; noisy alerts; ...)",
        description="The insights of a period (docs/insights.md) from the running service: "
        "MTTA/MTTM/MTTR by week, team, service and route with the trend, the noisiest alerts, "
        "interruptions per person, open action items, overdue postmortems, alerts without "
        "runbooks.",
    )
    apiclient.add_flags(parser)
    parser.add_argument(
        "--since",
        default=DEFAULT_SINCE,
        help=f"the period back from now: 12h, 30d, 8w (default {DEFAULT_SINCE})",
    )
    parser.add_argument(
        "--label",
        action="append",
        metavar="NAME=VALUE",
        help="only incidents with an alert carrying this label (repeatable)",
    )
    parser.add_argument("--table", choices=TABLES, help="only this table (CSV: the one shown)")
    parser.add_argument(
        "--format",
        choices=["table", "markdown", "csv", "json"],
        default="table",
        help="tables for people (default), Markdown, CSV (one table: --table, else the "
        "trend) or the API's JSON",
    )
    parser.set_defaults(func=_report, parser=parser)
