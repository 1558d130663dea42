"""The report's charts, one module per subject; `build_charts` lists them in the order the page shows them.

A chart is a plain dict (id, Plotly data, layout) that goes into the page as JSON; a chart without data is left
out and its section says so in words. Charts read the `Analysis` only: they never import the page or the headline.
"""

from __future__ import annotations

from typing import Any

from reports.analysis import Analysis
from reports.render.charts import capacity, days, latency, markers, settling, traffic


def build_charts(analysis: Analysis) -> list[dict[str, Any]]:
    """Every chart that has data; a section whose chart is absent says so in words instead."""
    shapes, annotations = markers.markers(analysis)
    marks = {"shapes": shapes, "annotations": annotations}
    charts = [traffic.throughput(analysis, marks), traffic.rejections(analysis, marks)]
    charts += [latency.per_second(analysis, kind, marks) for kind in ("intended", "service")]
    charts += [latency.hdr_curve(analysis), traffic.replicas(analysis), days.declines(analysis), days.repaid(analysis)]
    charts += [capacity.knee(analysis), capacity.knee_p99(analysis)]
    charts += [settling.settle_backlog(analysis, marks), settling.settle_latency(analysis, marks)]
    return [chart for chart in charts if chart is not None]
