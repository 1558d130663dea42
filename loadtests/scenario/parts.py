"""The tables a scenario is made of — rate points, population and bills, faults, client, arrivals, abort rules.

Each is a frozen pydantic model with extra keys forbidden, so a typo is an error naming the key rather than a
setting silently ignored; their attribute docstrings are the keys' meanings in docs/reference/scenario-keys.md
(scripts/gen_reference.py). `model.Scenario` puts them together and checks what spans tables.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_POOL = 20000  # users per Locust process: past it, greenlets and sockets outgrow one process (scenarios.md)


class Strict(BaseModel):
    """The base of every file format of this package (scenario, target profile, study, forecast): frozen, and an
    unknown key is an error naming it. Attribute docstrings are the keys' meanings in docs/reference/*.md
    (scripts/gen_reference.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class RatePoint(Strict):
    at_s: float = Field(ge=0)
    """Seconds since the start of the run; points must not go back in time."""
    per_s: float = Field(ge=0)
    """New repayment attempts per second offered at `at_s` (times `--scale`); linear between points."""


class BillDistribution(Strict):
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


class Population(Strict):
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


class Fault(Strict):
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


class ClientConfig(Strict):
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


class Arrivals(Strict):
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


class AbortRule(Strict):
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
