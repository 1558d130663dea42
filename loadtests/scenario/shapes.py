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
import tomllib
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from loadtests.errors import UsageError
from loadtests.scenario.trace import Replay, Trace, TraceError, read_trace, window_of
from runfolder.models import Slo

SPIKE_FACTOR = 5.0  # internals §4: a rise of at least 5x ...
SPIKE_WITHIN_S = 5.0  # ... within 5 s is a spike
MAX_POOL = 20000  # users per Locust process: past it, greenlets and sockets outgrow one process (scenarios.md)

# The [gateway] capacities a scenario may tie to --scale (`scaled_caps`): the per-second caps of the gateway and
# the banks' concurrency. Per-user and money caps are not capacities: a user pays no faster on a bigger festival.
ScaledCap = Literal["limits.global_tps", "limits.replica_tps", "channels.concurrency", "channels.tps"]
_WHOLE_CAPS = frozenset({"channels.concurrency"})  # counts of calls: rounded, never below one


SETTLE_GRACE_S = 1.0  # settlement watchers stop this long after the run's end + settle_timeout_s (stuck)


class ScenarioError(UsageError):
    """A scenario that cannot be run: unknown name, unreadable TOML, a bad or unknown key."""


class _Strict(BaseModel):
    # attribute docstrings are the keys' meanings in docs/reference/scenario-keys.md (scripts/gen_reference.py)
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class RatePoint(_Strict):
    at_s: float = Field(ge=0)
    """Seconds since the start of the run; points must not go back in time."""
    per_s: float = Field(ge=0)
    """New repayment attempts per second offered at `at_s` (times `--scale`); linear between points."""


class BillDistribution(_Strict):
    """Lognormal bills fixed by two quantiles, because that is how a risk team describes a festival's bills."""

    median: int = Field(gt=0)
    """Median bill in fen (integer)."""
    p99: int = Field(gt=0)
    """99th-percentile bill in fen; a tail above the card limits exercises the daily caps."""

    @model_validator(mode="after")
    def _tail_above_median(self) -> BillDistribution:
        if self.p99 < self.median:
            raise ValueError(f"'p99' must be >= 'median' (got {self.p99} < {self.median})")
        return self


class Population(_Strict):
    users: int = Field(default=20000, ge=1)
    """Distinct users the payments are drawn from."""
    cards_per_user: tuple[int, int] = (1, 3)
    """Each user holds between `low` and `high` cards (1 <= low <= high <= 9), each on a random bank channel."""
    bill_fen: BillDistribution = BillDistribution(median=200000, p99=8000000)
    """The bills, lognormal, fixed by two quantiles."""

    @field_validator("cards_per_user")
    @classmethod
    def _ordered_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1 <= low <= high <= 9:
            raise ValueError(f"must be [low, high] with 1 <= low <= high <= 9 (got {list(value)})")
        return value


FaultAction = Literal[
    "kill",
    "pause",
    "resume",
    "restart",
    "latency",
    "errors",
    "channel_outage",
    "lose_response",
    "settlement_stall",
    "callback_loss",
    "callback_duplicate",
    "exec",
]


class Fault(_Strict):
    """One step of the fault schedule; `ratio`, `latency_ms`, `status`, `channel` are passed to the admin API.

    `exec` runs `command` (an argv list, no shell) at `at_s` and `undo` after `duration_s`, each bounded by
    `timeout_s`: how a team kills or pauses its own service (`docker kill`, `kill -STOP`) at the peak.
    """

    at_s: float = Field(ge=0)
    """When the fault is injected, in seconds since the start; before the end of the scenario."""
    action: FaultAction
    """What happens: a replica killed (SIGKILL), paused (SIGSTOP), resumed or restarted; or an injected fault: added
    latency, error responses, a channel outage, or a response lost after the commit; on async channels a
    `settlement_stall` (the bank settles nothing for `duration_s`), `callback_loss` (a `ratio` of first callback
    deliveries dropped) or `callback_duplicate` (a `ratio` of callbacks delivered twice); or `exec`, a command of your
    own against a service surge did not start (docs/targets.md).
    """
    target: str = "primary"
    """`primary` (the replica taking traffic when the fault fires), a replica name (`r1`…), `all` (injected faults), or
    a channel code for `channel_outage`; for `exec`, a label for events.csv and the report.
    """
    duration_s: float = Field(default=0.0, ge=0)
    """How long it lasts; a killed or paused replica is restarted or resumed after it (0: never, for kill and pause)."""
    ratio: float | None = Field(default=None, ge=0, le=1)
    """Share of requests hit (latency, errors, lose_response) or of callbacks (callback_loss, callback_duplicate);
    default 1."""
    latency_ms: int | None = Field(default=None, ge=0)
    """Added latency in ms, for `latency`."""
    status: int | None = Field(default=None, ge=400, le=599)
    """HTTP status returned, for `errors`."""
    channel: str | None = None
    """Limit an injected fault to one bank channel (a code from the gateway config)."""
    command: tuple[str, ...] | None = None
    """For `exec`: the argv list to run at `at_s` (no shell), e.g. ["kill", "-STOP", "1234"]; exit 0 is injected."""
    undo: tuple[str, ...] | None = None
    """For `exec`: the argv list run `duration_s` after the command (optional), e.g. ["kill", "-CONT", "1234"]."""
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    """For `exec`: each command is killed past this many seconds, and the fault is then `fault_failed` (exit 3)."""

    @model_validator(mode="after")
    def _exec_has_a_command(self) -> Fault:
        if self.action == "exec" and not self.command:
            raise ValueError('an \'exec\' fault needs \'command\', an argv list such as ["kill", "-STOP", "1234"]')
        if self.action != "exec" and (self.command is not None or self.undo is not None):
            raise ValueError(f"'command' and 'undo' belong to 'exec' faults (got action {self.action!r})")
        if self.undo is not None and not self.undo:
            raise ValueError("'undo' must be a non-empty argv list")
        return self


