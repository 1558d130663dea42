"""Capacity-search charts: offered load versus goodput per probe (the knee), and each probe's p99.

A probe's colour is its own verdict as `surge find-capacity` recorded it in steps.csv (`passed`); the p99 chart
draws the SLO bound as a line for the reader, it does not judge the probes against it.
"""

from __future__ import annotations

from typing import Any

from reports.analysis import Analysis
from reports.render.charts import plot


def knee(analysis: Analysis) -> dict[str, Any] | None:
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
            "x": plot.values(steps["offered"]),
            "y": plot.values(steps["goodput"]),
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
    layout = plot.layout("Offered load versus goodput per probe (the knee; green: met the SLOs)", "goodput / s")
    layout["xaxis"] = {"title": {"text": "offered / s"}}
    return plot.chart("knee", data, layout)


def knee_p99(analysis: Analysis) -> dict[str, Any] | None:
    steps = analysis.frames.steps
    if steps.empty:
        return None
    colors = ["#2ca02c" if passed else "#d62728" for passed in steps["passed"]]
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "p99",
            "x": plot.values(steps["offered"]),
            "y": plot.values(steps["p99_ms"]),
            "marker": {"color": colors, "size": 9},
        }
    ]
    layout = plot.layout("p99 latency per probe (green: met the SLOs)", "p99 ms")
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
    return plot.chart("knee_p99", data, layout)
