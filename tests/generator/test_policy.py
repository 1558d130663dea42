"""Client decisions: when to retry (and after how long), the retry budget, and the three decline policies."""

from __future__ import annotations

import email.utils
import random
from datetime import date, datetime, timedelta

import pytest

from loadtests.generator.policy import (
    BASE_DELAY_S,
    GIVE_UP,
    MAX_DELAY_S,
    MAX_PLAN_PART_FEN,
    MAX_WAIT_S,
    ClientRetryBudget,
    DeclineContext,
    backoff_s,
    header_seconds,
    on_decline,
    request_name,
    retry_after_s,
    should_retry,
)
from loadtests.generator.population import Card, User
from runfolder.clock import SHANGHAI, ClusterClock
from runfolder.outcomes import classify

CARD_A, CARD_B, CARD_C = Card("u1-c1", "ICBC"), Card("u1-c2", "CCB"), Card("u1-c3", "CMB")
USER = User("u1", (CARD_A, CARD_B, CARD_C))
# The gateway clock reads 23:59:50 on 11.11 at wall time 1000 and runs 60x: the day resets 10 sim s = 1/6 s later.
CLOCK = ClusterClock(start=datetime(2026, 11, 11, 23, 59, 50, tzinfo=SHANGHAI), anchor_unix=1000.0, speed=60.0)


def plan(*parts: tuple[str, int]) -> dict[str, object]:
    return {
        "code": "DAILY_LIMIT_EXCEEDED",
        "scope": "card",
        "suggested_plan": [{"business_date": day, "amount_fen": amount} for day, amount in parts],
    }


def ctx(now: float = 1000.0, run_end: float = 5000.0, card: Card = CARD_A) -> DeclineContext:
    return DeclineContext(USER, card, now, run_end, CLOCK)


@pytest.mark.parametrize(
    ("status", "retry"),
    [(0, True), (409, True), (429, True), (500, True), (502, True), (503, True), (201, False), (400, False),
     (404, False), (422, False)],
)  # fmt: skip
def test_retry_transport_errors_in_flight_rate_limits_and_5xx_never_other_4xx(status: int, retry: bool) -> None:
    assert should_retry(status, classify(status, "TIMEOUT" if status == 0 else "")) is retry


def test_retry_follows_a_target_profiles_outcomes_not_its_statuses() -> None:
    assert should_retry(200, "rate_limited")  # e.g. {"code": "BUSY"} at 200, called rate_limited by a rule
    assert should_retry(400, "shed")
    assert not should_retry(200, "declined")
    assert not should_retry(200, "error")  # a 2xx no rule matched: maybe recorded, never blindly repeated
    assert should_retry(502, "error")


def test_retry_after_header_as_seconds_or_an_http_date() -> None:
    now = 1_800_000_000.0
    assert header_seconds("3", now) == 3.0
    assert header_seconds(email.utils.formatdate(now + 5, usegmt=True), now) == 5.0
    assert header_seconds(email.utils.formatdate(now - 5, usegmt=True), now) == 0.0
    assert header_seconds("tomorrow", now) is None
    assert header_seconds(None, now) is None


