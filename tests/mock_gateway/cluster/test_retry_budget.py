"""The retry budget's arithmetic, with time passed in."""

from __future__ import annotations

import pytest

from mock_gateway.cluster.retry_budget import RetryBudget


def test_floor_allows_a_few_retries_per_second_on_a_quiet_cluster() -> None:
    budget = RetryBudget(ratio=0.2, window_s=10, min_per_s=1.0)
    granted = sum(budget.try_acquire(100.0) for _ in range(20))
    assert granted == 10


def test_ratio_of_recent_requests_bounds_the_retries() -> None:
    budget = RetryBudget(ratio=0.2, window_s=10, min_per_s=0.0)
    for _ in range(1000):
        budget.record_request(50.5)
    granted = sum(budget.try_acquire(50.6) for _ in range(500))
    assert granted == 200


def test_old_requests_and_retries_leave_the_window() -> None:
    budget = RetryBudget(ratio=0.5, window_s=2, min_per_s=0.0)
    for _ in range(10):
        budget.record_request(10.0)
    assert sum(budget.try_acquire(10.2) for _ in range(10)) == 5
    assert not budget.try_acquire(11.9)
    assert budget.allowance(12.0) == 0  # the second-10 bucket has left a 2-second window
    assert budget.retries_in_window == 0
    for _ in range(4):
        budget.record_request(12.5)
    assert sum(budget.try_acquire(12.5) for _ in range(4)) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"ratio": 1.5}, "ratio"), ({"window_s": 0}, "window_s"), ({"min_per_s": -1}, "min_per_s")],
)
def test_bad_parameters_are_named(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RetryBudget(**kwargs)  # type: ignore[arg-type]
