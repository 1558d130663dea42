"""Status and code → the six outcome classes (internals §5)."""

from __future__ import annotations

import pytest

from runfolder.outcomes import OUTCOME_CLASSES as OUTCOMES
from runfolder.outcomes import classify, is_failure


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


def test_only_successes_declines_and_rate_limits_are_not_failures() -> None:
    assert [o for o in OUTCOMES if not is_failure(o)] == ["succeeded", "declined", "rate_limited"]
