"""Per-second caps as GCRA (the generic cell rate algorithm): admit now or say when to come back, never queue.

A queue in front of a saturated gateway only converts overload into latency and timeouts; a 429 with an exact
retry-after lets the client decide. GCRA keeps one number per key (the theoretical arrival time), so a per-user
cap over millions of users stays cheap. Checking and taking are separate so that a request refused by one cap
does not spend a token of another (a user must not lose quota because the replica was full).

The burst tolerance b is `limits.burst_ms` worth of the rate, by default 40 ms — a 25th of a second (at least
one request): over any whole second a cap of N/s admits at most N + b - 1 (within 4 % of N) and, under
sustained overload, at least N - 1, which keeps "N per second" honest; yet 40 ms of slack absorbs the clumping
of Poisson arrivals just under the cap. A gateway whose clients' send times jitter more (a load generator
sharing two cores with the gateway stalls for 100 ms at times) needs a larger tolerance, as a real token bucket
with a deeper bucket would have; that is the knob, not the rate.
The per-user cap is the exception: a person paying a split plan sends its parts back to back, so a user may
spend a whole second's allowance at once (burst = user_tps) while the long-run rate stays user_tps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from mock_gateway.config import Rates

K = TypeVar("K", bound=Hashable)


DEFAULT_BURST_MS = 40.0


def default_burst(rate_per_s: float, burst_ms: float = DEFAULT_BURST_MS) -> int:
    return max(1, math.ceil(rate_per_s * burst_ms / 1000))


class Gcra:
    """One cap: `rate_per_s` sustained, `burst` requests at once."""

    __slots__ = ("_interval", "_tat", "_tolerance", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: int | None = None) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"'rate_per_s' must be > 0 (got {rate_per_s})")
        self.rate_per_s = rate_per_s
        self._interval = 1.0 / rate_per_s
        self._tolerance = self._interval * ((burst or default_burst(rate_per_s)) - 1)
        self._tat = -math.inf

    def wait(self, now: float) -> float:
        """Seconds until a request would be admitted; 0.0 means admitted now. Does not take."""
        return _wait(self._tat, now, self._tolerance)

    def take(self, now: float) -> None:
        self._tat = max(self._tat, now) + self._interval


class KeyedGcra(Generic[K]):
    """The same cap applied per key (per user); idle keys are forgotten so memory stays bounded."""

    __slots__ = ("_interval", "_max_keys", "_tats", "_tolerance", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: int | None = None, max_keys: int = 100_000) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"'rate_per_s' must be > 0 (got {rate_per_s})")
        self.rate_per_s = rate_per_s
        self._interval = 1.0 / rate_per_s
        self._tolerance = self._interval * ((burst or default_burst(rate_per_s)) - 1)
        self._tats: dict[K, float] = {}
        self._max_keys = max_keys

    def wait(self, key: K, now: float) -> float:
        tat = self._tats.get(key)
        return 0.0 if tat is None else _wait(tat, now, self._tolerance)

    def take(self, key: K, now: float) -> None:
        if len(self._tats) >= self._max_keys:
            self._forget_idle(now)
        tat = self._tats.get(key, now)
        self._tats[key] = max(tat, now) + self._interval

    def __len__(self) -> int:
        return len(self._tats)

    def _forget_idle(self, now: float) -> None:
        """A key whose TAT is in the past holds no state a fresh key would not; drop those."""
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}


def _wait(tat: float, now: float, tolerance: float) -> float:
    """A nanosecond of slack so that float rounding never refuses a request arriving exactly on time."""
    allowed_at = tat - tolerance
    return 0.0 if now + 1e-9 >= allowed_at else allowed_at - now


@dataclass(frozen=True, slots=True)
class Refusal:
    """Which cap refused, how long to wait, and the cap's rate (for the RateLimit-Policy header)."""

    scope: str
    retry_after_s: float
    rate_per_s: float


