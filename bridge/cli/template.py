"""``incident-bridge template render``: preview a message offline, as a target would send it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bridge.core.events import EVENTS
from bridge.targets import REGISTRY


def _template_render(args: argparse.Namespace) -> int:
    from bridge.delivery.templates import TemplateError
    from bridge.targets import render_preview

    incident: dict[str, Any] = {}
    if args.incident:
        try:
            incident = json.loads(Path(args.incident).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"incident-bridge: --incident {args.incident}: {exc}", file=sys.stderr)
            return 1
    try:
        sys.stdout.write(
            render_preview(args.target, args.event, incident, templates_dir=args.templates)
        )
    except TemplateError as exc:
        print(f"incident-bridge: {exc}", file=sys.stderr)
        return 1
    return 0


def register(commands: Any) -> None:
    template = commands.add_parser("template", help="preview message templates")
    tsub = template.add_subparsers(dest="template_command", metavar="COMMAND", required=True)
    render = tsub.add_parser("render", help="render TARGET's template for EVENT")
    # Choices: an unknown type or event is bad usage (exit 2, the choices listed).
    render.add_argument(
        "target", choices=REGISTRY, metavar="TARGET", help="target type, e.g. slack"
    )
    render.add_argument("event", choices=EVENTS, metavar="EVENT", help="event, e.g. opened")
    render.add_argument("--incident", help="JSON file with incident fields (defaults: a sample)")
    render.add_argument("--templates", help="folder of templates overriding the bundled ones")
    render.set_defaults(func=_template_render)
