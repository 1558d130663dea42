"""Traffic charts: arrivals and attempts per second, responses by problem code, each replica's share."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from reports.analysis import Analysis
from reports.measure import counters
from reports.render.charts import plot


def throughput(analysis: Analysis, marks: dict[str, Any]) -> dict[str, Any] | None:
    frame = counters.throughput(analysis.frames.windows)
    data = [
        plot.line(f"arrivals {column}", frame[column], line={"dash": "dot"})
        if column in ("offered", "sent")
        else plot.line(f"attempts {column}", frame[column])
        for column in frame.columns
    ]
    title = "Arrivals (dotted) and attempts per second"
    return plot.chart("throughput", data, plot.layout(title, "per second", **marks))


def rejections(analysis: Analysis, marks: dict[str, Any]) -> dict[str, Any] | None:
    codes = analysis.frames.codes
    ordered = list(counters.codes_share(codes))
    data = [
        {"type": "bar", "name": html.escape(code), "x0": 0, "dx": 1, "y": plot.values(codes[code])} for code in ordered
    ]
    return plot.chart(
        "rejections",
        data,
        plot.layout("Responses by problem code", "responses / s", barmode="stack", bargap=0, **marks),
    )


def replicas(analysis: Analysis) -> dict[str, Any] | None:
    """Shares up to the last second that had responses: after the load stops there is no share to draw."""
    replicas = analysis.frames.replicas
    served = np.flatnonzero(replicas.sum(axis=1).to_numpy() > 0) if not replicas.empty else np.array([])
    if served.size == 0:
        return None
    share = counters.replica_share(replicas.iloc[: int(served[-1]) + 1]) * 100.0
    data = [plot.line(str(name), share[name], stackgroup="one") for name in share.columns]
    return plot.chart(
        "replicas",
        data,
        plot.layout(
            "Traffic share per replica",
            "% of responses",
            yaxis={"range": [0, 100], "title": {"text": "% of responses"}},
        ),
    )
