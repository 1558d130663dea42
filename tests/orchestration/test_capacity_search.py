"""The knee search on simulated response curves: it must bracket the knee, bound its probes and report spread."""

from __future__ import annotations

import random

import pytest

from loadtests.orchestration.capacity_search import Probe, find_knee


def curve(knee: float, noise: float = 0.0, seed: int = 1):
    rng = random.Random(seed)

    def probe(rate: float) -> Probe:
        goodput = min(rate, knee) * (1 + rng.uniform(-noise, noise))
        passed = rate <= knee
        return Probe(rate, rate, goodput, goodput / rate, 20.0 if passed else 900.0, passed, "rate cap (replica)")

    return probe


@pytest.mark.parametrize("knee", [37.0, 300.0, 1234.0])
def test_finds_the_knee_within_precision(knee: float) -> None:
    result = find_knee(curve(knee), start_rate=20, max_rate=5000, precision=0.05)
    assert result.max_rate_per_s <= knee
    assert result.max_rate_per_s >= knee * 0.95
    assert result.limited_by == "rate cap (replica)"
    assert result.bracket is not None
    low, high = result.bracket
    assert low <= knee < high


def test_repeats_the_best_rate_and_measures_spread() -> None:
    result = find_knee(curve(300, noise=0.02), start_rate=50, max_rate=1000, repeats=3)
    best = [p for p in result.probes if p.rate_per_s == result.max_rate_per_s]
    assert len(best) == 4
    assert 0 < result.spread <= 0.08


def test_ceiling_reached_without_failure() -> None:
    result = find_knee(curve(10_000), start_rate=100, max_rate=400)
    assert result.max_rate_per_s == 400
    assert "ceiling" in result.limited_by


def test_failing_start_rate_bisects_down_to_zero() -> None:
    result = find_knee(curve(30), start_rate=100, max_rate=400, precision=0.05, max_probes=40)
    assert 28.5 <= result.max_rate_per_s <= 30


def test_probe_count_is_bounded_even_for_a_pathological_curve() -> None:
    calls = 0

    def flaky(rate: float) -> Probe:
        nonlocal calls
        calls += 1
        return Probe(rate, rate, rate, 1.0, 10.0, calls % 2 == 0)

    find_knee(flaky, start_rate=10, max_rate=1e9, max_probes=12, repeats=2)
    assert calls <= 14


def test_rejects_nonsense_bounds() -> None:
    with pytest.raises(ValueError, match="start_rate"):
        find_knee(curve(10), start_rate=0, max_rate=10)


def test_a_gateway_failing_everything_stops_at_the_floor() -> None:
    result = find_knee(curve(0.0), start_rate=100, max_rate=400, min_rate=1.0)
    assert result.max_rate_per_s == 0.0
    assert len(result.probes) <= 9
