"""Daily caps and suggested plans: examples and properties."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from mock_gateway.quotas import PLAN_HORIZON_DAYS, PLAN_MAX_PARTS, Caps, Usage, check, suggest_plan

TODAY = date(2026, 11, 11)
CAPS = Caps(single_fen=1_000_000, card_daily_fen=2_000_000, user_daily_fen=3_000_000)


def test_within_caps_is_accepted() -> None:
    assert check(1_000_000, CAPS, Usage(1_000_000, 0), TODAY) is None


def test_single_limit_comes_first() -> None:
    decline = check(1_500_000, CAPS, Usage(0, 0), TODAY)
    assert decline is not None
    assert (decline.scope, decline.limit_fen) == ("single", 1_000_000)
    assert [(p.business_date, p.amount_fen) for p in decline.plan] == [(TODAY, 1_000_000), (TODAY, 500_000)]


def test_card_and_user_scopes_pick_the_tighter_cap() -> None:
    card = check(600_000, CAPS, Usage(1_500_000, 1_500_000), TODAY)
    assert card is not None
    assert (card.scope, card.remaining_fen) == ("card", 500_000)
    user = check(600_000, CAPS, Usage(0, 2_600_000), TODAY)
    assert user is not None
    assert (user.scope, user.remaining_fen) == ("user", 400_000)


def test_plan_beyond_the_horizon_or_too_many_parts_is_not_offered() -> None:
    assert suggest_plan(2_000_000 * (PLAN_HORIZON_DAYS + 2), CAPS, Usage(0, 0), TODAY) == ()
    assert suggest_plan(PLAN_MAX_PARTS + 1, Caps(1, 10_000, 10_000), Usage(0, 0), TODAY) == ()


@settings(deadline=None, max_examples=200)
@given(
    amount=st.integers(1, 40_000_000),
    single=st.integers(1, 5_000_000),
    card_daily=st.integers(1, 10_000_000),
    user_daily=st.integers(1, 20_000_000),
    card_used=st.integers(0, 10_000_000),
    user_used=st.integers(0, 20_000_000),
)
def test_a_plan_pays_the_amount_within_every_cap(
    amount: int, single: int, card_daily: int, user_daily: int, card_used: int, user_used: int
) -> None:
    caps = Caps(single, card_daily, user_daily)
    usage = Usage(card_used, user_used)
    plan = suggest_plan(amount, caps, usage, TODAY)
    if not plan:
        per_day = min(card_daily, user_daily)
        today_room = max(0, min(card_daily - card_used, user_daily - user_used))
        # Greedy filling needs at most one part per single limit plus one fragment per day.
        too_many_parts = -(-amount // single) + PLAN_HORIZON_DAYS + 1 > PLAN_MAX_PARTS
        assert amount > today_room + per_day * PLAN_HORIZON_DAYS or too_many_parts
        return
    assert sum(p.amount_fen for p in plan) == amount
    assert len(plan) <= PLAN_MAX_PARTS
    by_day: dict[date, int] = defaultdict(int)
    for part in plan:
        assert 0 < part.amount_fen <= single
        assert part.business_date >= TODAY
        by_day[part.business_date] += part.amount_fen
    for day, total in by_day.items():
        used = usage if day == TODAY else Usage(0, 0)
        assert used.card_fen + total <= card_daily
        assert used.user_fen + total <= user_daily
    # Each part, paid in order on its day, is itself accepted.
    running: dict[date, Usage] = {}
    for part in plan:
        day_usage = running.get(part.business_date, usage if part.business_date == TODAY else Usage(0, 0))
        assert check(part.amount_fen, caps, day_usage, part.business_date) is None
        running[part.business_date] = Usage(day_usage.card_fen + part.amount_fen, day_usage.user_fen + part.amount_fen)
