"""The forecast file (`surge forecast FORECAST.toml`): this year's demand, the capacity evidence, the caps.

Data only: the keys, their checks and their paths made absolute (relative to the forecast file). Reading the
evidence — traces, run folders, the gateway config — is `loadtests/orchestration/forecast_evidence.py`'s job;
the arithmetic is `reports/forecast/`'s. A bad file is one line naming the key (exit 2), like a scenario.
"""

from __future__ import annotations

import math
import tomllib
from datetime import date
from pathlib import Path

from pydantic import AwareDatetime, Field, ValidationError, field_validator, model_validator

from errortext.validation import describe
from loadtests.errors import UsageError
from loadtests.scenario.parts import BillDistribution, Strict


class ForecastFileError(UsageError):
    """A forecast file that cannot be read or has a bad or unknown key."""


class Growth(Strict):
    p50: float = Field(default=1.0, gt=0)
    """The median growth of this year's volume against the trace's (or the calendar's)."""
    p90: float = Field(default=1.0, gt=0)
    """The growth that is exceeded with 10 % probability: what the capacity must hold at N−1."""

    @model_validator(mode="after")
    def _ordered(self) -> Growth:
        if self.p90 < self.p50:
            raise ValueError("needs p90 >= p50")
        return self


class DemandDay(Strict):
    date: date
    """The business day (Asia/Shanghai), YYYY-MM-DD."""
    payments: int = Field(ge=0)
    """Repayments due that day (bills that will be paid), before growth."""
    hour_profile: tuple[float, ...] = Field(min_length=24, max_length=24)
    """24 shares of the day's payments, hour 0 to 23, summing to 1."""
    amount_fen: BillDistribution
    """The day's bills, lognormal, fixed by two quantiles in fen."""
    channel_shares: dict[str, float] = Field(default_factory=dict)
    """Share of the day's payments per bank channel (summing to 1); default: equal over the gateway's channels."""

    @field_validator("hour_profile")
    @classmethod
    def _profile(cls, shares: tuple[float, ...]) -> tuple[float, ...]:
        if any(share < 0 for share in shares) or not math.isclose(sum(shares), 1, abs_tol=1e-3):
            raise ValueError(f"must be 24 shares >= 0 summing to 1 (they sum to {sum(shares):.4f})")
        return shares

    @field_validator("channel_shares")
    @classmethod
    def _channels(cls, shares: dict[str, float]) -> dict[str, float]:
        if shares and (any(v < 0 for v in shares.values()) or not math.isclose(sum(shares.values()), 1, abs_tol=1e-3)):
            raise ValueError(f"must be shares >= 0 summing to 1 (they sum to {sum(shares.values()):.4f})")
        return shares


class Demand(Strict):
    trace: str | None = None
    """Last year's trace (CSV, CSV.gz or Parquet, as for a scenario; docs/trace.md) whose days are scaled by
    `growth`; or give `[[demand.days]]`."""
    window: tuple[AwareDatetime, AwareDatetime] | None = None
    """With a trace: the part of it forecast, [start, end) (default: all of it)."""
    growth: Growth = Growth()
    """This year's volume against the trace's (or the calendar's): p50 and p90."""
    attempts_per_payment: float | None = Field(default=None, ge=1)
    """HTTP attempts per payment (retries, plan parts, polls), e.g. 1.15; or `from_run`."""
    from_run: str | None = None
    """A rehearsal run folder at comparable load: attempts_per_payment = its attempts / its payments."""
    days: tuple[DemandDay, ...] = ()
    """A bills-due calendar instead of a trace: `[[demand.days]]`, one per day."""

    @model_validator(mode="after")
    def _one_source(self) -> Demand:
        if (self.trace is None) == (not self.days):
            raise ValueError("'demand' needs exactly one of 'trace' and [[demand.days]]")
        if (self.attempts_per_payment is None) == (self.from_run is None):
            raise ValueError("'demand' needs exactly one of 'attempts_per_payment' and 'from_run'")
        if self.window is not None and (self.trace is None or self.window[1] <= self.window[0]):
            raise ValueError("'demand.window' needs a trace and must end after it starts")
        dates = [day.date for day in self.days]
        if len(set(dates)) != len(dates):
            raise ValueError("'demand.days' lists a date twice")
        return self


class CapacityEvidence(Strict):
    replicas: int = Field(ge=1)
    """Replicas up in this case."""
    run: str | None = None
    """A `surge find-capacity` run folder measured with that many replicas (its knee, max_rate_per_s)."""
    per_s: float | None = Field(default=None, gt=0)
    """Or the capacity given as a number, in attempts per second."""

    @model_validator(mode="after")
    def _one(self) -> CapacityEvidence:
        if (self.run is None) == (self.per_s is None):
            raise ValueError("a capacity needs exactly one of 'run' and 'per_s'")
        return self


class Capacity(Strict):
    n: CapacityEvidence
    """Every replica up: `{ replicas = 3, run = "runs/cap-3" }` or `{ replicas = 3, per_s = 900 }`."""
    n_minus_1: CapacityEvidence
    """One replica down (the standby promise): replicas must be n's minus one."""

    @model_validator(mode="after")
    def _one_less(self) -> Capacity:
        if self.n_minus_1.replicas != self.n.replicas - 1:
            raise ValueError(
                f"'capacity.n_minus_1.replicas' must be {self.n.replicas - 1} (n's minus one; got "
                f"{self.n_minus_1.replicas})"
            )
        return self


class Limits(Strict):
    config: str | None = None
    """A gateway config (the `surge gateway --config` TOML) whose caps, channels, bank quotas, concurrency and
    latency apply; default: the gateway's defaults."""


class ForecastFile(Strict):
    name: str = Field(min_length=1)
    """The forecast's name, shown in forecast.html and the step summary."""
    description: str = ""
    """One line on what is forecast."""
    demand: Demand
    """This year's demand: a trace × growth or a bills-due calendar, and attempts per payment."""
    capacity: Capacity
    """What the path can take with N replicas and with N−1."""
    limits: Limits = Limits()
    """The caps that refuse payments whatever the capacity."""


def load_forecast(path: Path) -> ForecastFile:
    """The file at `path`, validated, every path in it made absolute (relative to the file)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ForecastFileError(f"forecast {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        forecast = ForecastFile.model_validate(data)
    except ValidationError as exc:
        raise ForecastFileError(f"forecast {path}: {describe(exc)}") from None
    base = path.resolve().parent

    def absolute(value: str | None) -> str | None:
        return None if value is None else str((base / value).resolve())

    demand = forecast.demand.model_copy(
        update={"trace": absolute(forecast.demand.trace), "from_run": absolute(forecast.demand.from_run)}
    )
    capacity = Capacity(
        n=forecast.capacity.n.model_copy(update={"run": absolute(forecast.capacity.n.run)}),
        n_minus_1=forecast.capacity.n_minus_1.model_copy(update={"run": absolute(forecast.capacity.n_minus_1.run)}),
    )
    limits = Limits(config=absolute(forecast.limits.config))
    return forecast.model_copy(update={"demand": demand, "capacity": capacity, "limits": limits})
