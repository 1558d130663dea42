"""forecast.json (docs/forecast.md): every figure of the forecast, with the source of each input."""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports.forecast.banks import bank_quota
from reports.forecast.demand import first_break, hour_label, hourly
from reports.forecast.inputs import ForecastInputs
from reports.forecast.levers import levers
from reports.forecast.refusals import declines


def _round(value: Any, digits: int = 3) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), digits)


def forecast_document(inputs: ForecastInputs) -> dict[str, Any]:
    """forecast.json (docs/forecast.md)."""
    frame = hourly(inputs)
    refused = declines(inputs, inputs.growth_p90)
    ranked, gap = levers(inputs, refused)
    breaks = first_break(frame)
    hours = []
    for row in frame.to_dict("records"):
        entry: dict[str, Any] = {"hour": hour_label(row["hour"])}
        for key in ("demand_p50_per_s", "demand_p90_per_s", "capacity_n_per_s", "capacity_n_minus_1_per_s"):
            entry[key] = _round(row[key])
        entry["utilisation_p90_n_minus_1"] = _round(row["utilisation_p90_n_minus_1"], 4)
        if not pd.isna(row["peak_second_p90_per_s"]):
            entry["peak_second_p90_per_s"] = _round(row["peak_second_p90_per_s"])
        hours.append(entry)
    evidence = [
        {"figure": "demand (payments per hour)", "source": inputs.demand_source},
        {
            "figure": "growth p50 / p90",
            "source": f"forecast file demand.growth ({inputs.growth_p50:g} / {inputs.growth_p90:g})",
        },
        {"figure": "attempts_per_payment", "source": inputs.attempts_per_payment.source},
        {"figure": "capacity_n_per_s", "source": inputs.capacity_n.source},
        {"figure": "capacity_n_minus_1_per_s", "source": inputs.capacity_n_minus_1.source},
        {
            "figure": "declines (caps)",
            "source": inputs.caps_source + " — at p90 growth, each payment against the caps alone",
        },
        {"figure": "bank quota, concurrency, latency", "source": inputs.caps_source},
    ]
    return {
        "name": inputs.name,
        "description": inputs.description,
        "hours": hours,
        "first_break": breaks,
        "declines": refused,
        "levers": ranked,
        "gap_payments": round(gap),
        "bank": bank_quota(inputs),
        "evidence": evidence,
        "fits": breaks["p90_n_minus_1"] is None,
    }