class Admission:
    """The per-second caps one front end applies, checked together and charged together (all or none).

    The one admission path of the gateway: a lone replica applies all three caps, a replica behind the router only
    its own `replica` cap, and the router the `global` and `user` caps (only it sees the whole gateway's traffic).
    A cap that is None is not applied. A refusal names the cap with the longest wait and charges nothing, so a
    user never loses quota because the replica was full. Per-user keys are validated ids (at most 64 characters,
    `validation.MAX_ID_CHARS`) and at most `max_user_keys` of them are kept, so their memory is bounded.
    """

    __slots__ = ("_caps", "_monotonic", "_user")

    def __init__(
        self,
        *,
        replica_tps: float | None,
        global_tps: float | None,
        user_tps: float | None,
        monotonic: Callable[[], float],
        burst_ms: float = DEFAULT_BURST_MS,
        max_user_keys: int = 100_000,
    ) -> None:
        self._monotonic = monotonic
        self._caps = [
            (scope, Gcra(rate, default_burst(rate, burst_ms)))
            for scope, rate in (("replica", replica_tps), ("global", global_tps))
            if rate is not None
        ]
        self._user: KeyedGcra[str] | None = (
            KeyedGcra(user_tps, burst=max(1, math.floor(user_tps)), max_keys=max_user_keys)
            if user_tps is not None
            else None
        )

    def admit(self, user_id: str) -> Refusal | None:
        """None when every cap admits (and each is charged); else the refusal with the longest wait."""
        now = self._monotonic()
        refusal: Refusal | None = None
        for scope, wait, rate in self._waits(user_id, now):
            if wait > 0 and (refusal is None or wait > refusal.retry_after_s):
                refusal = Refusal(scope, wait, rate)
        if refusal is not None:
            return refusal
        for _, cap in self._caps:
            cap.take(now)
        if self._user is not None:
            self._user.take(user_id, now)
        return None

    @property
    def user_keys(self) -> int:
        """How many users' states are kept (for tests and metrics)."""
        return 0 if self._user is None else len(self._user)

    def _waits(self, user_id: str, now: float) -> list[tuple[str, float, float]]:
        waits = [(scope, cap.wait(now), cap.rate_per_s) for scope, cap in self._caps]
        if self._user is not None:
            waits.append(("user", self._user.wait(user_id, now), self._user.rate_per_s))
        return waits


class ScheduledAdmission(Generic[K]):
    """An `Admission` whose rates follow the dynamic limits (`[[limits.schedule]]`).

    `current()` names the rates in force now (a hashable value, from the gateway clock); when it changes, the
    next request gets a fresh `Admission` built for the new rates by `build`. Fresh state at a switch is what a
    gateway reloading its limits does: a raised cap opens at once, a lowered one starts from an empty bucket.
    Every replica and the router read the same anchored clock, so all switch at the same simulated instant.
    """

    __slots__ = ("_admission", "_build", "_current", "_rates")

    def __init__(self, build: Callable[[K], Admission], current: Callable[[], K]) -> None:
        self._build = build
        self._current = current
        self._rates = current()
        self._admission = build(self._rates)

    def admit(self, user_id: str) -> Refusal | None:
        rates = self._current()
        if rates != self._rates:
            self._rates, self._admission = rates, self._build(rates)
        return self._admission.admit(user_id)

    @property
    def user_keys(self) -> int:
        return self._admission.user_keys


def admission_for(
    rates_now: Callable[[], Rates],
    *,
    scheduled: bool,
    scopes: Collection[str],
    monotonic: Callable[[], float],
) -> Admission | ScheduledAdmission[Rates]:
    """The admission of one front end applying the caps named in `scopes` (`replica`, `global`, `user`) at the
    rates `rates_now()` gives; `scheduled` when the dynamic limits change a rate (a plain `Admission` otherwise:
    no clock read per request)."""

    def build(rates: Rates) -> Admission:
        return Admission(
            replica_tps=rates.replica_tps if "replica" in scopes else None,
            global_tps=rates.global_tps if "global" in scopes else None,
            user_tps=rates.user_tps if "user" in scopes else None,
            monotonic=monotonic,
            burst_ms=rates.burst_ms,
        )

    return ScheduledAdmission(build, rates_now) if scheduled else build(rates_now())
