"""report.html: gather the chart data first, render the template second (Locust's html.py shape).

One self-contained file that opens offline from a CI artifact. plotly.js is inlined once, gzip-compressed and
base64-encoded (about 1.9 MB instead of 4.8 MB) and unpacked by the browser's built-in `DecompressionStream`;
that is what keeps an hour-long soak with per-second series under the 5 MB budget. Chart data is plain JSON in a
`<script type="application/json">` block with `<`, `>` and `&` escaped, and every string that comes from the run
folder (scenario name and description, event details, codes, replica names) is HTML-escaped, by Jinja's
autoescape in the page and explicitly before it reaches Plotly, which would otherwise interpret tags in labels.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import math
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from plotly.offline import get_plotlyjs

from reports import hdr, metrics
from reports.analysis import Analysis
from reports.compare import Comparison, fmt

MARKED_EVENTS = {
    ("chaos", "fault_injected"): "#d62728",
    ("chaos", "fault_cleared"): "#2ca02c",
    ("scenario", "spike_start"): "#ff7f0e",
    ("scenario", "spike_end"): "#bcbd22",
    ("cluster", "replica_down"): "#9467bd",
    ("cluster", "replica_up"): "#17becf",
    ("cluster", "failover"): "#8c564b",
}
MAX_MARKERS = 60
SCOPES = ("single", "card", "user")


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["yuan"] = yuan
    env.filters["num"] = _num
    env.filters["fmt"] = fmt
    return env


@cache
def plotly_bundle() -> str:
    """plotly.js, gzip + base64: computed once per process, it is the same for every report."""
    return base64.b64encode(gzip.compress(get_plotlyjs().encode("utf-8"), compresslevel=6, mtime=0)).decode("ascii")


def yuan(fen: int | None) -> str:
    """Integer fen as ¥ with thousands separators, never through a float."""
    if fen is None:
        return "—"
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def render_report(analysis: Analysis, comparison: Comparison | None = None) -> str:
    charts = build_charts(analysis)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            a=analysis,
            meta=analysis.frames.meta,
            verdicts=_all_verdicts(analysis),
            passed=analysis.exit_code == 0,
            facts=_facts(analysis),
            config_rows=_flatten(analysis.frames.meta.get("gateway_config") or {}),
            generator=analysis.frames.generator,
            charts={chart["id"]: chart for chart in charts},
            chart_json=_script_json([{k: chart[k] for k in ("id", "data", "layout")} for chart in charts]),
            plotly_gz=plotly_bundle(),
            recovery=analysis.recovery,
            capacity=analysis.capacity,
            plans_followed=metrics.plans_followed(analysis.frames),
            repaid=metrics.repaid_per_day(analysis.frames),
            locust_report=_locust_report(analysis),
            comparison=comparison,
            invariant_outcomes=None if analysis.invariants is None else analysis.invariants.outcomes,
        )
    )


def render_comparison(comparison: Comparison) -> str:
    """The standalone page `surge compare` writes: the same table as the report's comparison section."""
    return _environment().get_template("compare.html.j2").render(comparison=comparison)


def _all_verdicts(analysis: Analysis) -> list[dict[str, Any]]:
    groups = (
        ("SLO", analysis.slo_verdicts),
        ("invariant", analysis.invariant_verdicts),
        ("run", analysis.run_verdicts),
    )
    return [{**verdict, "group": group} for group, verdicts in groups for verdict in verdicts]


def _facts(analysis: Analysis) -> list[tuple[str, Any]]:
    meta = analysis.frames.meta
    started = meta.get("started_unix")
    started_text = datetime.fromtimestamp(float(started), tz=UTC).isoformat(timespec="seconds") if started else None
    versions = meta.get("versions") or {}
    return [
        ("scenario", meta.get("scenario")),
        ("description", meta.get("description")),
        ("seed", meta.get("seed")),
        ("scale", meta.get("scale")),
        ("duration", f"{meta.get('duration_s')} s planned, {len(analysis.frames.windows)} s recorded"),
        ("started (UTC)", started_text),
        ("host", meta.get("host")),
        ("embedded cluster", meta.get("embedded")),
        ("workers", meta.get("workers")),
        ("client policy", meta.get("client_policy")),
        ("git commit", meta.get("git_commit")),
        ("versions", ", ".join(f"{name} {version}" for name, version in versions.items()) or None),
        ("amount repaid", yuan(int(analysis.frames.windows["amount_fen"].sum()))),
        ("success ratio", fmt(metrics.success_ratio(analysis.frames.windows), "")),
    ]


