"""What a forecast is computed from: sourced figures, a bank channel's limits, the hours, the bills' amounts.

Every figure carries where it came from (`Sourced`), so the page can say it;
`loadtests/orchestration/forecast_evidence.py` reads and sources them, and nothing in this package reads a file
but the page template. A calendar gives the bills' amounts as a lognormal per day (`Lognormal`: closed-form tail
shares and partial expectations, two lines of `math.erfc` rather than a SciPy dependency surge has no other use
for); a trace gives the amounts themselves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

import pandas as pd

SECONDS_PER_HOUR = 3600
Z_99 = 2.3263478740408408


@dataclass(frozen=True)
class Sourced:
    """A figure and where it came from (a run folder's key, a config key, a forecast file key)."""

    value: float
    source: str


@dataclass(frozen=True)
class ChannelLimits:
    code: str
    single_fen: int
    card_daily_fen: int
    tps: float  # the bank's quota for the channel (0: none)
    concurrency: int  # bank calls in flight, per replica
    latency_median_ms: float
    latency_p99_ms: float

    def latency_mean_s(self) -> float:
        """The mean of the lognormal fixed by median and p99 (what Little's law multiplies by)."""
        if self.latency_median_ms <= 0:
            return 0.0
        sigma = math.log(max(self.latency_p99_ms, self.latency_median_ms) / self.latency_median_ms) / Z_99
        return self.latency_median_ms * math.exp(sigma * sigma / 2) / 1000.0


@dataclass(frozen=True)
class Lognormal:
    median: float
    p99: float

    @property
    def mu(self) -> float:
        return math.log(self.median)

    @property
    def sigma(self) -> float:
        return math.log(self.p99 / self.median) / Z_99

    def above(self, cap: float) -> float:
        """P(X > cap)."""
        if self.sigma == 0:
            return float(self.median > cap)
        return 0.5 * math.erfc((math.log(cap) - self.mu) / (self.sigma * math.sqrt(2)))

    def mass_above(self, cap: float) -> float:
        """E[X · 1{X > cap}]: the amount the payments above `cap` ask for, per payment."""
        if self.sigma == 0:
            return self.median if self.median > cap else 0.0
        mean = math.exp(self.mu + self.sigma**2 / 2)
        return mean * 0.5 * math.erfc(-(self.mu + self.sigma**2 - math.log(cap)) / (self.sigma * math.sqrt(2)))


@dataclass(frozen=True)
class ForecastInputs:
    """Everything the forecast needs, read and sourced by the CLI."""

    name: str
    description: str
    # one row per hour: hour (tz-aware, Asia/Shanghai), payments (before growth), peak_second (payments in the
    # busiest second, NaN without a trace); plus one column per channel: that hour's payments on it
    hours: pd.DataFrame
    growth_p50: float
    growth_p90: float
    attempts_per_payment: Sourced
    capacity_n: Sourced
    capacity_n_minus_1: Sourced
    replicas_n: int
    channels: tuple[ChannelLimits, ...]
    caps: Mapping[date, Mapping[str, tuple[int, int, int]]]  # day → channel → (single, card daily, user daily)
    active_active: bool
    demand_source: str
    caps_source: str
    # amounts: a trace's payments (date, channel, amount_fen) or a calendar's lognormal per day
    amounts: pd.DataFrame | None = None
    bills: Mapping[date, Lognormal] = field(default_factory=dict)
