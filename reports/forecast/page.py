"""forecast.html, the self-contained page of a forecast, and the writing of both its files."""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from reports.forecast.demand import heatmap, hourly
from reports.forecast.document import forecast_document
from reports.forecast.inputs import ForecastInputs
from reports.render.shared import environment, plotly_bundle, script_json
from runfolder.layout import write_json


def write_forecast(out: Path, inputs: ForecastInputs) -> dict[str, Any]:
    """forecast.json and forecast.html into `out`; returns the document."""
    document = forecast_document(inputs)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "forecast.json", document)
    page = render_forecast(document, heatmap(hourly(inputs)))
    scratch = out / "forecast.html.tmp"
    scratch.write_text(page, encoding="utf-8")
    scratch.replace(out / "forecast.html")
    return document


def render_forecast(document: Mapping[str, Any], table: pd.DataFrame) -> str:
    charts = _charts(document, table)
    return (
        environment()
        .get_template("forecast.html.j2")
        .render(
            forecast=document,
            sources={row["figure"]: row["source"] for row in document["evidence"]},
            charts={chart["id"]: chart for chart in charts},
            chart_json=script_json(charts),
            plotly_gz=plotly_bundle(),
        )
    )


def _charts(document: Mapping[str, Any], table: pd.DataFrame) -> list[dict[str, Any]]:
    z = [[None if pd.isna(v) else round(float(v), 3) for v in row] for row in table.to_numpy()]
    worst = max((v for row in z for v in row if v is not None), default=1.0)
    charts: list[dict[str, Any]] = [
        {
            "id": "heatmap",
            "data": [
                {
                    "type": "heatmap",
                    "z": z,
                    "x": [f"{h:02d}:00" for h in range(24)],
                    "y": list(table.index),
                    "zmin": 0,
                    "zmax": max(2.0, worst),
                    "colorscale": [
                        [0, "#dafbe1"],
                        [0.5 / max(1.0, worst / 2), "#fff8c5"],
                        [1.0 / max(2.0, worst), "#ffb3a7"],
                        [1, "#82071e"],
                    ],
                    "colorbar": {"title": {"text": "p90 / N−1"}},
                    "text": [[("" if v is None else f"{v:.2f}") for v in row] for row in z],
                    "texttemplate": "%{text}",
                    "hovertemplate": "%{y} %{x}: utilisation %{z:.2f}<extra></extra>",
                }
            ],
            "layout": {
                "title": {"text": "Utilisation at N−1, p90 demand (day × hour; above 1 breaks)"},
                "xaxis": {"type": "category", "title": {"text": "hour (Asia/Shanghai)"}},
                "yaxis": {"type": "category", "autorange": "reversed"},
                "margin": {"l": 100, "r": 20, "t": 60, "b": 60},
                "height": 160 + 34 * len(table.index),
            },
        }
    ]
    hours = document["hours"]
    x = [row["hour"] for row in hours]
    lines = [
        ("demand p50", "demand_p50_per_s", {"color": "#0969da"}),
        ("demand p90", "demand_p90_per_s", {"color": "#cf222e"}),
        ("capacity N", "capacity_n_per_s", {"color": "#1a7f37", "dash": "dash"}),
        ("capacity N−1", "capacity_n_minus_1_per_s", {"color": "#9a6700", "dash": "dash"}),
    ]
    charts.append(
        {
            "id": "demand",
            "data": [
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": name,
                    "x": x,
                    "y": [row[key] for row in hours],
                    "line": {"shape": "hv", **style},
                }
                for name, key, style in lines
            ],
            "layout": {
                "title": {"text": "Demand per hour against capacity (attempts per second)"},
                "yaxis": {"title": {"text": "attempts / s"}, "rangemode": "tozero"},
                "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
                "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"},
                "height": 380,
            },
        }
    )
    ranked = document["levers"]
    if ranked:
        charts.append(
            {
                "id": "levers",
                "data": [
                    {
                        "type": "bar",
                        "orientation": "h",
                        "x": [round(100 * row["closes_gap_share"], 1) for row in ranked][::-1],
                        "y": [html.escape(row["lever"]) for row in ranked][::-1],
                        "marker": {"color": "#0969da"},
                    }
                ],
                "layout": {
                    "title": {"text": "Share of the gap each lever closes (%)"},
                    "xaxis": {"range": [0, 100], "title": {"text": "% of the payments that would not complete"}},
                    "yaxis": {"automargin": True},
                    "margin": {"l": 20, "r": 20, "t": 60, "b": 50},
                    "height": 140 + 40 * len(ranked),
                },
            }
        )
    return charts
