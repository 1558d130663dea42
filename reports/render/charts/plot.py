"""The building blocks of every chart: a series as a Plotly trace, the common layout, log-axis ticks.

Series go out as short JSON (integers when every value is whole, three decimals otherwise, gaps as null) because
an hour-long soak draws thousands of points per trace and the page has a size budget.
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pandas as pd


def values(series: pd.Series, digits: int = 3) -> list[float | int | None]:
    array = series.to_numpy(dtype=float)
    rounded = np.round(array, digits)
    if np.all(np.isfinite(rounded)) and np.all(rounded == np.round(rounded)):
        return [int(v) for v in rounded]
    return [None if not math.isfinite(v) else float(v) for v in rounded]


def line(name: str, series: pd.Series, **extra: Any) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "lines",
        "name": html.escape(name),
        "x0": 0,
        "dx": 1,
        "y": values(series),
        **extra,
    }


def layout(title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    """Every chart: the legend shown even for one series (a reader must see *what* a lone bar counts), the title
    on the left and a top margin tall enough that Plotly's mode bar (top right) never covers it."""
    return {
        "title": {"text": title, "x": 0, "xanchor": "left", "y": 0.98, "yanchor": "top"},
        "xaxis": {"title": {"text": "seconds since start"}},
        "yaxis": {"title": {"text": y_title}},
        "margin": {"l": 60, "r": 20, "t": 64, "b": 50},
        "legend": {"orientation": "h", "y": -0.2},
        "showlegend": True,
        "height": 380,
        **extra,
    }


def chart(chart_id: str, data: list[dict[str, Any]], layout: dict[str, Any]) -> dict[str, Any] | None:
    return {"id": chart_id, "data": data, "layout": layout} if data else None


def log_ticks(values: list[float]) -> dict[str, Any]:
    """Ticks at 1-2-5 steps across the data's range, so a log axis reads 10, 20, 50, 100 … instead of bare
    exponents or unlabelled minor ticks."""
    finite = [value for value in values if value is not None and math.isfinite(value) and value > 0]
    if not finite:
        return {}
    low = math.floor(math.log10(min(finite)))
    high = math.ceil(math.log10(max(finite)))
    ticks = [step * 10.0**exponent for exponent in range(low, high + 1) for step in (1, 2, 5)]
    return {"tickvals": ticks, "ticktext": [f"{tick:g}" for tick in ticks]}
