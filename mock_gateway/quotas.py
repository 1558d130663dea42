"""Per-transaction and daily caps, and the flexible repayment plan offered instead of a bare decline.

Pure functions on integers (fen) and dates, no I/O: the ledger calls them inside its transaction with the
authoritative totals, and the request path calls them earlier with a cached guess to skip the bank on an
obvious decline. A decline is decided before anything is recorded, so a declined amount never uses quota.

The plan: pay as much as today's tighter remaining cap (card or user) allows, then fill each following
business day up to the smaller of the two daily caps, every part at most the channel's single limit. Later
days are assumed empty — the plan is a suggestion for this card, not a reservation. A plan that would need
more than `PLAN_HORIZON_DAYS` days or `PLAN_MAX_PARTS` payments is not offered (the list is empty): a month of
instalments is a loan product, not a repayment split, and the answer must stay small.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal, NamedTuple

PLAN_HORIZON_DAYS = 31
PLAN_MAX_PARTS = 64


class Caps(NamedTuple):
    single_fen: int
    card_daily_fen: int
    user_daily_fen: int


class Usage(NamedTuple):
    """What the card and the user have repaid on one business day."""

    card_fen: int
    user_fen: int


class PlanPart(NamedTuple):
    business_date: date
    amount_fen: int

    def as_json(self) -> dict[str, object]:
        return {"business_date": self.business_date.isoformat(), "amount_fen": self.amount_fen}


class Decline(NamedTuple):
    """Why an amount cannot be paid now; `scope` is `single`, `card` or `user`."""

    scope: Literal["single", "card", "user"]
    limit_fen: int
    remaining_fen: int
    plan: tuple[PlanPart, ...]


def remaining(caps: Caps, usage: Usage) -> Usage:
    """What is left today for the card and the user (never negative, even if a cap was lowered)."""
    return Usage(
        card_fen=max(0, caps.card_daily_fen - usage.card_fen),
        user_fen=max(0, caps.user_daily_fen - usage.user_fen),
    )


def check(amount_fen: int, caps: Caps, usage: Usage, today: date) -> Decline | None:
    """None when the amount fits every cap today; else the decline with its suggested plan."""
    left = remaining(caps, usage)
    if amount_fen > caps.single_fen:
        return Decline(
            "single", caps.single_fen, min(left.card_fen, left.user_fen), _plan(amount_fen, caps, left, today)
        )
    if amount_fen <= left.card_fen and amount_fen <= left.user_fen:
        return None
    if left.card_fen <= left.user_fen:
        return Decline("card", caps.card_daily_fen, left.card_fen, _plan(amount_fen, caps, left, today))
    return Decline("user", caps.user_daily_fen, left.user_fen, _plan(amount_fen, caps, left, today))


def suggest_plan(amount_fen: int, caps: Caps, usage: Usage, today: date) -> tuple[PlanPart, ...]:
    return _plan(amount_fen, caps, remaining(caps, usage), today)


def _plan(amount_fen: int, caps: Caps, left_today: Usage, today: date) -> tuple[PlanPart, ...]:
    parts: list[PlanPart] = []
    due = amount_fen
    full_day = min(caps.card_daily_fen, caps.user_daily_fen)
    today_room = min(left_today.card_fen, left_today.user_fen)
    if due > today_room + full_day * PLAN_HORIZON_DAYS or -(-due // caps.single_fen) > PLAN_MAX_PARTS:
        return ()
    for offset in range(PLAN_HORIZON_DAYS + 1):
        day_room = today_room if offset == 0 else full_day
        day = today + timedelta(days=offset)
        while due > 0 and day_room > 0:
            if len(parts) == PLAN_MAX_PARTS:
                return ()
            part = min(due, day_room, caps.single_fen)
            parts.append(PlanPart(day, part))
            due -= part
            day_room -= part
        if due == 0:
            return tuple(parts)
    return ()