class ClientConfig(_Strict):
    policy: Literal["follow-plan", "give-up", "switch-card"] = "follow-plan"
    """On a limit decline (SINGLE/DAILY_LIMIT_EXCEEDED): pay the suggested plan, give up, or pay from another card."""
    timeout_s: float = Field(default=2.0, gt=0, le=60)
    """Per attempt (connect and read), in seconds."""
    max_retries: int = Field(default=4, ge=0, le=20)
    """Retries per payment, with the same Idempotency-Key."""
    settlement: Literal["none", "poll", "callback"] = "none"
    """How the client learns the final state of a payment accepted with 202 (asynchronous settlement): `poll`
    its status (honouring `poll_after_ms` / Retry-After, with backoff), or wait for a signed `callback` on a
    loopback receiver of each load-generator process. `none`: a 202 ends the payment unwatched."""
    settle_timeout_s: float = Field(default=30.0, gt=0, le=600)
    """How long after the run's last arrival the client keeps watching payments not yet final; one still not
    final then is `stuck`. The run lasts this much longer (watchers only: no new attempt starts)."""
    settle_pending_max: int = Field(default=20_000, ge=1, le=1_000_000)
    """The most payments one load-generator process watches at once; an accepted payment beyond it is recorded
    `unwatched` (its final state is then judged from the ledger alone)."""
    callback_fail_ratio: float = Field(default=0.0, ge=0, lt=1)
    """The ratio of callback deliveries the receiver answers 500 on purpose, to exercise the sender's retries."""
    notify_secret: str = "surge-notify-secret"  # noqa: S105 — a loopback test harness's signing key, not a credential
    """The HMAC-SHA256 key callbacks are signed with (`Surge-Signature: sha256=<hex>`); the embedded gateway is
    given the same one."""


class Arrivals(_Strict):
    process: Literal["poisson", "even", "trace"] = "poisson"
    """Poisson arrivals that follow the curve, exact even spacing (for accuracy benchmarks), or `trace`: a recorded
    day replayed row by row (docs/trace.md; no [[rate]] then)."""
    pool: int = Field(default=200, ge=1, le=MAX_POOL)
    """Locust users per run: the most payments in progress at once; scaled with `--scale` and at most 20,000."""
    late_ms: float = Field(default=50, gt=0)
    """An arrival begun more than this after its intended time counts late."""
    trace: str | None = None
    """With `process = "trace"`: the trace file (CSV, CSV.gz or Parquet; columns `ts`, optional `amount_fen`,
    `user_id`, `card_id`, `channel`), relative to the scenario file."""
    window: tuple[AwareDatetime, AwareDatetime] | None = None
    """With a trace: the slice replayed, [start, end) as ISO 8601 times with offset (default: the whole trace);
    run time 0 is its start."""
    compress: float = Field(default=1.0, gt=0)
    """With a trace: trace seconds per run second (30: an hour in 120 s); `--duration` changes it."""
    growth: float = Field(default=1.0, gt=0)
    """With a trace: the volume factor (below 1 rows are kept with that probability, above 1 extra arrivals are
    added within ±0.5 s around each row, with fresh identities); `--scale` multiplies it."""

    @model_validator(mode="after")
    def _trace_keys(self) -> Arrivals:
        if self.process == "trace" and not self.trace:
            raise ValueError("'arrivals.trace' is required with process = \"trace\" (the trace file)")
        if self.process != "trace":
            given = [key for key in ("trace", "window") if getattr(self, key) is not None]
            given += [key for key in ("compress", "growth") if getattr(self, key) != 1.0]
            if given:
                raise ValueError(f"'arrivals.{given[0]}' belongs to process = \"trace\" (got {self.process!r})")
        if self.window is not None and self.window[1] <= self.window[0]:
            raise ValueError("'arrivals.window' must end after it starts")
        return self


