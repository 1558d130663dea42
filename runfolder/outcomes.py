"""What became of one attempt: the six outcome classes, the problem codes that decide them, and their algebra.

Every verdict, chart, live line and capacity probe counts through these names, so "good", "failed", "admitted"
and "rejected" mean the same thing everywhere a run is judged (docs/internals.md §5).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Literal

OutcomeClass = Literal["succeeded", "declined", "rate_limited", "shed", "error", "timeout"]
OUTCOME_CLASSES: Final[tuple[OutcomeClass, ...]] = ("succeeded", "declined", "rate_limited", "shed", "error", "timeout")

# The algebra every verdict, chart, live line and capacity probe uses:
#   good      = succeeded + declined        a business decline is the gateway working as specified (docs/scenarios.md)
#   failures  = shed + error + timeout      what the paying user felt as the gateway failing
#   admitted  = good + failures             every class but rate_limited: a 429 is advertised admission control
#                                           that the client honours and retries, not a failure
#   rejected  = rate_limited + shed         the gateway protecting itself: "not now, come back later"
#   success ratio = good / admitted         the `min_success_ratio` SLO; a capacity probe's is good / every class,
#                                           since there a 429 is exactly the load the gateway could not take
GOOD: Final[tuple[OutcomeClass, ...]] = ("succeeded", "declined")
FAILURES: Final[tuple[OutcomeClass, ...]] = ("shed", "error", "timeout")
ADMITTED: Final[tuple[OutcomeClass, ...]] = (*GOOD, *FAILURES)
REJECTED: Final[tuple[OutcomeClass, ...]] = ("rate_limited", "shed")

DECLINE_CODES: Final = frozenset({"SINGLE_LIMIT_EXCEEDED", "DAILY_LIMIT_EXCEEDED"})
TIMEOUT: Final = "TIMEOUT"
CONNECTION_ERROR: Final = "CONNECTION_ERROR"
RESPONSE_TOO_LARGE: Final = "RESPONSE_TOO_LARGE"  # an answer past the body bound: refused unread, connection closed
# Attempts that failed on the client's credentials, not on the service (a target profile's signing, tokens and
# TLS; docs/targets.md): outcome `error`, but kept apart from the service's errors by the report and verdicts.
AUTH_FAILED: Final = "AUTH_FAILED"  # no token: the token endpoint failed or refused the client
SIGN_FAILED: Final = "SIGN_FAILED"  # the request could not be signed
UNAUTHORIZED: Final = "UNAUTHORIZED"  # the target answered 401 or 403
TLS_FAILED: Final = "TLS_FAILED"  # the TLS handshake failed on a certificate (refused, expired, unverifiable)
TOKEN_EXPIRED: Final = "TOKEN_EXPIRED"  # noqa: S105 (a code, not a secret) — a 401 to a token that had expired: refreshed and re-sent once
AUTH_CODES: Final = frozenset({AUTH_FAILED, SIGN_FAILED, UNAUTHORIZED, TLS_FAILED, TOKEN_EXPIRED})


def classify(status: int, code: str) -> OutcomeClass:
    """One attempt's class from its status and problem code; `status` 0 means no response, and `code` is then
    TIMEOUT, CONNECTION_ERROR or RESPONSE_TOO_LARGE. A 409 IDEMPOTENCY_IN_FLIGHT is `shed`: the gateway refused
    to do the work now and said when to come back, exactly as a 503 does."""
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


def is_failure(outcome: str) -> bool:
    """A failure the SLOs count; every other class is handled by a well-behaved client by design (Locust's own
    statistics count those as successes)."""
    return outcome in FAILURES


def success_ratio(counts: Mapping[str, int], of: Iterable[OutcomeClass] = ADMITTED) -> float | None:
    """good / admitted from per-class counts (or good / the classes `of`: OUTCOME_CLASSES for a capacity probe);
    None when nothing was counted (no evidence either way). The one definition every judge and output uses."""
    total = sum(int(counts.get(name, 0)) for name in of)
    if total == 0:
        return None
    return sum(int(counts.get(name, 0)) for name in GOOD) / total


ACCEPTED: Final = 202  # an async channel's "accepted, processing": the attempt's outcome class is `succeeded`
# `settlement` of an accepted attempt: the final state the client learned, `processing` when it learned none
# before its settle_timeout_s, `unwatched` when the process's pending set was full (never watched)
SETTLED_STATES: Final = ("succeeded", "failed")
