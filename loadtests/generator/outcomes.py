"""What one HTTP attempt's status and problem code mean for the run: one of six outcome classes.

The classes are kept apart because they answer different questions: `declined` is the business working as
designed (a cap), `rate_limited` and `shed` are the gateway protecting itself, `error` and `timeout` are the
failures an SLO is about. A 409 IDEMPOTENCY_IN_FLIGHT counts as `shed` (internals §5): the gateway refused to
do the work now and said when to come back, exactly as a 503 does.
"""

from __future__ import annotations

from typing import Final, Literal

Outcome = Literal["succeeded", "declined", "rate_limited", "shed", "error", "timeout"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("succeeded", "declined", "rate_limited", "shed", "error", "timeout")

DECLINE_CODES: Final = frozenset({"SINGLE_LIMIT_EXCEEDED", "DAILY_LIMIT_EXCEEDED"})
TIMEOUT: Final = "TIMEOUT"
CONNECTION_ERROR: Final = "CONNECTION_ERROR"
PATH: Final = "/v1/repayments"


def classify(status: int, code: str) -> Outcome:
    """`status` 0 means no response: `code` is then TIMEOUT or CONNECTION_ERROR (internals §5)."""
    if status == 0:
        return "timeout" if code == TIMEOUT else "error"
    if 200 <= status < 300:
        return "succeeded"
    if status == 422 and code in DECLINE_CODES:
        return "declined"
    if status == 429:
        return "rate_limited"
    if status in (503, 409):
        return "shed"
    return "error"


def expected_by_clients(outcome: Outcome) -> bool:
    """Outcomes a well-behaved client handles by design; Locust's own stats count these as successes."""
    return outcome in ("succeeded", "declined", "rate_limited")


def request_name(attempt: int, part: int) -> str:
    """The name Locust's statistics (and any Locust listener) file an attempt under: first attempts of a payment,
    its retries and the parts of a suggested plan are different questions, so each gets its own row."""
    labels = (["plan part"] if part else []) + (["retry"] if attempt > 1 else [])
    return f"{PATH} [{' '.join(labels)}]" if labels else PATH
