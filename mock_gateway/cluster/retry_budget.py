"""A retry budget, so that a failover cannot multiply the load on the replicas that are left.

Envoy's lesson: a fixed per-request retry count lets a sick cluster receive N times its load exactly when it
can least take it. Here retries are allowed while they stay under `ratio` of the requests seen in the last
`window_s` seconds, with a floor of `min_per_s` retries per second so a quiet cluster can still fail over.
Time is passed in (monotonic seconds) so the arithmetic is tested without sleeping.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class RetryBudget:
    """Sliding window of one-second buckets counting requests and the retries granted against them."""

    ratio: float = 0.2
    window_s: int = 10
    min_per_s: float = 5.0
    _buckets: deque[list[int]] = field(default_factory=deque, repr=False)  # [second, requests, retries]
    _requests: int = field(default=0, repr=False)
    _retries: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"'ratio' must be within 0..1 (got {self.ratio})")
        if self.window_s < 1:
            raise ValueError(f"'window_s' must be >= 1 (got {self.window_s})")
        if self.min_per_s < 0:
            raise ValueError(f"'min_per_s' must be >= 0 (got {self.min_per_s})")

    def _bucket(self, now: float) -> list[int]:
        second = math.floor(now)
        while self._buckets and self._buckets[0][0] <= second - self.window_s:
            _, requests, retries = self._buckets.popleft()
            self._requests -= requests
            self._retries -= retries
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        return self._buckets[-1]

    def record_request(self, now: float) -> None:
        """Count one client request (not its retries)."""
        self._bucket(now)[1] += 1
        self._requests += 1

    def allowance(self, now: float) -> int:
        """How many retries the window allows in total right now."""
        self._bucket(now)
        return max(math.floor(self.ratio * self._requests), math.floor(self.min_per_s * self.window_s))

    def try_acquire(self, now: float) -> bool:
        """Grant one retry if the budget has room, and count it; False means answer the client now."""
        if self._retries >= self.allowance(now):
            return False
        self._bucket(now)[2] += 1
        self._retries += 1
        return True

    @property
    def retries_in_window(self) -> int:
        return self._retries
