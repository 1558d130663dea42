"""Payments the money caps refuse per day and channel, at a growth.

A payment is refused when its amount alone passes a cap (single first, then the card's daily cap, then the
user's), as the gateway checks them; a card or user paying several bills a day is refused more, which this does
not count. A split plan moves a payment's rest to the next day when the amount passes what the card (or user)
may pay in a day.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np

from reports.forecast.inputs import ForecastInputs, Lognormal


def _refusals(
    amounts: np.ndarray[Any, np.dtype[np.float64]] | None, bill: Lognormal | None, count: float, caps: tuple[int, ...]
) -> list[tuple[str, float, float, float]]:
    """(scope, payments, amount_fen, split_plan_moves) per cap scope for `count` payments of one day and channel."""
    single, card, user = caps
    daily = min(card, user)  # what one card may pay in a day, its user's cap included
    if amounts is not None:
        if len(amounts) == 0:
            return []
        weight = count / len(amounts)
        over_single = amounts > single
        over_card = ~over_single & (amounts > card)
        over_user = ~over_single & ~over_card & (amounts > user)
        return [
            (
                "single",
                over_single.sum() * weight,
                amounts[over_single].sum() * weight,
                (over_single & (amounts > daily)).sum() * weight,
            ),
            ("card", over_card.sum() * weight, amounts[over_card].sum() * weight, over_card.sum() * weight),
            ("user", over_user.sum() * weight, amounts[over_user].sum() * weight, over_user.sum() * weight),
        ]
    assert bill is not None
    p_single, m_single = bill.above(single), bill.mass_above(single)
    low_card = min(card, single)
    p_card, m_card = bill.above(low_card) - p_single, bill.mass_above(low_card) - m_single
    low_user = min(user, card, single)
    p_user = bill.above(low_user) - bill.above(min(card, single))
    m_user = bill.mass_above(low_user) - bill.mass_above(min(card, single))
    moves_single = bill.above(max(single, daily))
    return [
        ("single", count * p_single, count * m_single, count * moves_single),
        ("card", count * p_card, count * m_card, count * p_card),
        ("user", count * p_user, count * m_user, count * p_user),
    ]


def declines(inputs: ForecastInputs, growth: float, cap_factor: float = 1.0) -> list[dict[str, Any]]:
    """Refusals by the money caps per day, channel and scope at `growth` (`cap_factor` raises every cap)."""
    per_day_channel = _payments_per_day_channel(inputs)
    rows: list[dict[str, Any]] = []
    for (day, channel), payments in per_day_channel.items():
        caps = inputs.caps.get(day, {}).get(channel)
        if caps is None:
            continue
        raised = tuple(int(c * cap_factor) for c in caps)
        sample = None
        if inputs.amounts is not None:
            chosen = inputs.amounts[(inputs.amounts["date"] == day) & (inputs.amounts["channel"] == channel)]
            sample = chosen["amount_fen"].to_numpy(dtype=np.float64)
        for scope, count, amount, moves in _refusals(sample, inputs.bills.get(day), payments * growth, raised):
            if round(count) >= 1:
                rows.append(
                    {
                        "date": day.isoformat(),
                        "channel": channel,
                        "scope": scope,
                        "payments": round(count),
                        "amount_fen": round(amount),
                        "split_plan_moves": round(moves),
                    }
                )
    return rows


def _payments_per_day_channel(inputs: ForecastInputs) -> dict[tuple[date, str], float]:
    codes = [c.code for c in inputs.channels if c.code in inputs.hours.columns]
    days = inputs.hours["hour"].map(lambda h: h.date())
    grouped = inputs.hours[codes].groupby(days.to_numpy()).sum()
    return {(day, code): float(grouped.loc[day, code]) for day in grouped.index for code in codes}
