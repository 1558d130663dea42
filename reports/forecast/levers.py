"""The gap and the levers that close it.

The gap is what would not complete — payments past capacity at N−1 in the breaking hours, payments refused by
the caps, and payments past a bank quota — and each lever's share of it is what it removes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reports.forecast.banks import quota_excess
from reports.forecast.demand import throughput_excess
from reports.forecast.inputs import ForecastInputs
from reports.forecast.refusals import declines


def levers(inputs: ForecastInputs, refused: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """Each lever's share of the gap (payments that would not complete), best first; and the gap itself."""
    app = inputs.attempts_per_payment.value
    excess = throughput_excess(inputs, inputs.capacity_n_minus_1.value, app)
    refused_total = float(sum(row["payments"] for row in refused))
    quota = quota_excess(inputs)
    gap = excess + refused_total + quota
    raised = float(sum(row["payments"] for row in declines(inputs, inputs.growth_p90, cap_factor=2.0)))
    closes = {
        "one more replica (N+1 planned: N stay up when one fails)": excess
        - throughput_excess(inputs, inputs.capacity_n.value, app),
        "split plans (clients follow suggested_plan: refused payments finish in parts)": float(
            sum(row["payments"] for row in refused if row["scope"] in ("single", "card"))
        ),
        "limit raise (single and card daily caps doubled)": refused_total - raised,
        "higher bank quota (each channel's tps raised to its p90 peak)": quota,
        "fewer attempts per payment (no retries or polls: 1.0)": excess
        - throughput_excess(inputs, inputs.capacity_n_minus_1.value, 1.0),
    }
    ranked: list[dict[str, Any]] = [
        {
            "lever": name,
            "closes_gap_share": 0.0 if gap <= 0 else round(min(1.0, max(0.0, value) / gap), 4),
            "closes_payments": round(max(0.0, value)),
        }
        for name, value in closes.items()
    ]
    ranked.sort(key=lambda row: (-row["closes_gap_share"], row["lever"]))
    return ranked, gap
