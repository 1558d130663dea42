"""Business-day charts: limit declines by scope, and the amount repaid, per business day of the run."""

from __future__ import annotations

import html
from typing import Any

from reports.analysis import Analysis
from reports.measure import caps
from reports.render.charts import plot
from reports.violations import yuan

SCOPES = ("single", "card", "user")


def declines(analysis: Analysis) -> dict[str, Any] | None:
    table = caps.declines_by_scope(analysis.frames, analysis.daily.per_card)
    if table.empty:
        return None
    days = [html.escape(str(day)) for day in table.index]
    data = [
        {"type": "bar", "name": scope, "x": days, "y": [int(v) for v in table[scope]]}
        for scope in SCOPES
        if int(table[scope].sum()) > 0
    ]
    layout = plot.layout("Limit declines by scope and business day", "payments declined", barmode="stack")
    layout["xaxis"] = {"type": "category", "title": {"text": "business day"}}
    return plot.chart("declines", data, layout)


def repaid(analysis: Analysis) -> dict[str, Any] | None:
    table = caps.repaid_per_day(analysis.frames)
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
    layout = plot.layout("Amount repaid per business day", "yuan")
    layout["xaxis"] = {"type": "category", "title": {"text": "business day"}}
    return plot.chart("repaid", data, layout)
