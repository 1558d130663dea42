"""The banks behind the gateway: each channel's quota pressure and its calls in flight.

Quota pressure is a channel's peak-hour p90 demand against its `tps` quota. Little's law: calls in flight to a
bank = the channel's peak demand × the bank's mean latency, against its `concurrency` (per replica: times N−1
replicas when they are active-active).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reports.forecast.demand import hour_label
from reports.forecast.inputs import SECONDS_PER_HOUR, ForecastInputs


def bank_quota(inputs: ForecastInputs) -> list[dict[str, Any]]:
    """Each channel's peak-hour p90 demand (attempts/s) against its quota, and Little's law against its slots."""
    app = inputs.attempts_per_payment.value
    rows = []
    replicas_up = inputs.replicas_n - 1 if inputs.active_active else 1
    for channel in inputs.channels:
        if channel.code not in inputs.hours.columns:
            continue
        per_s = inputs.hours[channel.code] * inputs.growth_p90 * app / SECONDS_PER_HOUR
        peak = float(per_s.max()) if len(per_s) else 0.0
        peak_hour = hour_label(inputs.hours["hour"].iloc[int(per_s.to_numpy().argmax())]) if len(per_s) else None
        in_flight = peak * channel.latency_mean_s()
        limit = channel.concurrency * max(1, replicas_up)
        rows.append(
            {
                "channel": channel.code,
                "peak_hour": peak_hour,
                "peak_demand_p90_per_s": round(peak, 3),
                "tps": channel.tps,
                "quota_pressure": None if channel.tps <= 0 else round(peak / channel.tps, 4),
                "latency_mean_ms": round(channel.latency_mean_s() * 1000, 2),
                "in_flight": round(in_flight, 2),
                "concurrency_n_minus_1": limit,
                "concurrency_use": round(in_flight / limit, 4),
            }
        )
    return rows


def quota_excess(inputs: ForecastInputs) -> float:
    app = inputs.attempts_per_payment.value
    total = 0.0
    for channel in inputs.channels:
        if channel.tps > 0 and channel.code in inputs.hours.columns:
            demand = inputs.hours[channel.code] * inputs.growth_p90 * app / SECONDS_PER_HOUR
            total += float(np.clip(demand - channel.tps, 0, None).sum()) * SECONDS_PER_HOUR / app
    return total
