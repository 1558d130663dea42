"""What a well-behaved repayment client decides after each answer: retry (when), follow a plan, switch card, stop.

Pure: the caller passes the clock, the RNG and the answer, so every rule is a unit test. The retry rules follow
stripe-python's (a good production reference): retry transport errors, timeouts, 409 and 5xx with the *same*
Idempotency-Key, exponential backoff capped at MAX_DELAY_S with jitter in [50 %, 100 %], and never sooner than the
server's Retry-After. Unlike stripe-python, 429 is retried too: a mobile app's "pay" button does exactly that
after Retry-After, and the gateway stores nothing for a 429 (docs/gateway.md), so it is safe; the per-payment retry
limit and the process-wide `ClientRetryBudget` keep those retries from becoming a storm.
"""

from __future__ import annotations

import email.utils
import random
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Literal

from loadtests.generator.population import Card, User
from runfolder.clock import SHANGHAI, ClusterClock

BASE_DELAY_S = 0.1
MAX_DELAY_S = 2.0
MAX_RETRY_AFTER_S = 30.0  # a server asking for longer than this is treated as "not today": give up
MAX_WAIT_S = 86_400.0  # any longer Retry-After is read as this: finite, so no float overflows or infinities
MAX_PLAN_PART_FEN = 10**12  # a suggested part above ten billion yuan makes the plan malformed, not a payment
RESET_MARGIN_S = 0.1  # wall seconds after a business-day reset before the next part of a plan is sent

DeclinePolicy = Literal["follow-plan", "give-up", "switch-card"]
PATH = "/v1/repayments"


def request_name(attempt: int, part: int, base: str = PATH) -> str:
    """The name Locust's statistics (and any Locust listener) file an attempt under: first attempts of a payment,
    its retries and the parts of a suggested plan are different questions, so each gets its own row. `base` is
    the request's own name (a target profile's path template)."""
    labels = (["plan part"] if part else []) + (["retry"] if attempt > 1 else [])
    return f"{base} [{' '.join(labels)}]" if labels else base


def should_retry(status: int, outcome: str) -> bool:
    """Same key again for: no response (0), rate limited or shed (429, 409 in flight, 503 — or whatever a target
    profile's rules call so), any other 5xx. Never for a 4xx error, a decline or an unmatched 2xx."""
    return status == 0 or outcome in ("rate_limited", "shed") or (outcome == "error" and status >= 500)


def backoff_s(retry_number: int, retry_after_s: float | None, rng: random.Random) -> float:
    """Delay before retry `retry_number` (1-based): capped, jittered exponential, floored at Retry-After."""
    delay: float = min(MAX_DELAY_S, BASE_DELAY_S * 2.0 ** (retry_number - 1))
    delay *= 0.5 * (1.0 + rng.random())
    return max(delay, retry_after_s or 0.0)


def retry_after_s(header: str | None, problem: dict[str, Any]) -> float | None:
    """The server's wish in seconds: `retry_after_ms` (precise) over the `Retry-After` header (whole seconds)."""
    millis = problem.get("retry_after_ms")
    if isinstance(millis, int | float) and not isinstance(millis, bool) and millis >= 0:  # NaN is not >= 0
        return float(min(millis, MAX_WAIT_S * 1000.0)) / 1000.0  # compared before float(): a 400-digit int
    return header_seconds(header)


def header_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header as seconds from `now`: delta-seconds or an HTTP date (RFC 9110 §10.2.3), None when
    absent or unreadable, at most MAX_WAIT_S. The gateway sends seconds; a team's own API may send a date."""
    if value is None:
        return None
    text = value.strip()
    try:
        return min(MAX_WAIT_S, max(0.0, float(text)))  # "1e999" is inf, "nan" is 0
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError):
        return None
    return min(MAX_WAIT_S, max(0.0, when.timestamp() - (_time.time() if now is None else now)))


