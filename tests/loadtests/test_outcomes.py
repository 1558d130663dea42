"""Status and code → the six outcome classes (internals §5)."""

from __future__ import annotations

import pytest

from loadtests.generator.outcomes import OUTCOMES, classify, expected_by_clients, request_name


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        (201, "", "succeeded"),
        (200, "", "succeeded"),
        (422, "SINGLE_LIMIT_EXCEEDED", "declined"),
        (422, "DAILY_LIMIT_EXCEEDED", "declined"),
        (422, "IDEMPOTENCY_KEY_REUSED", "error"),
        (429, "RATE_LIMITED", "rate_limited"),
        (503, "CHANNEL_BUSY", "shed"),
        (503, "NO_HEALTHY_REPLICA", "shed"),
        (409, "IDEMPOTENCY_IN_FLIGHT", "shed"),
        (0, "TIMEOUT", "timeout"),
        (0, "CONNECTION_ERROR", "error"),
        (400, "VALIDATION_ERROR", "error"),
        (500, "", "error"),
        (502, "", "error"),
    ],
)
def test_classify(status: int, code: str, outcome: str) -> None:
    assert classify(status, code) == outcome
    assert outcome in OUTCOMES


def test_only_successes_declines_and_rate_limits_are_expected_by_clients() -> None:
    assert [o for o in OUTCOMES if expected_by_clients(o)] == ["succeeded", "declined", "rate_limited"]


def test_retries_and_plan_parts_are_filed_under_their_own_request_names() -> None:
    names = {request_name(attempt, part) for attempt, part in [(1, 0), (2, 0), (1, 1), (3, 2)]}
    assert names == {
        "/v1/repayments",
        "/v1/repayments [retry]",
        "/v1/repayments [plan part]",
        "/v1/repayments [plan part retry]",
    }
