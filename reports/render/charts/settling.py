"""Settlement charts, for a run whose client watched asynchronous settlement: backlog and time to final state."""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports import settlement
from reports.analysis import Analysis
from reports.render.charts import plot


def _settle_seconds(analysis: Analysis) -> tuple[pd.DataFrame, int, float]:
    """The accepted payments, and the seconds to draw: the run's, and the watchers' tail after it."""
    frames = analysis.frames
    accepted = settlement.accepted_payments(frames.history)
    started = float(frames.meta.started_unix)
    last = float(accepted["final_at"].max()) if not accepted.empty else 0.0
    return accepted, max(len(frames.windows), int(last - started) + 1), started


def settle_backlog(analysis: Analysis, marks: dict[str, Any]) -> dict[str, Any] | None:
    """Accepted and not yet known final at the end of each second, per channel (the client's view)."""
    accepted, seconds, started = _settle_seconds(analysis)
    if accepted.empty:
        return None
    backlog = settlement.backlog(accepted, started, seconds)
    data = [plot.line(str(channel), backlog[channel]) for channel in backlog.columns]
    return plot.chart(
        "settle_backlog", data, plot.layout("Settlement backlog per channel", "payments pending", **marks)
    )


def settle_latency(analysis: Analysis, marks: dict[str, Any]) -> dict[str, Any] | None:
    """p50 / p99 time to final state of the payments learned final in each second."""
    accepted, seconds, started = _settle_seconds(analysis)
    per_second = settlement.settle_latency_per_second(accepted, started, seconds)
    if per_second["p99_s"].isna().all():
        return None
    data = [plot.line("p50", per_second["p50_s"]), plot.line("p99", per_second["p99_s"])]
    return plot.chart("settle_latency", data, plot.layout("Time to final state (from the intended send)", "s", **marks))
