"""Festival load profiles as data: the scenario TOML of docs/scenarios.md as typed objects.

A scenario is validated once, at the edge, so that every later reader (the locustfile, `surge run`, the reports'
meta.json) can trust it; a bad file is one readable line naming the key (`ScenarioError`, exit 2), never a
traceback in the middle of a run. Extra keys are forbidden everywhere except `[gateway]`, which is the gateway's
own config format and is validated by `mock_gateway.config` when the embedded cluster starts.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from loadtests.errors import UsageError
from loadtests.scenario import timeline
from loadtests.scenario.parts import (
    MAX_POOL,
    AbortRule,
    Arrivals,
    ClientConfig,
    Fault,
    Population,
    RatePoint,
    Strict,
)
from loadtests.scenario.trace import Replay, Trace, TraceError, read_trace, window_of
from runfolder.models import Slo

# The [gateway] capacities a scenario may tie to --scale (`scaled_caps`): the per-second caps of the gateway and
# the banks' concurrency. Per-user and money caps are not capacities: a user pays no faster on a bigger festival.
ScaledCap = Literal["limits.global_tps", "limits.replica_tps", "channels.concurrency", "channels.tps"]
_WHOLE_CAPS = frozenset({"channels.concurrency"})  # counts of calls: rounded, never below one


SETTLE_GRACE_S = 1.0  # settlement watchers stop this long after the run's end + settle_timeout_s (stuck)


class ScenarioError(UsageError):
    """A scenario that cannot be run: unknown name, unreadable TOML, a bad or unknown key."""


class Scenario(Strict):
    name: str = Field(min_length=1)
    """The scenario's name, shown in reports and run-folder names."""
    description: str = ""
    """One line on what the scenario is for."""
    duration_s: float = Field(gt=0)
    """Length of the run in seconds (`--duration` stretches the whole curve and the faults)."""
    seed: int = 0
    """Seeds the users, bills and arrivals: the same seed gives the same run."""
    population: Population = Population()
    """Who pays: users, cards and bills."""
    rate: tuple[RatePoint, ...] = ()
    """The arrival curve: (at_s, per_s) points, at least one (none with a trace, which is the curve)."""
    faults: tuple[Fault, ...] = ()
    """The fault schedule, played against the embedded cluster; with `--host` or `--target` only `exec` faults are
    played, the others are skipped and reported unknown."""
    slo: Slo = Slo()
    """The verdicts: each bound is a test case in junit.xml."""
    client: ClientConfig = ClientConfig()
    """How the simulated clients retry and react to declines."""
    arrivals: Arrivals = Arrivals()
    """How arrivals are generated (open model)."""
    gateway: dict[str, Any] = Field(default_factory=dict)
    """A partial gateway config for the embedded cluster, merged over the defaults and `--config`; ignored with
    `--host` (a warning says so).
    """
    scaled_caps: tuple[ScaledCap, ...] = ()
    """The [gateway] capacities that follow --scale like the rates: "limits.global_tps", "limits.replica_tps",
    "channels.tps" (multiplied) and "channels.concurrency" (rounded, at least 1); each must be set in [gateway].
    """

    @field_validator("scaled_caps")
    @classmethod
    def _caps_are_set(cls, caps: tuple[ScaledCap, ...], info: ValidationInfo) -> tuple[ScaledCap, ...]:
        """A cap that follows --scale must be written in [gateway]: scaling the gateway's default (5000/s) would
        give a figure nobody chose, and the run would silently test something else."""
        gateway = info.data.get("gateway") or {}
        for cap in caps:
            section, key = cap.split(".")
            tables = gateway.get(section)
            if section == "limits":
                tables = [tables] if isinstance(tables, dict) else []
            if not isinstance(tables, list) or not tables:
                raise ValueError(f"names {cap}, but [gateway] does not set it")
            for table in tables:
                value = table.get(key) if isinstance(table, dict) else None
                if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                    raise ValueError(f"names {cap}, but [gateway] does not set it to a number > 0 everywhere")
        return caps

    abort: tuple[AbortRule, ...] = ()
    """Live SLO guards (`[[abort]]`): the run stops itself, exit 1, when one trips; `--no-abort` ignores them."""

    @model_validator(mode="before")
    @classmethod
    def _trace_file(cls, data: Any, info: ValidationInfo) -> Any:
        """A trace path is made absolute (relative to the scenario file) and the trace read, so that a bad trace
        is a usage error before anything starts; `duration_s` defaults to the compressed window."""
        if not isinstance(data, dict) or not isinstance(data.get("arrivals"), dict):
            return data
        arrivals = data["arrivals"]
        if arrivals.get("process") != "trace" or not isinstance(arrivals.get("trace"), str):
            return data
        base = Path((info.context or {}).get("base_dir", "."))
        path = (base / arrivals["trace"]).resolve()
        try:
            trace = read_trace(path)
        except TraceError as exc:
            raise ValueError(f"'arrivals.trace' {exc}") from None
        data = {**data, "arrivals": {**arrivals, "trace": str(path)}}
        if "duration_s" not in data:
            try:
                window = arrivals.get("window")
                parsed = None if window is None else (datetime.fromisoformat(window[0]),
                                                      datetime.fromisoformat(window[1]))  # fmt: skip
                start, end = window_of(trace, parsed)
                compress = float(arrivals.get("compress", 1.0))
                data["duration_s"] = (end - start) / compress
            except (TypeError, ValueError, IndexError, ZeroDivisionError):
                pass  # the field validators name the bad key
        return data

    @model_validator(mode="after")
    def _rate_or_trace(self) -> Scenario:
        if self.arrivals.process == "trace" and self.rate:
            raise ValueError("'rate' is not allowed with a trace (arrivals.process = \"trace\"): the trace is the "
                             "arrival curve")  # fmt: skip
        if self.arrivals.process != "trace" and not self.rate:
            raise ValueError("'rate' needs at least one point ([[rate]] at_s, per_s)")
        return self

    def replay(self) -> Replay | None:
        """The trace mapped onto run time, or None for a rate-curve scenario."""
        arrivals = self.arrivals
        if arrivals.process != "trace" or arrivals.trace is None:
            return None
        trace = read_trace(Path(arrivals.trace))  # the same object while the file is unchanged
        return _replay(trace, arrivals.window, arrivals.compress, arrivals.growth, self.seed, self.duration_s)

    @model_validator(mode="after")
    def _faults_before_the_end(self) -> Scenario:
        for number, fault in enumerate(self.faults):
            if fault.at_s >= self.duration_s:
                raise ValueError(
                    f"'faults.{number}.at_s' must be before the end of the scenario ({self.duration_s:g} s), "
                    f"or the fault is never played (got {fault.at_s:g})"
                )
        return self

    @field_validator("rate")
    @classmethod
    def _increasing_times(cls, points: tuple[RatePoint, ...]) -> tuple[RatePoint, ...]:
        for before, after in itertools.pairwise(points):
            if after.at_s < before.at_s:
                raise ValueError(f"'at_s' must not decrease (got {after.at_s} after {before.at_s})")
        return points

    def scaled(self, scale: float, duration_s: float | None = None) -> Scenario:
        """Rates (and the user pool, which must grow with them) times `scale`; a new duration stretches time.

        Stretching rather than truncating keeps the festival's shape (a spike at 25 % of the run stays there)
        and moves the faults with it, so `--duration 30` is a faithful miniature and not the first 30 s; a
        gateway clock speed set in `[gateway.clock]` is sped up alike, so midnight stays on the spike.
        """
        if not scale > 0 or math.isinf(scale):
            raise ScenarioError(f"'scale' must be > 0 (got {scale})")
        stretch = 1.0 if duration_s is None else duration_s / self.duration_s
        if not stretch > 0 or math.isinf(stretch):
            raise ScenarioError(f"'duration_s' must be > 0 (got {duration_s})")
        rate = tuple(RatePoint(at_s=p.at_s * stretch, per_s=p.per_s * scale) for p in self.rate)
        faults = tuple(
            f.model_copy(update={"at_s": f.at_s * stretch, "duration_s": f.duration_s * stretch}) for f in self.faults
        )
        pool = max(1, math.ceil(self.arrivals.pool * scale))
        if pool > MAX_POOL:
            raise ScenarioError(
                f"--scale {scale:g} needs a user pool of {pool:,} ([arrivals] pool {self.arrivals.pool} x scale), "
                f"past the limit of {MAX_POOL:,}; use a smaller --scale or --workers with a smaller pool"
            )
        arrivals = self.arrivals.model_copy(update={"pool": pool})
        if self.arrivals.process == "trace":  # a trace's volume is its growth, its time its compression
            update = {"growth": self.arrivals.growth * scale, "compress": self.arrivals.compress / stretch}
            arrivals = arrivals.model_copy(update=update)
        gateway = self._scaled_gateway(scale)
        clock = gateway.get("clock")
        if isinstance(clock, dict) and isinstance(clock.get("speed"), int | float) and stretch != 1.0:
            clock["speed"] = clock["speed"] / stretch  # business days keep their place on the curve
        return self.model_copy(
            update={
                "duration_s": self.duration_s * stretch,
                "rate": rate,
                "faults": faults,
                "arrivals": arrivals,
                "gateway": gateway,
            }
        )

    def _scaled_gateway(self, scale: float) -> dict[str, Any]:
        """[gateway] with every cap of `scaled_caps` times `scale`: a capacity that must stay below the peak at
        any scale (double11's spike is meant to overflow the gateway) moves with the rates. A concurrency is a
        whole number of calls: rounded, never below one."""
        gateway = copy.deepcopy(self.gateway)
        for cap in self.scaled_caps:
            section, key = cap.split(".")
            if section == "limits":
                gateway[section][key] = gateway[section][key] * scale
            elif cap in _WHOLE_CAPS:
                for table in gateway[section]:
                    table[key] = max(1, round(table[key] * scale))
            else:
                for table in gateway[section]:
                    table[key] = table[key] * scale
        return gateway

    def rate_at(self, t_s: float) -> float:
        """Target arrivals per second at `t_s`: linear between points, flat outside them, zero after the end; a
        trace's expected count of that run second."""
        if t_s < 0 or t_s >= self.duration_s:
            return 0.0
        replay = self.replay()
        if replay is not None:
            counts = replay.counts_per_second()
            return float(counts[min(int(t_s), len(counts) - 1)]) * replay.growth
        return timeline.curve_rate(self._points(), t_s)

    def breakpoints(self) -> list[tuple[float, float]]:
        """The curve as (t_s, per_s) corners on [0, duration_s]: what arrivals.py integrates (a trace: a step
        per second)."""
        replay = self.replay()
        if replay is not None:
            return replay.curve()
        return timeline.breakpoints(self._points(), self.duration_s)

    def _points(self) -> list[tuple[float, float]]:
        return [(point.at_s, point.per_s) for point in self.rate]

    def notify_secret(self) -> str:
        """The key callbacks are signed with: the scenario's `[gateway.settlement] notify_secret` when it sets one
        (the embedded gateway signs with it), else `[client] notify_secret`."""
        configured = (self.gateway.get("settlement") or {}).get("notify_secret")
        return str(configured) if configured else self.client.notify_secret

    def gateway_overrides(self) -> dict[str, Any]:
        """The embedded gateway's overrides: the scenario's `[gateway]`, signing callbacks with the client's key."""
        settlement = {**(self.gateway.get("settlement") or {}), "notify_secret": self.notify_secret()}
        return {**self.gateway, "settlement": settlement}

    def settle_tail_s(self) -> float:
        """How long after the last arrival the client's settlement watchers keep watching (0: it does not watch);
        a managed run lasts this much longer."""
        client = self.client
        return 0.0 if client.settlement == "none" else client.settle_timeout_s + SETTLE_GRACE_S

    def spikes(self) -> list[tuple[float, float]]:
        """(start_s, end_s) of every rise of >= 5x within 5 s, ending when the rate falls below half its peak
        (`timeline.spikes`); a trace's spikes are those of its smoothed curve."""
        replay = self.replay()
        corners = self.breakpoints() if replay is None else replay.smoothed_curve()
        return timeline.spikes(corners, self.duration_s)

    def peak_rate(self, start_s: float, end_s: float) -> float:
        """The highest rate on [start_s, end_s]: a spike's peak (the curve is linear between corners, so the
        highest point is a corner or an end)."""
        inside = [r for t, r in self.breakpoints() if start_s <= t <= end_s]
        return max([self.rate_at(start_s), self.rate_at(end_s), *inside])

    def phases(self) -> list[tuple[str, float, float]]:
        """Named stretches of the curve for per-phase SLOs (`timeline.phases`: `steady-N`, `rise-N`, `fall-N`,
        `spike-N`). A trace's phases are stretches of its own clock (`trace-12:00`): when it broke is said in
        last year's hours."""
        replay = self.replay()
        if replay is not None:
            return replay.phases()
        return timeline.phases(self.breakpoints(), self.spikes())


@functools.lru_cache(maxsize=8)
def _replay(
    trace: Trace, window: tuple[datetime, datetime] | None, compress: float, growth: float, seed: int, duration_s: float
) -> Replay:
    """One Replay per trace (file version) and settings: the curve, phases and spikes all read its counts."""
    start, end = window_of(trace, window)
    return Replay(trace, start, end, compress, growth, seed, duration_s)