def _flatten(config: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The gateway config as `section.key = value` rows; anything named like a secret is left out."""
    rows: list[tuple[str, str]] = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        if "token" in str(key).lower() or "secret" in str(key).lower():
            continue
        if isinstance(value, dict):
            rows += _flatten(value, f"{path}.")
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            for number, item in enumerate(value):
                label = item.get("code") or item.get("name") or str(number)
                rows += _flatten(item, f"{path}[{label}].")
        else:
            rows.append((path, json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value))
    return rows


def _locust_report(analysis: Analysis) -> str | None:
    folder = analysis.frames.run_dir / "locust"
    pages = sorted(folder.glob("*.html")) if folder.is_dir() else []
    return f"locust/{pages[0].name}" if pages else None


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element: no `</script>`, no `<!--`, whatever the strings hold."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _values(series: pd.Series, digits: int = 3) -> list[float | int | None]:
    array = series.to_numpy(dtype=float)
    rounded = np.round(array, digits)
    if np.all(np.isfinite(rounded)) and np.all(rounded == np.round(rounded)):
        return [int(v) for v in rounded]
    return [None if not math.isfinite(v) else float(v) for v in rounded]


def _line(name: str, series: pd.Series, **extra: Any) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "lines",
        "name": html.escape(name),
        "x0": 0,
        "dx": 1,
        "y": _values(series),
        **extra,
    }


def _layout(title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "xaxis": {"title": {"text": "seconds since start"}},
        "yaxis": {"title": {"text": y_title}},
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "legend": {"orientation": "h"},
        "height": 360,
        **extra,
    }


def _markers(analysis: Analysis) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Vertical lines and labels for faults, spikes and the router's reactions, from events.csv."""
    events = analysis.frames.events
    events = events[(events["t_s"] >= 0) & (events["t_s"] <= len(analysis.frames.windows))]
    shapes: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for row in events.itertuples():
        color = MARKED_EVENTS.get((str(row.source), str(row.kind)))
        if color is None or len(shapes) >= MAX_MARKERS:
            continue
        label = html.escape(f"{row.kind} {row.target}".strip())
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": row.t_s,
                "x1": row.t_s,
                "y0": 0,
                "y1": 1,
                "line": {"color": color, "dash": "dot", "width": 1},
            }
        )
        annotations.append(
            {
                "x": row.t_s,
                "xref": "x",
                "y": 1,
                "yref": "paper",
                "text": label,
                "showarrow": False,
                "textangle": -90,
                "xanchor": "right",
                "yanchor": "top",
                "font": {"size": 9, "color": color},
            }
        )
    return shapes, annotations


def build_charts(analysis: Analysis) -> list[dict[str, Any]]:
    """Every chart that has data; a section whose chart is absent says so in words instead."""
    shapes, annotations = _markers(analysis)
    marks = {"shapes": shapes, "annotations": annotations}
    charts = [_throughput(analysis, marks), _rejections(analysis, marks)]
    charts += [_latency(analysis, kind, marks) for kind in ("intended", "service")]
    charts += [_hdr_curve(analysis), _replicas(analysis), _declines(analysis), _repaid(analysis)]
    charts += [_knee(analysis), _knee_p99(analysis)]
    return [chart for chart in charts if chart is not None]


def _chart(chart_id: str, data: list[dict[str, Any]], layout: dict[str, Any]) -> dict[str, Any] | None:
    return {"id": chart_id, "data": data, "layout": layout} if data else None


def _throughput(analysis: Analysis, marks: dict[str, Any]) -> dict[str, Any] | None:
    frame = metrics.throughput(analysis.frames.windows)
    data = [_line(column, frame[column]) for column in frame.columns]
    return _chart("throughput", data, _layout("Attempts per second", "attempts / s", **marks))


def _rejections(analysis: Analysis, marks: dict[str, Any]) -> dict[str, Any] | None:
    codes = analysis.frames.codes
    ordered = list(metrics.codes_share(codes))
    data = [{"type": "bar", "name": html.escape(code), "x0": 0, "dx": 1, "y": _values(codes[code])} for code in ordered]
    return _chart(
        "rejections", data, _layout("Responses by problem code", "responses / s", barmode="stack", bargap=0, **marks)
    )


def _latency(analysis: Analysis, kind: str, marks: dict[str, Any]) -> dict[str, Any] | None:
    frame = analysis.latency_intended if kind == "intended" else analysis.latency_service
    if frame["max_ms"].isna().all():
        return None
    data = [_line(column.replace("_ms", ""), frame[column], connectgaps=False) for column in frame.columns]
    title = "Intended-time latency (done − intended)" if kind == "intended" else "Service time (done − sent)"
    return _chart(
        f"latency_{kind}",
        data,
        _layout(title, "ms (log)", yaxis={"type": "log", "title": {"text": "ms (log)"}}, **marks),
    )


