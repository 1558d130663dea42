"""Demand per hour against capacity: the hourly table, the first hour that breaks, the day × hour heatmap.

Demand per hour = the hour's payments × growth × attempts per payment / 3600 (attempts per second), at p50 and
p90 growth. Capacity is flat over the day: N replicas and N−1 (a find-capacity knee or a given number).
Utilisation = p90 demand / capacity at N−1; the forecast fits when no hour's is above 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports.forecast.inputs import SECONDS_PER_HOUR, ForecastInputs


def hour_label(stamp: pd.Timestamp) -> str:
    return stamp.isoformat()


def hourly(inputs: ForecastInputs) -> pd.DataFrame:
    """Per hour: demand p50/p90 (attempts/s), capacity at N and N−1, utilisation at N−1, peak second at p90."""
    hours = inputs.hours
    app = inputs.attempts_per_payment.value
    frame = pd.DataFrame({"hour": hours["hour"]})
    frame["demand_p50_per_s"] = hours["payments"] * inputs.growth_p50 * app / SECONDS_PER_HOUR
    frame["demand_p90_per_s"] = hours["payments"] * inputs.growth_p90 * app / SECONDS_PER_HOUR
    frame["capacity_n_per_s"] = inputs.capacity_n.value
    frame["capacity_n_minus_1_per_s"] = inputs.capacity_n_minus_1.value
    frame["utilisation_p90_n_minus_1"] = frame["demand_p90_per_s"] / inputs.capacity_n_minus_1.value
    frame["peak_second_p90_per_s"] = hours["peak_second"] * inputs.growth_p90 * app
    return frame.reset_index(drop=True)


def first_break(frame: pd.DataFrame) -> dict[str, str | None]:
    """The first hour whose p90 demand passes capacity at N−1, and whose p50 passes capacity at N."""
    p90 = frame[frame["demand_p90_per_s"] > frame["capacity_n_minus_1_per_s"]]
    p50 = frame[frame["demand_p50_per_s"] > frame["capacity_n_per_s"]]
    return {
        "p90_n_minus_1": None if p90.empty else hour_label(p90["hour"].iloc[0]),
        "p50_n": None if p50.empty else hour_label(p50["hour"].iloc[0]),
    }


def heatmap(frame: pd.DataFrame) -> pd.DataFrame:
    """Utilisation at N−1 (p90), one row per day and one column per hour of the day (NaN where not forecast)."""
    table = pd.DataFrame(
        {
            "day": frame["hour"].map(lambda h: h.date().isoformat()),
            "hour": frame["hour"].map(lambda h: h.hour),
            "u": frame["utilisation_p90_n_minus_1"],
        }
    )
    return table.pivot_table(index="day", columns="hour", values="u", aggfunc="max").reindex(columns=range(24))


def throughput_excess(inputs: ForecastInputs, capacity: float, app: float) -> float:
    """Payments past `capacity` (attempts/s) over every hour at p90 growth and `app` attempts per payment."""
    demand = inputs.hours["payments"] * inputs.growth_p90 * app / SECONDS_PER_HOUR
    return float(np.clip(demand - capacity, 0, None).sum()) * SECONDS_PER_HOUR / app
