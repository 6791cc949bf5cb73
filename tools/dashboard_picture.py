"""Draw docs/img/dashboard.svg: what the shipped Grafana dashboard shows, panel by panel, from a
real run. It starts ``incident-bridge serve`` and the real Prometheus scraping it every second
(the same set-up as tests/integration/test_dashboard.py), drives a few incidents with known
durations through the webhook and the API, then asks Prometheus every panel's queries (Grafana's
variables as a dashboard with everything selected sends them) and draws the answers where the
dashboard puts its panels: tables and stats as their values, time series as lines. No Grafana
and no plotting library: the picture is plain SVG, so what it shows is only what Prometheus
answered.

    .venv/bin/python tools/dashboard_picture.py            # writes docs/img/dashboard.svg
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import tempfile
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.procs import Bridge, http, wait_for  # noqa: E402
from tests.integration.test_dashboard import (  # noqa: E402
    DASHBOARD,
    DURATIONS,
    RULES,
    Hooks,
    prometheus_scraping,
    query,
    substitute,
)
from tests.integration.test_metrics import Api, payload  # noqa: E402

UNIT_W, UNIT_H = 50, 28  # pixels per Grafana grid column and row
COLORS = ("#3274d9", "#e0752d", "#56a64b", "#a352cc", "#f2cc0c", "#e02f44")


def query_range(url: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    body = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": "2s"})
    resp = http(
        "POST",
        url + "/api/v1/query_range",
        body.encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    answer: dict[str, Any] = resp.json()
    assert answer.get("status") == "success", (expr, resp.body[:300])
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def legend(fmt: str, metric: dict[str, str]) -> str:
    for key, value in metric.items():
        fmt = fmt.replace("{{" + key + "}}", value)
    return fmt.replace("{{", "").replace("}}", "") or json.dumps(metric)


def number(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "NaN"
    if unit == "s":
        if 0 < value < 1:
            return f"{value * 1000:.0f} ms"
        if value >= 3600:
            return f"{value / 3600:.1f} h"
        if value >= 60:
            return f"{value / 60:.1f} min"
        return f"{value:.1f} s"
    if unit == "percentunit":
        return f"{value * 100:.0f} %"
    return f"{value:.3g}"


def text(x: float, y: float, body: str, size: int = 12, **attrs: str) -> str:
    extra = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.0f}" y="{y:.0f}" font-size="{size}" {extra}>{html.escape(body)}</text>'


def draw_panel(panel: dict[str, Any], prom: str, start: float, end: float) -> list[str]:
    pos = panel["gridPos"]
    x, y = pos["x"] * UNIT_W + 4, pos["y"] * UNIT_H + 4
    w, h = pos["w"] * UNIT_W - 8, pos["h"] * UNIT_H - 8
    title = panel["title"]
    if panel["type"] == "row":
        return [
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="#22252b"/>',
            text(x + 8, y + h - 6, title, 13, fill="#d8d9da", font_weight="bold"),
        ]
    out = [
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="3" fill="#181b1f" stroke="#2c3235"/>',
        text(x + 8, y + 18, title, 12, fill="#d8d9da", font_weight="bold"),
    ]
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    if panel["type"] == "table":
        # One row per (severity, team), a column per query, named as the dashboard's organize
        # transformation names them (what Grafana's merge makes of the instant table queries).
        names: dict[str, str] = next(
            (
                t["options"].get("renameByName", {})
                for t in panel.get("transformations", [])
                if t["id"] == "organize"
            ),
            {},
        )
        rows: dict[tuple[str, str], list[str]] = {}
        for target in panel.get("targets", []):
            column = names.get(f"Value #{target['refId']}", target["refId"])
            for r in query(prom, substitute(target["expr"]))["result"]:
                key = (r["metric"].get("severity", ""), r["metric"].get("team", ""))
                value = float(r["value"][1])
                # the dashboard shows the count with 0 decimals (increase() extrapolates a little)
                shown = f"{value:.0f}" if column == "Incidents" else number(value, unit)
                rows.setdefault(key, []).append(f"{column} {shown}")
        lines = [
            f"{sev} {team}: " + ", ".join(cells) for (sev, team), cells in sorted(rows.items())
        ]
        for n, line in enumerate(lines[: int((h - 30) / 17)]):
            out.append(text(x + 10, y + 36 + n * 17 + 5, line, 11, fill="#ccccdc"))
        return out
    if panel["type"] == "stat":
        lines = []
        for target in panel.get("targets", []):
            for r in query(prom, substitute(target["expr"]))["result"]:
                value = float(r["value"][1])
                if value != value:
                    continue  # a (severity, team) pair with no incident yet: NaN, left out
                name = legend(target.get("legendFormat", ""), r["metric"])
                lines.append(f"{name}: {number(value, unit)}")
        size = 22 if panel["type"] == "stat" and len(lines) <= 2 else 11
        step = size + 6
        for n, line in enumerate(lines[: int((h - 30) / step)]):
            out.append(text(x + 10, y + 36 + n * step + size / 2, line, size, fill="#ccccdc"))
        return out
    series: list[tuple[str, list[tuple[float, float]]]] = []
    for target in panel.get("targets", []):
        for r in query_range(prom, substitute(target["expr"]), start, end):
            points = [(float(t), float(v)) for t, v in r["values"] if v not in ("NaN", "+Inf")]
            if points:
                series.append((legend(target.get("legendFormat", ""), r["metric"]), points))
    top = max((v for _, pts in series for _, v in pts), default=1.0) or 1.0
    px, py, pw, ph = x + 44, y + 30, w - 54, h - 64
    out.append(text(x + 6, py + 8, number(top, unit), 9, fill="#8e8e8e"))
    out.append(text(x + 6, py + ph, "0", 9, fill="#8e8e8e"))
    out.append(f'<line x1="{px}" y1="{py + ph}" x2="{px + pw}" y2="{py + ph}" stroke="#2c3235"/>')
    for n, (name, points) in enumerate(series[: len(COLORS)]):
        coords = " ".join(
            f"{px + (t - start) / (end - start) * pw:.1f},{py + ph - v / top * ph:.1f}"
            for t, v in points
        )
        color = COLORS[n]
        out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        out.append(
            text(px + (n % 3) * pw / 3, y + h - 8 - 12 * (n // 3 == 0), name[:32], 9, fill=color)
        )
    return out


def run(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="dashboard-") as tmp:
        workdir = Path(tmp)
        hooks = Hooks()
        rules = workdir / "rules.yaml"
        rules.write_text(RULES)
        bridge = Bridge(workdir / "bridge", args=["--rules", str(rules)], env=hooks.env()).start()
        try:
            target = bridge.url.removeprefix("http://")
            with prometheus_scraping("/usr/bin/prometheus", target, workdir / "prom") as prom:
                # the counters' first samples (at 0) before any event, as in the test
                wait_for(
                    "a first scrape",
                    lambda: query(prom, 'up{job="incident-bridge"} == 1')["result"] or None,
                    30,
                )
                time.sleep(1.5)
                start = time.time()
                api = Api(bridge)
                now = datetime.now(UTC)
                for n, duration in enumerate(DURATIONS):
                    body = payload(f"Dashboard{n}", now - timedelta(seconds=duration))
                    body["alerts"][0]["labels"]["team"] = "payments"
                    assert bridge.post_webhook(body).status == 200
                    time.sleep(3)
                for i in bridge.incidents():
                    assert api.act(i["id"], "acknowledge") == 200
                    time.sleep(2)
                    assert api.act(i["id"], "resolve") == 200
                wait_for(
                    "the resolves scraped",
                    lambda: (
                        query(prom, "sum(incident_bridge_time_to_resolve_seconds_count)")["result"]
                        or None
                    ),
                    30,
                )
                time.sleep(10)
                end = time.time()
                dashboard = json.loads(DASHBOARD.read_text())
                bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
                parts = [
                    f'<svg xmlns="http://www.w3.org/2000/svg" width="{24 * UNIT_W}" '
                    f'height="{bottom * UNIT_H + 30}" font-family="sans-serif">',
                    '<rect width="100%" height="100%" fill="#111217"/>',
                ]
                for panel in dashboard["panels"]:
                    parts += draw_panel(panel, prom, start, end)
                parts.append(
                    text(
                        8,
                        bottom * UNIT_H + 20,
                        f"{dashboard['title']}: drawn from a real Prometheus scraping "
                        f"incident-bridge ({datetime.now(UTC):%Y-%m-%d}), by tools/dashboard_picture.py",
                        11,
                        fill="#8e8e8e",
                    )
                )
                parts.append("</svg>")
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text("\n".join(parts) + "\n")
        finally:
            bridge.stop()
            hooks.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "dashboard.svg")
    args = parser.parse_args()
    run(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
