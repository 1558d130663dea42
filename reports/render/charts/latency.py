"""Latency charts: percentiles per second (intended and service time) and the whole run's HDR curve."""

from __future__ import annotations

import math
from typing import Any

from reports import hdr
from reports.analysis import Analysis
from reports.render.charts import plot


def per_second(analysis: Analysis, kind: str, marks: dict[str, Any]) -> dict[str, Any] | None:
    frame = analysis.latency_intended if kind == "intended" else analysis.latency_service
    if frame["max_ms"].isna().all():
        return None
    highest = frame["max_ms"]
    data = [  # a percentile never above the second's max (one HDR bucket apart at most); max dashed, on top
        plot.line(column.replace("_ms", ""), frame[column].clip(upper=highest), connectgaps=False)
        for column in frame.columns
        if column != "max_ms"
    ]
    data.append(plot.line("max", highest, connectgaps=False, line={"dash": "dash", "width": 1}))
    title = "Intended-time latency (done − intended)" if kind == "intended" else "Service time (done − sent)"
    values = [float(v) for v in frame.to_numpy().ravel() if math.isfinite(v)]
    yaxis = {"type": "log", "title": {"text": "ms (log)"}, **plot.log_ticks(values)}
    return plot.chart(f"latency_{kind}", data, plot.layout(title, "ms (log)", yaxis=yaxis, **marks))


def hdr_curve(analysis: Analysis) -> dict[str, Any] | None:
    data = []
    every: list[float] = []
    for name, counts in (("intended", analysis.overall_intended), ("service", analysis.overall_service)):
        pct, values = hdr.percentile_curve(counts)
        every += [float(v) for v in values]
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
    yaxis = {"type": "log", "title": {"text": "ms (log)"}, **plot.log_ticks(every)}
    layout = plot.layout("Latency by percentile (HDR)", "ms (log)", yaxis=yaxis)
    layout["xaxis"] = {"type": "log", "tickvals": ticks, "ticktext": labels, "title": {"text": "percentile"}}
    return plot.chart("hdr", data, layout)
