"""Arrival spacing: exact counts for even spacing, Poisson statistics, worker shares that add up."""

from __future__ import annotations

import itertools
import math

import pytest

from loadtests.generator.arrivals import RateCurve, arrival_times

RAMP = [(0.0, 10.0), (10.0, 10.0), (12.0, 200.0), (20.0, 200.0), (30.0, 50.0)]


def counts_per_second(times: list[float], seconds: int) -> list[int]:
    counts = [0] * seconds
    for t in times:
        counts[int(t)] += 1
    return counts


def test_cumulative_integrates_the_piecewise_linear_curve() -> None:
    curve = RateCurve(RAMP)
    assert curve.cumulative(10) == pytest.approx(100)
    assert curve.cumulative(12) == pytest.approx(100 + 2 * 105)
    assert curve.total == pytest.approx(100 + 210 + 1600 + 1250)


def test_even_arrivals_follow_the_curve_second_by_second() -> None:
    curve = RateCurve(RAMP)
    times = list(arrival_times(curve, "even"))
    assert len(times) == round(curve.total)
    assert times == sorted(times)
    for second, count in enumerate(counts_per_second(times, 30)):
        expected = curve.cumulative(second + 1) - curve.cumulative(second)
        assert abs(count - expected) <= 1, second


def test_even_spacing_on_a_flat_rate_is_constant() -> None:
    times = list(arrival_times(RateCurve([(0.0, 100.0), (2.0, 100.0)]), "even"))
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(times)}
    assert gaps == {0.01}


def test_poisson_counts_match_the_curve_within_noise_and_gaps_are_exponential() -> None:
    curve = RateCurve([(0.0, 500.0), (20.0, 500.0)])
    times = list(arrival_times(curve, "poisson", seed=7))
    assert abs(len(times) - 10000) < 5 * math.sqrt(10000)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    mean = sum(gaps) / len(gaps)
    assert mean == pytest.approx(1 / 500, rel=0.05)
    share_short = sum(1 for g in gaps if g < mean) / len(gaps)
    assert share_short == pytest.approx(1 - math.exp(-1), abs=0.02)  # memoryless, not evenly spaced


def test_poisson_is_seeded() -> None:
    curve = RateCurve(RAMP)
    assert list(arrival_times(curve, "poisson", seed=1)) == list(arrival_times(curve, "poisson", seed=1))
    assert list(arrival_times(curve, "poisson", seed=1)) != list(arrival_times(curve, "poisson", seed=2))


def test_even_shares_of_n_workers_are_exactly_the_single_schedule() -> None:
    curve = RateCurve(RAMP)
    single = list(arrival_times(curve, "even"))
    shares = [list(arrival_times(curve, "even", worker_index=i, worker_count=3)) for i in range(3)]
    assert sorted(itertools.chain(*shares)) == single
    assert max(len(s) for s in shares) - min(len(s) for s in shares) <= 1


def test_poisson_shares_add_up_to_the_full_rate() -> None:
    curve = RateCurve([(0.0, 400.0), (20.0, 400.0)])
    total = sum(len(list(arrival_times(curve, "poisson", seed=3, worker_index=i, worker_count=4))) for i in range(4))
    assert abs(total - 8000) < 5 * math.sqrt(8000)


def test_zero_rate_yields_nothing_and_bad_worker_index_is_refused() -> None:
    assert list(arrival_times(RateCurve([(0.0, 0.0), (5.0, 0.0)]), "even")) == []
    with pytest.raises(ValueError, match="worker_index"):
        next(arrival_times(RateCurve(RAMP), "even", worker_index=2, worker_count=2))