AbortMetric = Literal["error_ratio", "timeout_ratio", "shed_ratio", "rate_limited_ratio", "p99_ms"]


class AbortRule(_Strict):
    """A live SLO guard: the run stops itself when `metric` over the last `window_s` seconds is above `above`.

    Ratios are of the attempts that completed in those seconds (every outcome class); `p99_ms` is the p99
    latency from the intended send time of every class but 429s. Not judged before `grace_s` into the run.
    """

    metric: AbortMetric
    """What is judged: error_ratio, timeout_ratio, shed_ratio, rate_limited_ratio (of completed attempts) or p99_ms."""
    above: float = Field(ge=0)
    """The run aborts when the metric is above this (a ratio: below 1; p99_ms: milliseconds)."""
    window_s: int = Field(default=5, ge=1, le=600)
    """Judged over the last this many complete seconds of the per-second windows."""
    grace_s: float = Field(default=10.0, ge=0)
    """Not judged before this many seconds into the run (warm-up)."""

    @model_validator(mode="after")
    def _ratio_range(self) -> AbortRule:
        if self.metric.endswith("_ratio") and self.above >= 1:
            raise ValueError(f"'above' of a ratio must be < 1 (got {self.above})")
        return self

    def describe(self) -> str:
        """How the rule is named in the report, summary.json and the logs."""
        return f"{self.metric} > {self.above:g} over {self.window_s} s"


class Scenario(_Strict):
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
        points = self.rate
        if t_s <= points[0].at_s:
            return points[0].per_s
        for before, after in itertools.pairwise(points):
            if t_s <= after.at_s:
                span = after.at_s - before.at_s
                if span == 0:
                    return after.per_s
                return before.per_s + (after.per_s - before.per_s) * (t_s - before.at_s) / span
        return points[-1].per_s

    def breakpoints(self) -> list[tuple[float, float]]:
        """The curve as (t_s, per_s) corners on [0, duration_s]: what arrivals.py integrates (a trace: a step
        per second)."""
        replay = self.replay()
        if replay is not None:
            return replay.curve()
        corners = [(0.0, self.rate[0].per_s)]
        corners += [(p.at_s, p.per_s) for p in self.rate if 0 < p.at_s < self.duration_s]
        corners.append((self.duration_s, self.rate_at(self.duration_s - 1e-9) if self.duration_s else 0.0))
        return corners

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
        """(start_s, end_s) of every rise of >= 5x within 5 s; a spike ends when the rate falls below half its peak.

        A ramp up from zero is a warm-up, not a spike. The end matters to the recovery SLO ("back to normal
        after each spike"), so it is when the load has mostly gone, not when it stops rising; a spike that
        never falls lasts to the end of the run.
        """
        replay = self.replay()
        corners = self.breakpoints() if replay is None else replay.smoothed_curve()
        found: list[tuple[float, float]] = []
        i = 0
        while i < len(corners):
            start_t, base = corners[i]
            rise = next(
                (
                    j
                    for j in range(i + 1, len(corners))
                    if corners[j][0] - start_t <= SPIKE_WITHIN_S and base > 0 and corners[j][1] >= SPIKE_FACTOR * base
                ),
                None,
            )
            if rise is None:
                i += 1
                continue
            peak = corners[rise][1]
            end_t = self.duration_s
            k = rise + 1
            while k < len(corners):
                peak = max(peak, corners[k][1])
                if corners[k][1] < peak / 2:
                    end_t = self._crossing(corners[k - 1], corners[k], peak / 2)
                    break
                k += 1
            found.append((start_t, end_t))
            i = k
        return found

    def peak_rate(self, start_s: float, end_s: float) -> float:
        """The highest rate on [start_s, end_s]: a spike's peak (the curve is linear between corners, so the
        highest point is a corner or an end)."""
        inside = [r for t, r in self.breakpoints() if start_s <= t <= end_s]
        return max([self.rate_at(start_s), self.rate_at(end_s), *inside])

    @staticmethod
    def _crossing(before: tuple[float, float], after: tuple[float, float], level: float) -> float:
        (t0, r0), (t1, r1) = before, after
        if r0 == r1:
            return t1
        return t0 + (t1 - t0) * (r0 - level) / (r0 - r1)

    def phases(self) -> list[tuple[str, float, float]]:
        """Named stretches of the curve for per-phase SLOs: `steady-N`, `rise-N`, `fall-N` and `spike-N`.

        Consecutive segments of the same direction form one phase (steady ones only at the same level, so each
        step of capacity-step is its own phase); a spike window overrides whatever it covers. A trace's phases are
        stretches of its own clock (`trace-12:00`): when it broke is said in last year's hours.
        """
        replay = self.replay()
        if replay is not None:
            return replay.phases()
        spans: list[tuple[str, float, float]] = []
        levels: list[float] = []  # the rate each span ends at: two steady spans merge only at the same level
        corners = self.breakpoints()
        for (t0, r0), (t1, r1) in itertools.pairwise(corners):
            if t1 <= t0:
                continue
            kind = "steady" if math.isclose(r0, r1, rel_tol=1e-9) else ("rise" if r1 > r0 else "fall")
            if spans and spans[-1][0] == kind and (kind != "steady" or math.isclose(levels[-1], r0)):
                spans[-1] = (kind, spans[-1][1], t1)
                levels[-1] = r1
            else:
                spans.append((kind, t0, t1))
                levels.append(r1)
        for start, end in self.spikes():
            clipped: list[tuple[str, float, float]] = []
            for kind, s, e in spans:
                if s < start:
                    clipped.append((kind, s, min(e, start)))
                if e > end:
                    clipped.append((kind, max(s, end), e))
            clipped.append(("spike", start, end))
            spans = sorted(clipped, key=lambda span: span[1])
        counts: dict[str, int] = {}
        named: list[tuple[str, float, float]] = []
        for kind, s, e in spans:
            if e - s <= 1e-9:
                continue
            counts[kind] = counts.get(kind, 0) + 1
            named.append((f"{kind}-{counts[kind]}", s, e))
        return named


