"""The `[[abort]]` guard's judgement over merged per-second windows (pure: no Locust, no clock)."""

from __future__ import annotations

import pytest

from loadtests.generator.abort import COMPLETE_AFTER_S, AbortGuard, measure
from loadtests.generator.windows import Window
from loadtests.scenario.files import builtin_scenarios, load_scenario
from loadtests.scenario.parts import AbortRule

RULE = AbortRule(metric="error_ratio", above=0.25, window_s=5, grace_s=2)


def second(t: int, ok: int, errors: int = 0, latency_ms: float = 10.0) -> Window:
    window = Window(t)
    for _ in range(ok):
        window.record("succeeded", intended_us=latency_ms * 1000, service_us=latency_ms * 1000)
    for _ in range(errors):
        window.record("error", intended_us=latency_ms * 1000, service_us=latency_ms * 1000)
    return window


def feed(guard: AbortGuard, errors_in: set[int], until: int) -> float | None:
    """Seconds 0..until-1 at 20 attempts each, half of them errors in `errors_in`; the first trip's time."""
    for t in range(until):
        guard.add(second(t, 10, 10) if t in errors_in else second(t, 20))
        trip = guard.check(t + 0.5)
        if trip is not None:
            return trip.at_s
    return None


def test_a_two_second_burst_under_a_five_second_window_does_not_trip() -> None:
    assert feed(AbortGuard([RULE]), {5, 6}, 40) is None


def test_sustained_errors_trip_within_the_window_plus_the_completion_lag() -> None:
    at_s = feed(AbortGuard([RULE]), set(range(10, 40)), 40)
    assert at_s is not None
    assert 10 + COMPLETE_AFTER_S < at_s <= 10 + RULE.window_s + 1


def test_nothing_is_judged_during_the_grace_nor_on_seconds_without_attempts() -> None:
    guard = AbortGuard([RULE.model_copy(update={"grace_s": 30})])
    assert feed(guard, set(range(40)), 20) is None
    idle = AbortGuard([RULE])
    for t in range(20):
        idle.add(Window(t))
    assert idle.check(20.0) is None


def test_p99_ms_leaves_rate_limited_attempts_out() -> None:
    window = second(0, 99, latency_ms=10.0)
    slow = Window(0)
    slow.record("rate_limited", intended_us=5_000_000, service_us=5_000_000)
    window.merge(slow)
    value = measure("p99_ms", [window])
    assert value is not None and value < 11.0
    assert measure("error_ratio", [Window(3)]) is None


@pytest.mark.parametrize("name", sorted(builtin_scenarios()))
def test_every_builtin_scenario_has_default_abort_rules(name: str) -> None:
    rules = load_scenario(name).abort
    assert {rule.metric for rule in rules} >= {"error_ratio", "timeout_ratio"}