def _hdr_curve(analysis: Analysis) -> dict[str, Any] | None:
    data = []
    for name, counts in (("intended", analysis.overall_intended), ("service", analysis.overall_service)):
        pct, values = hdr.percentile_curve(counts)
        x = [round(100.0 / max(100.0 - p, 1e-4), 3) for p in pct]
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "line": {"shape": "hv"},
                "name": name,
                "x": x,
                "y": [round(v, 3) for v in values],
            }
        )
    data = [trace for trace in data if trace["x"]]
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    labels = ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
    layout = _layout("Latency by percentile (HDR)", "ms (log)", yaxis={"type": "log", "title": {"text": "ms (log)"}})
    layout["xaxis"] = {"type": "log", "tickvals": ticks, "ticktext": labels, "title": {"text": "percentile"}}
    return _chart("hdr", data, layout)


def _replicas(analysis: Analysis) -> dict[str, Any] | None:
    share = metrics.replica_share(analysis.frames.replicas) * 100.0
    data = [_line(str(name), share[name], stackgroup="one") for name in share.columns]
    return _chart(
        "replicas",
        data,
        _layout(
            "Traffic share per replica",
            "% of responses",
            yaxis={"range": [0, 100], "title": {"text": "% of responses"}},
        ),
    )


def _declines(analysis: Analysis) -> dict[str, Any] | None:
    table = metrics.declines_by_scope(analysis.frames, analysis.daily.per_card)
    if table.empty:
        return None
    days = [html.escape(str(day)) for day in table.index]
    data = [
        {"type": "bar", "name": scope, "x": days, "y": [int(v) for v in table[scope]]}
        for scope in SCOPES
        if int(table[scope].sum()) > 0
    ]
    layout = _layout("Limit declines by scope and business day", "payments declined", barmode="stack")
    layout["xaxis"] = {"type": "category", "title": {"text": "business day"}}
    return _chart("declines", data, layout)


def _repaid(analysis: Analysis) -> dict[str, Any] | None:
    table = metrics.repaid_per_day(analysis.frames)
    if table.empty:
        return None
    data = [
        {
            "type": "bar",
            "name": "repaid",
            "x": [html.escape(str(day)) for day in table.index],
            "y": [int(v) // 100 for v in table["amount_fen"]],
            "text": [yuan(int(v)) for v in table["amount_fen"]],
            "textposition": "auto",
        }
    ]
    layout = _layout("Amount repaid per business day", "yuan")
    layout["xaxis"] = {"type": "category", "title": {"text": "business day"}}
    return _chart("repaid", data, layout)


def _knee(analysis: Analysis) -> dict[str, Any] | None:
    steps = analysis.frames.steps
    if steps.empty:
        return None
    colors = ["#2ca02c" if passed else "#d62728" for passed in steps["passed"]]
    top = float(max(steps["offered"].max(), steps["goodput"].max()))
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "goodput",
            "x": _values(steps["offered"]),
            "y": _values(steps["goodput"]),
            "marker": {"color": colors, "size": 9},
        },
        {
            "type": "scatter",
            "mode": "lines",
            "name": "goodput = offered",
            "x": [0, top],
            "y": [0, top],
            "line": {"dash": "dot", "color": "#999"},
        },
    ]
    layout = _layout("Offered load versus goodput per probe (the knee; green: met the SLOs)", "goodput / s")
    layout["xaxis"] = {"title": {"text": "offered / s"}}
    return _chart("knee", data, layout)


def _knee_p99(analysis: Analysis) -> dict[str, Any] | None:
    steps = analysis.frames.steps
    if steps.empty:
        return None
    colors = ["#2ca02c" if passed else "#d62728" for passed in steps["passed"]]
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "p99",
            "x": _values(steps["offered"]),
            "y": _values(steps["p99_ms"]),
            "marker": {"color": colors, "size": 9},
        }
    ]
    layout = _layout("p99 latency per probe (green: met the SLOs)", "p99 ms")
    layout["xaxis"] = {"title": {"text": "offered / s"}}
    layout["shapes"] = [
        {
            "type": "line",
            "xref": "paper",
            "x0": 0,
            "x1": 1,
            "yref": "y",
            "y0": analysis.slo.max_p99_ms,
            "y1": analysis.slo.max_p99_ms,
            "line": {"dash": "dot", "color": "#d62728"},
        }
    ]
    return _chart("knee_p99", data, layout)