@functools.lru_cache(maxsize=8)
def _replay(
    trace: Trace, window: tuple[datetime, datetime] | None, compress: float, growth: float, seed: int, duration_s: float
) -> Replay:
    """One Replay per trace (file version) and settings: the curve, phases and spikes all read its counts."""
    start, end = window_of(trace, window)
    return Replay(trace, start, end, compress, growth, seed, duration_s)


def builtin_scenarios() -> dict[str, Path]:
    """Built-in scenario names → their TOML files shipped in the package."""
    folder = resources.files("loadtests.scenario") / "scenarios"
    return {Path(entry.name).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".toml")}


def load_scenario(ref: str) -> Scenario:
    """A built-in name or a TOML path → a validated Scenario; `ScenarioError` names the file and the key."""
    builtins = builtin_scenarios()
    path = builtins.get(ref, Path(ref))
    if ref not in builtins and not path.is_file():
        names = ", ".join(sorted(builtins))
        raise ScenarioError(f"scenario {ref!r}: neither a built-in ({names}) nor a TOML file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"scenario {path}: {exc}") from None
    try:
        return Scenario.model_validate(data, context={"base_dir": str(path.parent)})
    except ValidationError as exc:
        raise ScenarioError(f"scenario {path}: {first_error(exc)}") from None


def validated_scenario(base: Scenario, **changes: Any) -> Scenario:
    """`base` with `changes` (plain data, as in a scenario file), validated as a whole like a file is: unlike
    `model_copy(update=...)`, which trusts its input, a bad value is a ScenarioError naming the key."""
    try:
        return Scenario.model_validate(base.model_dump() | changes)
    except ValidationError as exc:
        raise ScenarioError(f"scenario {base.name}: {first_error(exc)}") from None


def first_error(exc: ValidationError) -> str:
    """Pydantic's first complaint as "'rate.2.per_s' must be ... (got -5)"; the rest follow once it is fixed.

    An unknown key comes first: a typo (`duraton_s`) also makes the real key missing, and "unknown key
    'duraton_s'" is the line that tells the user what to fix."""
    errors = exc.errors()
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    if error["type"] == "missing":
        return f"missing key '{key}'"
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"] and message.startswith("'"):
        return message  # a model-level check that names its own key
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"'{key}' {message[0].lower()}{message[1:]} (got {error.get('input')!r}){more}"