@dataclass
class ClientRetryBudget:
    """A process-wide cap on a client's retries (Finagle's RetryBudget): each first attempt deposits `ratio` of a
    retry. The router's own budget on its replays is `mock_gateway.cluster.retry_budget.RetryBudget`.

    `min_per_s` retries a second are always allowed so a quiet client still retries; the balance is capped so
    a long calm spell cannot bank a storm. Times are passed in so the budget is testable without sleeping.
    Finagle's default ratio is 0.2; 0.5 here because a payment app retries more eagerly than a backend RPC,
    and the budget should bite in a retry storm (a failover at the peak), not in ordinary turbulence.
    """

    ratio: float = 0.5
    min_per_s: float = 10.0
    cap: float = 100.0
    balance: float = 10.0
    last: float | None = None

    def _refill(self, now: float) -> None:
        if self.last is not None and now > self.last:
            self.balance = min(self.cap, self.balance + self.min_per_s * (now - self.last))
        self.last = now if self.last is None else max(self.last, now)

    def on_first_attempt(self, now: float) -> None:
        self._refill(now)
        self.balance = min(self.cap, self.balance + self.ratio)

    def try_spend(self, now: float) -> bool:
        self._refill(now)
        if self.balance < 1.0 - 1e-9:  # 5 deposits of 0.2 are one retry, float rounding aside
            return False
        self.balance -= 1.0
        return True


@dataclass(frozen=True, slots=True)
class ScheduledPart:
    """One part of a suggested plan as the client schedules it: a new payment (new key) of `amount_fen` to start
    at wall time `unix` (the gateway's own `quotas.PlanPart` is the part on a business date)."""

    unix: float
    amount_fen: int
    part: int


@dataclass(frozen=True, slots=True)
class AfterDecline:
    """What the client does after a decline: amounts to pay now (each a new key), parts for later days, or
    another card."""

    now: tuple[ScheduledPart, ...] = ()
    later: tuple[ScheduledPart, ...] = ()
    card: Card | None = None
    skipped_fen: int = 0  # plan parts that would fall after the run's end
    followed_plan: bool = False


GIVE_UP = AfterDecline()


@dataclass
class DeclineContext:
    """What the client knows when a decline arrives; `tried` grows as switch-card walks the user's cards."""

    user: User
    card: Card
    now_unix: float
    run_end_unix: float
    clock: ClusterClock
    tried: set[str] = field(default_factory=set)


def on_decline(policy: DeclinePolicy, problem: dict[str, Any], ctx: DeclineContext) -> AfterDecline:
    """The scenario's answer to SINGLE/DAILY_LIMIT_EXCEEDED; a decline of a plan part itself is never chased."""
    if policy == "give-up":
        return GIVE_UP
    if policy == "switch-card":
        if problem.get("scope") == "user":
            return GIVE_UP  # the platform cap covers every card of this user
        tried = ctx.tried | {ctx.card.card_id}
        spare = next((card for card in ctx.user.cards if card.card_id not in tried), None)
        return GIVE_UP if spare is None else AfterDecline(card=spare)
    return _follow_plan(problem, ctx)


def _follow_plan(problem: dict[str, Any], ctx: DeclineContext) -> AfterDecline:
    parts = _plan_parts(problem.get("suggested_plan"))
    if not parts:
        return GIVE_UP
    today = ctx.clock.business_date(ctx.now_unix)
    now: list[ScheduledPart] = []
    later: list[ScheduledPart] = []
    skipped = 0
    for index, (day, amount) in enumerate(parts, start=1):
        if day <= today:
            now.append(ScheduledPart(ctx.now_unix, amount, index))
            continue
        midnight = datetime.combine(day, time(0), SHANGHAI)
        unix = max(ctx.now_unix, ctx.clock.unix_at(midnight)) + RESET_MARGIN_S
        if unix < ctx.run_end_unix:
            later.append(ScheduledPart(unix, amount, index))
        else:
            skipped += amount
    return AfterDecline(now=tuple(now), later=tuple(later), skipped_fen=skipped, followed_plan=True)


def _plan_parts(plan: Any) -> list[tuple[date, int]]:
    """`suggested_plan` as (business_date, amount_fen) pairs in date order; a malformed plan is no plan: a part
    that is not an object, a date that is not a YYYY-MM-DD string, an amount that is not a whole number of fen
    up to MAX_PLAN_PART_FEN."""
    if not isinstance(plan, Sequence) or isinstance(plan, str):
        return []
    parts: list[tuple[date, int]] = []
    for item in plan:
        if not isinstance(item, dict) or not isinstance(item.get("business_date"), str):
            return []
        try:
            day = date.fromisoformat(item["business_date"])
            amount = int(item["amount_fen"])
        except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
            return []
        if amount > MAX_PLAN_PART_FEN:
            return []
        if amount > 0:
            parts.append((day, amount))
    return sorted(parts, key=lambda part: part[0])