def test_backoff_grows_is_capped_jittered_and_never_below_retry_after() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (attempt - 1))
        delays = [backoff_s(attempt, None, rng) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert max(delays) - min(delays) > ceiling / 4  # jittered, so retries of a burst spread out
    assert all(backoff_s(1, 1.5, rng) >= 1.5 for _ in range(100))
    assert all(backoff_s(9, 0.01, rng) >= MAX_DELAY_S / 2 for _ in range(100))


def test_retry_after_prefers_milliseconds_then_the_header() -> None:
    assert retry_after_s("2", {"retry_after_ms": 250}) == 0.25
    assert retry_after_s("2", {}) == 2.0
    assert retry_after_s(None, {}) is None
    assert retry_after_s("soon", {}) is None
    assert retry_after_s("1", {"retry_after_ms": True}) == 1.0


def test_retry_budget_allows_a_share_of_first_attempts_plus_a_floor() -> None:
    budget = ClientRetryBudget(ratio=0.2, min_per_s=0.0, cap=100.0, balance=0.0)
    for _ in range(50):
        budget.on_first_attempt(10.0)
    spent = sum(budget.try_spend(10.0) for _ in range(50))
    assert spent == 10
    floor = ClientRetryBudget(ratio=0.0, min_per_s=5.0, balance=0.0)
    floor.on_first_attempt(0.0)
    assert not floor.try_spend(0.0)
    assert sum(floor.try_spend(1.0) for _ in range(20)) == 5
    capped = ClientRetryBudget(ratio=0.0, min_per_s=1000.0, cap=3.0, balance=0.0)
    capped.on_first_attempt(0.0)
    assert sum(capped.try_spend(100.0) for _ in range(10)) == 3


def test_sim_clock_maps_both_ways_and_knows_the_business_day() -> None:
    assert CLOCK.business_date(1000.0) == date(2026, 11, 11)
    assert CLOCK.business_date(1000.2) == date(2026, 11, 12)
    midnight = datetime(2026, 11, 12, tzinfo=SHANGHAI)
    assert CLOCK.unix_at(midnight) == pytest.approx(1000.0 + 10 / 60)
    assert CLOCK.sim_at(CLOCK.unix_at(midnight)) == midnight
    wall = ClusterClock.wall()
    assert abs(wall.sim_at(1_800_000_000.0) - datetime.fromtimestamp(1_800_000_000.0, SHANGHAI)) < timedelta(
        milliseconds=1
    )


def test_follow_plan_pays_today_now_and_later_days_after_their_reset() -> None:
    decision = on_decline("follow-plan", plan(("2026-11-12", 300), ("2026-11-11", 500), ("2026-11-13", 200)), ctx())
    assert decision.followed_plan
    assert [(p.amount_fen, p.part, p.unix) for p in decision.now] == [(500, 1, 1000.0)]
    assert [(p.amount_fen, p.part) for p in decision.later] == [(300, 2), (200, 3)]
    assert decision.later[0].unix == pytest.approx(1000.0 + 10 / 60 + 0.1)
    assert decision.later[1].unix == pytest.approx(1000.0 + (10 + 86400) / 60 + 0.1)
    assert decision.skipped_fen == 0


def test_follow_plan_skips_parts_that_fall_after_the_run() -> None:
    decision = on_decline("follow-plan", plan(("2026-11-11", 500), ("2026-11-12", 300)), ctx(run_end=1000.1))
    assert [p.amount_fen for p in decision.now] == [500]
    assert decision.later == () and decision.skipped_fen == 300


def test_follow_plan_without_a_usable_plan_gives_up() -> None:
    assert on_decline("follow-plan", {"code": "SINGLE_LIMIT_EXCEEDED"}, ctx()) == GIVE_UP
    assert on_decline("follow-plan", {"suggested_plan": [{"amount_fen": 1}]}, ctx()) == GIVE_UP
    assert on_decline("follow-plan", {"suggested_plan": "soon"}, ctx()) == GIVE_UP


def test_give_up_gives_up() -> None:
    assert on_decline("give-up", plan(("2026-11-11", 500)), ctx()) == GIVE_UP


def test_switch_card_walks_the_users_other_cards_then_stops() -> None:
    first = ctx()
    assert on_decline("switch-card", plan(), first).card == CARD_B
    first.tried.update({CARD_A.card_id})
    second = DeclineContext(USER, CARD_B, 1000.0, 2000.0, CLOCK, first.tried)
    assert on_decline("switch-card", plan(), second).card == CARD_C
    second.tried.add(CARD_B.card_id)
    third = DeclineContext(USER, CARD_C, 1000.0, 2000.0, CLOCK, second.tried)
    assert on_decline("switch-card", plan(), third) == GIVE_UP


def test_switch_card_does_not_help_against_the_users_platform_cap() -> None:
    assert on_decline("switch-card", {"code": "DAILY_LIMIT_EXCEEDED", "scope": "user"}, ctx()) == GIVE_UP


def test_retries_and_plan_parts_are_filed_under_their_own_request_names() -> None:
    names = {request_name(attempt, part) for attempt, part in [(1, 0), (2, 0), (1, 1), (3, 2)]}
    assert names == {
        "/v1/repayments",
        "/v1/repayments [retry]",
        "/v1/repayments [plan part]",
        "/v1/repayments [plan part retry]",
    }


def test_absurd_waits_are_clamped_and_never_overflow() -> None:
    """A server's wish is a number it chose: 10^400 ms, infinity or 400 digits read as MAX_WAIT_S (longer than
    any client waits, so the payment is given up), never an OverflowError out of the client."""
    assert retry_after_s(None, {"retry_after_ms": 10**400}) == MAX_WAIT_S
    assert retry_after_s(None, {"retry_after_ms": float("inf")}) == MAX_WAIT_S
    assert retry_after_s("2", {"retry_after_ms": float("nan")}) == 2.0
    assert header_seconds("9" * 400, 0.0) == header_seconds("1e999", 0.0) == MAX_WAIT_S
    assert header_seconds("nan", 0.0) == 0.0
    assert header_seconds("Fri, 31 Dec 9999 23:59:59 GMT", 0.0) == MAX_WAIT_S


def test_a_plan_with_absurd_or_malformed_parts_is_no_plan() -> None:
    for amount in (float("inf"), 1e400, 10**400, MAX_PLAN_PART_FEN + 1, "9" * 5000):
        assert on_decline("follow-plan", plan(("2026-11-11", amount)), ctx()) == GIVE_UP  # type: ignore[arg-type]
    nested: object = []
    for _ in range(100_000):
        nested = [nested]
    assert on_decline("follow-plan", {"suggested_plan": [{"business_date": nested, "amount_fen": 5}]}, ctx()) == GIVE_UP
    assert on_decline("follow-plan", {"suggested_plan": [nested]}, ctx()) == GIVE_UP
